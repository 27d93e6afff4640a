"""Method registry: ``@register_method("name")`` on a :class:`Distiller` subclass.

Adding a method is one new file in this package (or anywhere that is imported) with
a decorated class; nothing central needs editing.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Distiller

_METHODS: dict[str, type[Distiller]] = {}


def register_method(name: str):
    """Class decorator that makes a Distiller available as ``create_distiller(name, ...)``."""

    def decorate(cls: type[Distiller]) -> type[Distiller]:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({_METHODS[name].__name__}, {cls.__name__})")
        cls.method_name = name
        _METHODS[name] = cls
        return cls

    return decorate


def get_method(name: str) -> type[Distiller]:
    """The Distiller class registered as ``name``; a clear error with the closest names otherwise.

    Names joined by ``+`` (``"ofa+rsd"``) give a combination of those methods (see ``combined.py``).
    """
    _import_builtin_methods()
    if "+" in name:
        from .combined import combined_method

        return combined_method(name)
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown method {name!r}.{hint} Known methods: {', '.join(list_methods())}.")
    return _METHODS[name]


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _import_builtin_methods()
    return sorted(_METHODS)


def _import_builtin_methods() -> None:
    """Import every module of ``ofakd.distill`` so their decorators run."""
    import importlib
    import pkgutil

    from .. import distill

    for module in pkgutil.iter_modules(distill.__path__):
        importlib.import_module(f"{distill.__name__}.{module.name}")
