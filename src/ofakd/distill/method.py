"""A run's method, resolved once: :func:`resolve_method` looks the method up and validates its options, and the
typed :class:`Method` it returns travels from the config to the distiller.

    method = resolve_method("ofa", {"eps": [1.5]})
    method.needs_teacher, method.to_config()     # True, {"name": "ofa", "eps": [1.5], "ofa_weight": 1.0, ...}
    distiller = method.build(teacher, student, input_size=(3, 224, 224))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Distiller, MethodOptions
from .combined import Combination, CombinationOptions, CombinedDistiller
from .registry import get_method


@dataclass(frozen=True)
class Method:
    """A method (a Distiller class, or a :class:`~ofakd.distill.combined.Combination` of several) with its
    options validated, every default filled in. It tells the method's name and needs as its Distiller class does."""

    kind: type[Distiller] | Combination
    options: MethodOptions | CombinationOptions

    @property
    def method_name(self) -> str:
        """The registered name (``ofa``, ``ofa+rsd``); a Distiller class that is not registered: its class name."""
        return self.kind.method_name or getattr(self.kind, "__name__", "")

    @property
    def needs_teacher(self) -> bool:
        return self.kind.needs_teacher

    @property
    def needs_teacher_features(self) -> bool:
        return self.kind.needs_teacher_features

    @property
    def needs_sample_indices(self) -> bool:
        return self.kind.needs_sample_indices

    def to_config(self) -> dict[str, Any]:
        """The config's ``method:`` section: the name, then every option, defaults included (a combination: its
        own, then one mapping per part); :func:`resolve_method` reads it back to the same method."""
        options = self.options
        values = options.to_config() if isinstance(options, CombinationOptions) else options.model_dump(mode="json")
        return {"name": self.method_name, **values}

    def build(self, teacher, student, **kwargs) -> Distiller:
        """The method's Distiller for ``teacher`` -> ``student`` (``kwargs``: the Distiller's keyword arguments)."""
        return self.kind(teacher, student, self.options, **kwargs)

    @classmethod
    def of(cls, distiller: Distiller) -> Method:
        """The method ``distiller`` was built as."""
        return cls(distiller.combination if isinstance(distiller, CombinedDistiller) else type(distiller),
                   distiller.options)


def resolve_method(name: str, options: Mapping[str, Any] | None = None, *, section: str = "") -> Method:
    """Method ``name`` (see :func:`~ofakd.distill.registry.list_methods`; ``a+b`` a combination) with ``options``
    validated against its own Options: an unknown method or option names the nearest. ``section``: the config
    section the method was read from (``"method"``): errors then name its keys (``method.eps``)."""
    try:
        kind = get_method(name)
    except ConfigError as err:
        raise ConfigError(f"{section}.name: {err}" if section else str(err)) from None
    return Method(kind, kind.parse_options(dict(options or {}), section=section))
