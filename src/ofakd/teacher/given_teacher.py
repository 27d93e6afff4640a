"""A teacher as a Distiller holds it: a teacher source. A teacher given as a model becomes the live teacher here,
the one place that tells a model from a source."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import ModelError
from .live import LiveTeacher
from .protocol import TeacherSource


def teacher_model(teacher) -> nn.Module | None:
    """``teacher`` when it is a model to run live (an ``nn.Module`` that is no teacher source), else None."""
    return teacher if isinstance(teacher, nn.Module) and not isinstance(teacher, TeacherSource) else None


def as_source(
    teacher: nn.Module | TeacherSource | None,
    *,
    input_view: Callable[[torch.Tensor], torch.Tensor] | None = None,
    channels_last: bool = True,
    stage_modules: Sequence[str] | None = None,
) -> TeacherSource | None:
    """``teacher`` itself when it is a teacher source (live or cached) or None, else the model run live: fed
    through ``input_view``, its stage features from ``stage_modules`` when named."""
    if teacher_model(teacher) is not None:
        return LiveTeacher(teacher, input_view=input_view, channels_last=channels_last, stage_modules=stage_modules)
    named = getattr(getattr(teacher, "tap", None), "modules", None)
    if stage_modules is not None and list(stage_modules) != named:
        raise ModelError(
            f"teacher_stages {list(stage_modules)} name modules of a teacher model, but a teacher source "
            f"({type(teacher).__name__}) was given: pass the model itself, or build "
            "LiveTeacher(model, stage_modules=[...])"
        )
    return teacher


def check_source(teacher) -> None:
    """A Distiller holds a teacher source or None; a model (or anything else) is an error naming the fix."""
    if teacher is not None and not isinstance(teacher, TeacherSource):
        raise ModelError(f"a Distiller takes a teacher source (LiveTeacher, CachedTeacher) or None, not a "
                         f"{type(teacher).__name__}: build it with ofakd.create_distiller(method, teacher=model, ...), "
                         "which runs a model live")
