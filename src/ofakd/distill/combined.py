"""Combinations of methods: ``--method ofa+rsd`` (any registered names joined by ``+``).

``create_distiller("ofa+dist", teacher, student, **options)`` builds each part as it would be built
alone (same teacher source, student, input size, dataset size) and sums their terms.

* **One forward each.** The teacher runs once per step and gives every part what it asked for (the
  union of their stage features and embeddings); the student runs once, through one tap that gives
  every part its features. Each part computes its terms from those two outputs.
* **Losses.** One ``gt`` term (the combination's ``gt_weight``/``gt_loss``), then each part's own terms
  times its ``part_weights`` entry (default 1). Two parts returning a term of the same name is an
  error that names both (e.g. ``kd+rsd`` both return ``kd``: set ``rsd.kd_weight=0`` to keep KD's).
* **Options.** ``<part>={...}`` or dotted ``<part>.<option>=value`` set one part's options
  (``rsd={"rsd_weight": 0.2}``, ``ofa.eps=[1.5]``). A flat option goes to the one part that has it
  (``eps=[1.5]`` → ofa); one that several parts have is an error asking for the dotted form.
* **State.** ``student.*`` and ``branches.<part>.*`` (each part's own modules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from ..errors import ConfigError
from ..models.tap import ModelOutput
from ..pydantic_errors import problem, unknown_key
from ..teacher.feature_check import check_features
from .base import Distiller, MethodOptions

COMBINATION_OPTIONS = ("part_weights", "gt_weight", "gt_loss")
"""Options of the combination itself (every other option belongs to a part)."""


class CombinationOptions(BaseModel):
    """A combination's options: its own (``gt``, ``part_weights``) and each part's validated options."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    parts: dict[str, MethodOptions]
    part_weights: list[float] | None = None
    """One weight per part multiplying every term it contributes (default: all 1)."""
    gt_weight: float = 1.0
    """Weight of the one cross-entropy to the ground-truth targets."""
    gt_loss: Literal["ce", "bce"] = "ce"
    """Supervised loss: ce or bce."""

    def to_config(self) -> dict[str, Any]:
        """The options as a config's ``method:`` section holds them, every default written out: the
        combination's own, then ``<part>: {...}`` per part (without the gt options, which are the
        combination's); :meth:`Combination.parse_options` reads it back to the same options."""
        own = self.model_dump(mode="json", exclude={"parts"})
        parts = {name: options.model_dump(mode="json", exclude=set(COMBINATION_OPTIONS))
                 for name, options in self.parts.items()}
        return {**own, **parts}


@dataclass(frozen=True)
class Combination:
    """The method ``"a+b[+c...]"``: what ``get_method`` gives for a name with ``+``. Like a Distiller
    class it tells the method's needs, parses its options and builds it."""

    parts: dict[str, type[Distiller]]

    @property
    def method_name(self) -> str:
        return "+".join(self.parts)

    @property
    def summary(self) -> str:
        return "combination of " + " + ".join(self.parts)

    @property
    def needs_teacher(self) -> bool:
        return any(cls.needs_teacher for cls in self.parts.values())

    @property
    def needs_teacher_features(self) -> bool:
        return any(cls.needs_teacher_features for cls in self.parts.values())

    @property
    def needs_sample_indices(self) -> bool:
        return any(cls.needs_sample_indices for cls in self.parts.values())

    def parse_options(self, options: dict[str, Any], *, section: str = "") -> CombinationOptions:
        """Validate ``options`` (see the module docstring); errors name the option and the fix (``section``: the
        config section they were read from, named first)."""
        try:
            return self._parse(options)
        except ConfigError as err:
            if section:
                raise ConfigError(f"{section}: {err}") from None
            raise

    def _parse(self, options: dict[str, Any]) -> CombinationOptions:
        raw: dict[str, dict[str, Any]] = {part: {} for part in self.parts}
        own: dict[str, Any] = {}
        for key, value in options.items():
            part, dot, option = str(key).partition(".")
            if key in COMBINATION_OPTIONS:
                own[key] = value
            elif key in self.parts:
                if not isinstance(value, dict):
                    raise ConfigError(f"method {self.method_name!r}: {key!r} must be a mapping of that method's options")
                raw[key].update(value)
            elif dot and part in self.parts:
                raw[part][option] = value
            else:
                raw[self._owner(key)][key] = value
        for part, values in raw.items():
            shared = sorted(set(values) & {"gt_weight", "gt_loss"})
            if shared:
                raise ConfigError(
                    f"method {self.method_name!r}: {shared[0]!r} belongs to the combination, not to {part!r} "
                    f"(there is one gt term): set {shared[0]}=... without the part name"
                )
        try:
            parsed = CombinationOptions(parts={p: cls.parse_options(raw[p]) for p, cls in self.parts.items()}, **own)
        except ValidationError as err:
            raise ConfigError(f"method {self.method_name!r}: {problem(err, CombinationOptions)}") from None
        if parsed.part_weights is not None and len(parsed.part_weights) != len(self.parts):
            raise ConfigError(
                f"part_weights has {len(parsed.part_weights)} values; method {self.method_name!r} has "
                f"{len(self.parts)} parts ({', '.join(self.parts)})"
            )
        return parsed

    def _owner(self, option: str) -> str:
        owners = [part for part, cls in self.parts.items() if option in cls.Options.model_fields]
        if len(owners) == 1:
            return owners[0]
        if owners:
            raise ConfigError(
                f"option {option!r} of method {self.method_name!r} is ambiguous: {', '.join(owners)} all have it; "
                f"set it per part, e.g. {owners[0]}.{option}=... (or {owners[0]}={{{option!r}: ...}})"
            )
        known = sorted({o for cls in self.parts.values() for o in cls.Options.model_fields} | set(COMBINATION_OPTIONS))
        raise ConfigError(f"method {self.method_name!r}: {unknown_key(option, known)}")

    def __call__(self, teacher, student: nn.Module, options: CombinationOptions, **kwargs) -> CombinedDistiller:
        return CombinedDistiller(teacher, student, options, combination=self, **kwargs)


class CombinedDistiller(Distiller):
    """Several methods trained together (see the module docstring); built by :class:`Combination`."""

    def __init__(self, teacher, student, options: CombinationOptions, *, combination: Combination, **kwargs) -> None:
        check_features(combination, teacher)  # named as the combination, before any part is built
        super().__init__(teacher, student, options, **kwargs)
        self.combination = combination
        # each part as built alone, on the same teacher source: its needs widen the teacher's tap
        self.members = {name: cls(self.teacher, student, options.parts[name], **kwargs)
                        for name, cls in combination.parts.items()}
        """The parts, outside the module tree: their student and branches are registered here once."""
        self.branches = nn.ModuleDict({name: part.branches for name, part in self.members.items()})
        self.part_weights = options.part_weights or [1.0] * len(self.members)
        for part in self.members.values():  # the student's one forward gives every part its features
            self.student_tap.widen(part.student_tap.positions, embedding=part.student_tap.embedding)
        if self.student_tap.positions:  # settles the tap's feature format now, not in the first step
            self.student_tap.probe(self.input_size)
        self.teacher_positions = sorted({p for part in self.members.values() for p in part.teacher_positions})
        self.teacher_embedding = any(part.teacher_embedding for part in self.members.values())

    method_name = property(lambda self: self.combination.method_name)
    summary = property(lambda self: self.combination.summary)
    needs_teacher = property(lambda self: self.combination.needs_teacher)
    needs_teacher_features = property(lambda self: self.combination.needs_teacher_features)
    needs_sample_indices = property(lambda self: self.combination.needs_sample_indices)

    def compute_losses(self, student: ModelOutput, targets, teacher, sample_indices) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        owner: dict[str, str] = {}
        for (name, part), weight in zip(self.members.items(), self.part_weights):
            for key, value in part.compute_losses(student, targets, teacher, sample_indices).items():
                if key in losses or key == "gt":
                    raise ConfigError(
                        f"method {self.method_name!r}: {owner.get(key, 'the combination')} and {name} both give a "
                        f"{key!r} term; switch one off (e.g. {name}.kd_weight=0 for a second logit term) or drop a part"
                    )
                losses[key], owner[key] = (value if weight == 1.0 else weight * value), name
        return losses

    # ---- hooks -------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        for part in self.__dict__.get("members", {}).values():
            part.train(mode)
        return self

    def on_step_end(self) -> None:
        for part in self.members.values():
            part.on_step_end()

    def set_epoch(self, epoch: int) -> None:
        for part in self.members.values():
            part.set_epoch(epoch)

    def before_checkpoint(self) -> None:
        for part in self.members.values():
            part.before_checkpoint()
