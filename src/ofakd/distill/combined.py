"""Combinations of methods: ``--method ofa+rsd`` (any registered names joined by ``+``).

``create_distiller("ofa+rsd", teacher, student, **options)`` builds each part as it would be
built alone (same teacher, student, input size, dataset size) and sums their losses.

* **Options.** ``<part>={...}`` or the dotted ``<part>.<option>=value`` set one part's options
  (``rsd={"rsd_weight": 0.2}``, ``ofa.eps=[1.5]``). A flat option goes to the one part that has
  it (``eps=[1.5]`` → ofa); a flat option that several parts have (``gt_weight``,
  ``temperature``, ...) is an error that asks for the namespaced form. ``part_weights``
  (one per part, default 1) multiplies every term a part contributes.
* **Losses.** The union of the parts' terms. A term name that several parts return (``gt``,
  and usually ``kd``) is taken from the first part that returns it, so ``ofa+rsd`` is OFA's
  ``gt``, ``kd`` and ``ofa_s*`` plus RSD's ``rsd``; put the method that owns the shared terms first.
* **One forward each.** The teacher runs once per step (the union of the stage features the
  parts need, plus its penultimate embedding); the student runs once, and every part reads
  its logits, stage features and embedding from that forward.
* **Needs.** Teacher features / sample indices when any part needs them.
* **State.** ``student.*`` and ``branches.<part>.*`` (each part's own modules).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from torch import nn

from ..errors import ConfigError
from ..models.stages import StageTap
from .base import Distiller, MethodOptions, TeacherOutput, parse_options
from .taps import FeatureTap, TapOutput, probe_features, tap_output, teacher_forward


class CombinedOptions(BaseModel):
    """Options of a combination; subclassed per combination with one field per part and per part option."""

    model_config = ConfigDict(extra="forbid")
    part_names: ClassVar[tuple[str, ...]] = ()

    part_weights: list[float] | None = Field(
        None, description="one weight per part multiplying every term it contributes (default: all 1)"
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_dotted(cls, data: Any) -> Any:
        """``{"rsd.rsd_weight": 0.2}`` -> ``{"rsd": {"rsd_weight": 0.2}}`` (merged with a given ``rsd={...}``)."""
        if not isinstance(data, dict):
            return data
        out: dict[Any, Any] = {}
        dotted = []
        for key, value in data.items():
            part, dot, option = key.partition(".") if isinstance(key, str) else (key, "", "")
            if dot and part in cls.part_names:
                dotted.append((part, option, value))
            else:
                out[key] = dict(value) if key in cls.part_names and isinstance(value, dict) else value
        for part, option, value in dotted:
            nested = out.setdefault(part, {})
            if not isinstance(nested, dict):
                raise ValueError(f"{part!r} must be a mapping of that method's options")
            nested[option] = value
        return out


def _options_class(name: str, parts: dict[str, type[Distiller]]) -> type[CombinedOptions]:
    fields: dict[str, Any] = {}
    for part in parts:
        fields[part] = (dict[str, Any], Field(default_factory=dict, description=f"options of {part!r}"))
    for part, cls in parts.items():
        for option, info in cls.Options.model_fields.items():
            if option in parts or option == "part_weights":
                raise ConfigError(f"method {name!r}: option {option!r} of {part!r} clashes with a part name")
            fields.setdefault(option, (Any, Field(None, description=info.description)))
    options = create_model(f"CombinedOptions_{'_'.join(parts)}", __base__=CombinedOptions, **fields)
    options.part_names = tuple(parts)
    return options


@functools.cache
def combined_method(name: str) -> type[Combined]:
    """The Distiller class for ``"a+b[+c...]"``: registered method names joined by ``+``."""
    from .registry import get_method

    names = name.split("+")
    if len(names) < 2 or not all(names):
        raise ConfigError(f"method {name!r}: join two or more method names with '+', e.g. 'ofa+rsd'")
    if len(set(names)) != len(names):
        raise ConfigError(f"method {name!r} names a method twice")
    parts = {part: get_method(part) for part in names}
    attrs = {
        "method_name": name,
        "parts": parts,
        "Options": _options_class(name, parts),
        "summary": "combination of " + " + ".join(parts),
        "needs_teacher": any(cls.needs_teacher for cls in parts.values()),
        "needs_teacher_features": any(cls.needs_teacher_features for cls in parts.values()),
        "needs_sample_indices": any(cls.needs_sample_indices for cls in parts.values()),
    }
    return type(f"Combined_{'_'.join(names)}", (Combined,), attrs)


def part_options(combo: str, parts: dict[str, type[Distiller]], options: CombinedOptions) -> dict[str, MethodOptions]:
    """Each part's validated options from a combination's options (see the module docstring)."""
    raw = {part: dict(getattr(options, part) or {}) for part in parts}
    for key in sorted(options.model_fields_set - set(parts) - {"part_weights"}):
        owners = [part for part, cls in parts.items() if key in cls.Options.model_fields]
        if len(owners) > 1:
            raise ConfigError(
                f"option {key!r} of method {combo!r} is ambiguous: {', '.join(owners)} all have it; "
                f"set it per part, e.g. {owners[0]}.{key}=... (or {owners[0]}={{{key!r}: ...}})"
            )
        raw[owners[0]].setdefault(key, getattr(options, key))
    return {part: parse_options(cls, raw[part]) for part, cls in parts.items()}


class SharedStudentForward:
    """The student's one forward per step, read by every part (through the views below)."""

    def __init__(self, student: nn.Module, positions: list[int]) -> None:
        self.student = student
        self.tap = FeatureTap(student, positions) if positions else None
        self.images: torch.Tensor | None = None
        self.output: TapOutput | None = None

    def run(self, images: torch.Tensor) -> TapOutput:
        self.output = self.tap.forward_all(images) if self.tap is not None else TapOutput(self.student(images), None, [])
        self.images = images
        return self.output

    def clear(self) -> None:
        self.images = self.output = None

    def lookup(self, x: torch.Tensor, positions: list[int]) -> TapOutput | None:
        """This step's output for ``positions`` when ``x`` is this step's images, else None."""
        if self.output is None or x is not self.images:
            return None
        by_position = dict(zip(self.tap.indices, self.output.features)) if self.tap is not None else {}
        if any(p not in by_position for p in positions):
            return None
        return TapOutput(self.output.logits, self.output.embedding, [by_position[p] for p in positions])


class _TapView:
    """Stands in for a part's student tap: answers from the shared forward, else runs the tap."""

    def __init__(self, shared: SharedStudentForward, tap: StageTap) -> None:
        self._shared, self._tap = shared, tap

    def forward_all(self, x: torch.Tensor) -> TapOutput:
        out = self._shared.lookup(x, self._tap.indices)
        return out if out is not None else tap_output(self._tap, x)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.forward_all(x)
        return out.logits, out.features

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_shared", "_tap"):  # copy/pickle probes, half-built views
            raise AttributeError(name)
        return getattr(self._tap, name)


class _StudentView(nn.Module):
    """Stands in for the student inside a part: ``forward`` returns the shared forward's logits."""

    def __init__(self, shared: SharedStudentForward) -> None:
        super().__init__()
        self.__dict__["_shared"] = shared  # not a submodule: the student stays in the combination's tree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._shared.lookup(x, [])
        return out.logits if out is not None else self._shared.student(x)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("__") or "_shared" not in self.__dict__:
                raise
            return getattr(self.__dict__["_shared"].student, name)


class Combined(Distiller):
    """Several methods trained together; built by :func:`combined_method` (see the module docstring)."""

    parts: ClassVar[dict[str, type[Distiller]]] = {}

    def __init__(self, teacher, student, options: CombinedOptions, **kwargs) -> None:
        super().__init__(teacher, student, options, **kwargs)
        parsed = part_options(self.method_name, self.parts, options)
        weights = list(options.part_weights) if options.part_weights is not None else [1.0] * len(self.parts)
        if len(weights) != len(self.parts):
            raise ConfigError(
                f"part_weights has {len(weights)} values; method {self.method_name!r} has {len(self.parts)} parts "
                f"({', '.join(self.parts)})"
            )
        self.part_weights = weights
        members = {name: cls(teacher, student, parsed[name], **kwargs) for name, cls in self.parts.items()}
        self.__dict__["members"] = members  # outside the module tree: student and branches are registered here
        self.branches = nn.ModuleDict({name: part.branches for name, part in members.items()})

        # the student's one forward, shared by the parts
        taps = {name: getattr(part, "student_tap", None) for name, part in members.items()}
        positions = sorted({i for tap in taps.values() if isinstance(tap, StageTap) for i in tap.indices})
        self.shared = SharedStudentForward(student, positions)
        if self.shared.tap is not None:  # settles the tap's feature format now, not in the first step
            probe_features(self.shared.tap, self.input_size)
        for name, part in members.items():
            if isinstance(taps[name], StageTap):
                part.student_tap = _TapView(self.shared, taps[name])
            part.student = _StudentView(self.shared)

        # the teacher's one forward: the union of what the parts need
        teacher_taps = [part.teacher_tap for part in members.values() if part.teacher_tap is not None]
        union = sorted({i for tap in teacher_taps for i in tap.indices})
        self.teacher_tap = FeatureTap(teacher, union) if (teacher is not None and union) else None
        if self.teacher_tap is not None:
            probe_features(self.teacher_tap, self.input_size, self.teacher_input, role="teacher")

    # ---- forward -----------------------------------------------------------------
    def run_teacher(self, images: torch.Tensor) -> TeacherOutput:
        if self.teacher_tap is None:
            return super().run_teacher(images)
        return teacher_forward(self.teacher_tap, images, self.teacher_input)

    def _teacher_for(self, part: Distiller, teacher: TeacherOutput | None) -> TeacherOutput | None:
        if teacher is None or teacher.features is None or part.teacher_tap is None or self.teacher_tap is None:
            return teacher
        by_position = dict(zip(self.teacher_tap.indices, teacher.features))
        features = [by_position[i] for i in part.teacher_tap.indices]
        return TeacherOutput(teacher.logits, features, teacher.embedding)

    def compute_losses(self, images, targets, teacher, sample_indices):
        out = self.shared.run(images)
        try:
            losses: dict[str, torch.Tensor] = {}
            for (_, part), weight in zip(self.members.items(), self.part_weights):
                _, part_losses = part.compute_losses(images, targets, self._teacher_for(part, teacher), sample_indices)
                for key, value in part_losses.items():
                    if key not in losses:
                        losses[key] = value if weight == 1.0 else weight * value
        finally:
            self.shared.clear()
        return out.logits, losses

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
