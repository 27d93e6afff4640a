"""Package attributes imported on first use (PEP 562), so ``ofakd --help`` starts without torch.

    __getattr__, __dir__ = lazy_exports(__name__, {".checkpoint": ("load_state", "save_state")})

``from ofakd.run_folder import load_state`` then imports ``ofakd.run_folder.checkpoint`` (and torch)
only when that line runs, not when the package is imported for its light parts. Subpackages can be
named too: ``import ofakd; ofakd.evaluation.load_student(...)`` imports ``ofakd.evaluation`` on that line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable


def lazy_exports(
    package: str, modules: dict[str, Iterable[str]], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name in ``modules[submodule]`` is read from
    ``package + submodule`` (a relative name such as ``".checkpoint"``) the first time it is asked for, and each
    name in ``submodules`` is that submodule itself (``ofakd.evaluation`` after a bare ``import ofakd``)."""
    where = {name: submodule for submodule, names in modules.items() for name in names}
    submodules = set(submodules)

    def __getattr__(name: str) -> object:
        if name in submodules:
            return importlib.import_module(f".{name}", package)  # the import binds it on the package
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(importlib.import_module(package), name, value)  # the next look-up is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(where) | submodules)

    return __getattr__, __dir__
