"""The Distiller base class: one nn.Module per method, ``forward -> (student_logits, losses)``.

A Distiller owns the student and the method's own trainable modules (``branches``:
OFA branches, FitNet projectors, CRD embedders, ...). The teacher is held *outside*
the module tree: it never appears in ``parameters()``, ``state_dict()`` or a DDP
wrapper, always runs in eval mode under ``torch.inference_mode()``, and follows the
distiller on ``.to(device)``. A method file knows nothing of the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from torch import nn

from ..errors import ConfigError
from ..models.stages import StageTap
from .targets import ground_truth_loss
from .teacher_view import TeacherView, prepare_teacher


def _check_stages(value: list[int]) -> list[int]:
    if not value or any(s not in (1, 2, 3, 4) for s in value) or len(set(value)) != len(value):
        raise ValueError(f"stages must be distinct values among 1, 2, 3, 4; got {value}")
    return sorted(value)


Stages = Annotated[list[int], AfterValidator(_check_stages)]
"""Option type for a method's stages: distinct values among 1-4, sorted."""


class MethodOptions(BaseModel):
    """Options every method has. Subclass per method; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    gt_weight: float = 1.0
    """Weight of the cross-entropy to the ground-truth (or mixed / smoothed) targets."""
    gt_loss: Literal["ce", "bce"] = "ce"
    """Supervised loss: ce (cross-entropy) or bce (binary cross-entropy, the 'stronger' ImageNet recipe)."""


@dataclass
class TeacherOutput:
    """What a method gets from the teacher: logits, and stage features if it asked for them."""

    logits: torch.Tensor
    features: list[torch.Tensor] | None = None
    embedding: torch.Tensor | None = None
    """The teacher's penultimate embedding (pooled pre-logits, (B, D_t)) for methods that read it."""


class Distiller(nn.Module):
    """Base of every method. Subclasses set the class attributes and implement ``compute_losses``."""

    method_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    """One line for ``ofakd methods``."""
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    needs_teacher: ClassVar[bool] = True
    needs_teacher_features: ClassVar[bool] = False
    """True when the method needs teacher stage features (it then cannot use a logits-only cache)."""
    needs_sample_indices: ClassVar[bool] = False
    """True when ``forward`` needs ``sample_indices`` (dataset indices of the batch), e.g. CRD."""
    teacher_autocast: Callable[[], contextlib.AbstractContextManager] | None = None
    """Set by the engine: the autocast context every teacher forward runs in (``teacher.amp``,
    ``teacher.dtype``); None: the caller's (the student's) precision."""

    def __init__(
        self,
        teacher: nn.Module | None,
        student: nn.Module,
        options: MethodOptions,
        *,
        input_size: tuple[int, int, int] | None = None,
        teacher_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
        num_samples: int | None = None,
        teacher_channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.options = options
        self.student = student
        self.branches = nn.Module() if not hasattr(self, "branches") else self.branches
        self.input_size = input_size
        self.num_samples = num_samples
        self.teacher_input = TeacherView(teacher_input, channels_last=teacher_channels_last)
        self.__dict__["teacher"] = teacher  # outside the module tree on purpose
        if teacher is not None:
            prepare_teacher(teacher, channels_last=teacher_channels_last)
        self.teacher_tap = StageTap(teacher) if (teacher is not None and self.needs_teacher_features) else None

    # ---- teacher -----------------------------------------------------------------
    def _apply(self, fn, recurse=True):  # noqa: D401 - nn.Module hook
        """Move or cast the out-of-tree teacher together with the distiller."""
        if self.teacher is not None:
            self.teacher._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def run_teacher(self, images: torch.Tensor) -> TeacherOutput:
        """Teacher logits (and stage features if the method needs them), no autograd."""
        if self.teacher is None:
            raise ConfigError(f"method {self.method_name!r} needs a teacher (or teacher logits from a cache)")
        x = self.teacher_input(images)
        with torch.inference_mode():
            if self.teacher_tap is not None:
                logits, features = self.teacher_tap(x)
            else:
                logits, features = self.teacher(x), None
        # inference tensors cannot be saved for backward: hand out normal copies
        logits = logits.float().clone()
        features = [f.clone() for f in features] if features is not None else None
        return TeacherOutput(logits, features)

    # ---- forward -----------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        teacher_logits: torch.Tensor | None = None,
        sample_indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Student logits and a dict of weighted scalar losses (their sum is the training loss).

        ``targets`` are class indices (B,) or soft rows (B, K) from mixup/cutmix/smoothing.
        ``teacher_logits`` (from a teacher-output cache) replaces the teacher's forward.
        """
        if not self.needs_teacher:
            teacher = None
        elif teacher_logits is not None:
            if self.needs_teacher_features:
                raise ConfigError(
                    f"method {self.method_name!r} needs teacher features; a logits-only teacher cache "
                    "cannot serve it. Run it with a live teacher (drop --teacher-cache)."
                )
            teacher = TeacherOutput(teacher_logits.float())
        else:
            with self.teacher_autocast() if self.teacher_autocast is not None else contextlib.nullcontext():
                teacher = self.run_teacher(images)
        if self.needs_sample_indices and sample_indices is None:
            raise ConfigError(f"method {self.method_name!r} needs the dataset indices of the batch (sample_indices)")
        return self.compute_losses(images, targets, teacher, sample_indices)

    def compute_losses(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        teacher: TeacherOutput | None,
        sample_indices: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # ---- helpers -----------------------------------------------------------------
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The student's and the method's own parameters (never the teacher's)."""
        return (p for p in self.parameters() if p.requires_grad)

    def gt_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The weighted supervised term ``gt_weight · loss(logits, targets)`` (``gt_loss``: ce or bce)."""
        return self.options.gt_weight * ground_truth_loss(logits, targets, self.options.gt_loss)

    def on_step_end(self) -> None:
        """Hook the engine calls after each optimizer step (e.g. momentum updates). Default: nothing."""

    def set_epoch(self, epoch: int) -> None:
        """Hook the engine calls at the start of each epoch (0-based), also after a resume.

        For methods with epoch-dependent terms (e.g. DKD's warm-up). Default: nothing.
        """


def parse_options(cls: type[Distiller], options: dict) -> MethodOptions:
    """Validate ``options`` against ``cls.Options``; errors name the field and the fix."""
    try:
        return cls.Options(**options)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "options"
        known = ", ".join(cls.Options.model_fields)
        if first["type"] == "extra_forbidden":
            import difflib

            close = difflib.get_close_matches(field, list(cls.Options.model_fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"method {cls.method_name!r} has no option {field!r}.{hint} Its options: {known}."
            ) from None
        raise ConfigError(f"method {cls.method_name!r} option {field!r}: {first['msg']}") from None
