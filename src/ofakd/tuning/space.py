"""The search space of a tuning: which methods, each method's key options, and the learning rate.

    space = SearchSpace.build(["kd", "ofa"], lr=2e-3, narrow={"ofa.eps": "1:1.5", "kd.temperature": "4"})
    method, options, lr = space.suggest(trial)        # an Optuna trial: its parameters are named as below

Parameters (Optuna's names, and the keys a user narrows with ``--space KEY=SPEC``):

* ``method``: one of the methods;
* ``lr``: the learning rate, log-uniform over a factor of 3 either side of the recipe's;
* ``METHOD.OPTION`` (``ofa.eps``, ``dist.beta``; for a combination ``ofa+dist.ofa.eps``): what the method declares
  beside its options (``Options.search_space``, :mod:`ofakd.distill.search`), sampled only in that method's trials.
  A list option (OFA's ``eps``) is searched as one value for all of its entries.

A SPEC is ``LOW:HIGH`` (a range; ``LOW:HIGH:log`` or ``:linear`` to choose the scale, else the declared one), a
YAML list ``[a, b]`` (a choice), or one YAML value (fixed: not searched). Any option of a method may be narrowed
so, declared or not; every value is checked against the method's own option validation first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config.load import parse_value
from ..distill import get_method
from ..distill.combined import Combination
from ..distill.search import Choice, Dimension, Range
from ..errors import ConfigError

DEFAULT_METHODS = ("kd", "dkd", "dist", "ofa", "ofa+dist")
"""The methods searched unless ``--methods`` says otherwise (``default`` in ``--methods`` stands for them)."""
LR_FACTOR = 3.0
"""The learning rate is searched within the recipe's lr divided or multiplied by this (log scale)."""


@dataclass(frozen=True)
class Fixed:
    """An option narrowed to one value: set in every trial of its method, not searched."""

    value: Any

    def describe(self) -> str:
        return f"{self.value} (fixed)"


Spec = Dimension | Fixed


def method_names(requested: Iterable[str] | None) -> list[str]:
    """The methods of ``--methods`` (``default`` expands to :data:`DEFAULT_METHODS`), each checked, in order."""
    names: list[str] = []
    for name in requested or ["default"]:
        for part in str(name).split(","):
            part = part.strip()
            for method in DEFAULT_METHODS if part == "default" else [part] if part else []:
                get_method(method)  # an unknown name: one line naming the nearest
                if method not in names:
                    names.append(method)
    if not names:
        raise ConfigError("--methods names no method; e.g. --methods kd,ofa (or default,pat to add to the defaults)")
    return names


def declared_space(method: str) -> dict[str, Dimension]:
    """What ``method`` declares a search may try: ``{option: dimension}``, a combination's as ``part.option``."""
    cls = get_method(method)
    if isinstance(cls, Combination):
        return {f"{part}.{option}": dim for part, part_cls in cls.parts.items()
                for option, dim in part_cls.Options.search_space.items()}
    return dict(cls.Options.search_space)


@dataclass(frozen=True)
class SearchSpace:
    methods: tuple[str, ...]
    lr: Spec
    options: dict[str, dict[str, Spec]]
    """Per method: its option (``part.option`` in a combination) -> what trials set it to."""

    @classmethod
    def build(cls, methods: Iterable[str], *, lr: float, narrow: dict[str, Any] | None = None) -> SearchSpace:
        """The space of ``methods`` around the recipe's ``lr``, with the ``narrow`` specs (``{KEY: SPEC}``) applied."""
        names = tuple(method_names(methods))
        options = {m: dict(declared_space(m)) for m in names}
        lr_spec: Spec = Range(lr / LR_FACTOR, lr * LR_FACTOR, log=True)
        for key, text in (narrow or {}).items():
            if key == "lr":
                lr_spec = parse_spec(key, text, lr_spec)
                continue
            method, option = _split_key(key, names)
            spec = parse_spec(key, text, options[method].get(option))
            _check_values(method, option, spec, key)
            options[method][option] = spec
        if isinstance(lr_spec, Range) and lr_spec.low <= 0 or isinstance(lr_spec, (Choice, Fixed)) and any(
                not isinstance(v, (int, float)) or v <= 0 for v in spec_values(lr_spec)):
            raise ConfigError(f"--space lr={narrow and narrow.get('lr')}: learning rates must be numbers > 0")
        return cls(names, lr_spec, options)

    def suggest(self, trial) -> tuple[str, dict[str, Any], float]:
        """(method, options to set, lr) for an Optuna ``trial``: the method first, then only its options."""
        method = trial.suggest_categorical("method", list(self.methods)) if len(self.methods) > 1 else self.methods[0]
        lr = _suggest(trial, "lr", self.lr)
        options = {option: _as_option(method, option, _suggest(trial, f"{method}.{option}", spec))
                   for option, spec in self.options[method].items()}
        return method, options, float(lr)

    def describe(self) -> dict[str, Any]:
        """The space as plain data (kept with the study; the report's table of what was searched)."""
        return {"methods": list(self.methods), "lr": self.lr.describe(),
                "options": {m: {o: s.describe() for o, s in opts.items()} for m, opts in self.options.items()}}


def parse_spec(key: str, text: Any, declared: Spec | None) -> Spec:
    """``LOW:HIGH[:log|:linear]`` -> Range, a list -> Choice, anything else -> Fixed (``text`` may be parsed YAML)."""
    if isinstance(text, str) and text.count(":") in (1, 2) and not text.strip().startswith(("[", "{")):
        low, high, *scale = (part.strip() for part in text.split(":"))
        try:
            lo, hi = float(low), float(high)
        except ValueError:
            raise ConfigError(f"--space {key}={text}: a range is LOW:HIGH with two numbers, e.g. 0.5:2") from None
        if scale and scale[0] not in ("log", "linear"):
            raise ConfigError(f"--space {key}={text}: the scale after LOW:HIGH is log or linear")
        log = scale[0] == "log" if scale else (declared.log if isinstance(declared, Range) else False)
        try:
            return Range(lo, hi, log=log)
        except ValueError as err:
            raise ConfigError(f"--space {key}={text}: {err}") from None
    value = parse_value(text) if isinstance(text, str) else text
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, (list, tuple, dict)) for v in value):
            raise ConfigError(f"--space {key}={text}: a choice is a list of plain values (numbers, strings), "
                              "at least one")
        return Choice(tuple(value))
    return Fixed(value)


def _split_key(key: str, methods: tuple[str, ...]) -> tuple[str, str]:
    """``ofa+dist.ofa.eps`` -> (``ofa+dist``, ``ofa.eps``): the longest searched method the key starts with."""
    owners = sorted((m for m in methods if key.startswith(m + ".")), key=len, reverse=True)
    if not owners:
        raise ConfigError(f"--space {key}: the key is lr or METHOD.OPTION for a searched method "
                          f"({', '.join(methods)}), e.g. {methods[0]}.{next(iter(declared_space(methods[0])), 'OPTION')}")
    return owners[0], key[len(owners[0]) + 1:]


def spec_values(spec: Spec) -> list[Any]:
    if isinstance(spec, Range):
        return [spec.low, spec.high]
    return list(spec.values) if isinstance(spec, Choice) else [spec.value]


def _as_option(method: str, option: str, value: Any) -> Any:
    """A searched value as the option takes it: one value for a list option (OFA's eps) becomes a one-entry list."""
    cls = get_method(method)
    part, _, name = option.rpartition(".")
    fields = (cls.parts[part] if part else cls).Options.model_fields
    default = fields[name].get_default(call_default_factory=True) if name in fields else None
    return [value] if isinstance(default, list) and not isinstance(value, list) else value


def _check_values(method: str, option: str, spec: Spec, key: str) -> None:
    """Every value ``spec`` can give must be a valid ``option`` of ``method`` (its own validation decides)."""
    for value in spec_values(spec):
        try:
            get_method(method).parse_options({option: _as_option(method, option, value)})
        except ConfigError as err:
            raise ConfigError(f"--space {key}: {value!r} is not a valid value: {err}") from None


def _suggest(trial, name: str, spec: Spec) -> Any:
    if isinstance(spec, Fixed):
        return spec.value
    if isinstance(spec, Choice):
        return trial.suggest_categorical(name, list(spec.values))
    return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
