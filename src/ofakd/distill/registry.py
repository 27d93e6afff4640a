"""Method registry: ``@register_method("name")`` on a :class:`Distiller` subclass.

Adding a method is one new file in this package (or anywhere that is imported) with
a decorated class; nothing central needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..suggest import close_matches
from .combined import Combination

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


def get_method(name: str) -> type[Distiller] | Combination:
    """The Distiller class registered as ``name``; a clear error with the closest names otherwise.

    Names joined by ``+`` (``"ofa+rsd"``) give a :class:`~ofakd.distill.combined.Combination` of those
    methods, which tells its needs, parses its options and builds it as a Distiller class does.
    """
    _import_builtin_methods()
    if "+" in name:
        names = name.split("+")
        if len(names) < 2 or not all(names):
            raise ConfigError(f"method {name!r}: join two or more method names with '+', e.g. 'ofa+rsd'")
        if len(set(names)) != len(names):
            raise ConfigError(f"method {name!r} names a method twice")
        parts = {part: get_method(part) for part in names}
        for part, cls in parts.items():
            if cls.solo_reason:
                raise ConfigError(f"method {part!r} cannot be part of a combination ({cls.solo_reason}): "
                                  f"use --method {part} alone")
        return Combination(parts)
    if name not in _METHODS:
        close = close_matches(name, _METHODS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown method {name!r}.{hint} Known methods: {', '.join(list_methods())}.")
    return _METHODS[name]


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _import_builtin_methods()
    return sorted(_METHODS)


def _import_builtin_methods() -> None:
    """Import every module of ``ofakd.distill`` so their decorators run."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{module.name}")
