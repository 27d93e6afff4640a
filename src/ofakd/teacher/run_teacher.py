"""A run's live teacher from its config: the ``teacher:`` section, the student's input, the run's precision.

The engine (a live run) and ``ofakd cache record`` both build their teacher here, so the recorded
logits are the live ones by construction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.views import untouched_rng
from ..errors import ConfigError
from ..models.factory import check_model_name
from ..models.from_config import build_model, check_forward, model_spec
from ..models.info import InputSpec
from .input_view import teacher_adapter
from .live import LiveTeacher
from .teacher_config import TeacherConfig


def teacher_precision(amp: str, dtype: str, run_amp: str) -> tuple[str, torch.dtype]:
    """(autocast mode, weight dtype) of the teacher's forward from ``teacher.amp`` and ``teacher.dtype``:

    * ``same`` — the run's resolved mode ``run_amp`` (``train.amp``);
    * ``none`` — float32 even when the student uses AMP (the exact teacher logits);
    * ``bf16`` — bfloat16 autocast (CPU and GPU), whatever the student uses;
    * ``dtype: bfloat16`` — bfloat16 weights (half the memory) and a bfloat16 forward.
    """
    if dtype == "bfloat16" and amp == "none":
        raise ConfigError("teacher.dtype bfloat16 needs a bfloat16 forward: set teacher.amp to bf16 or same, "
                          "or teacher.dtype to float32")
    weights = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    if dtype == "bfloat16" or amp == "bf16":
        return "bf16", weights
    return ("none" if amp == "none" else run_amp), weights


def precision_label(amp: str, dtype: str, run_amp: str) -> str:
    """The teacher's precision in words (a cache's manifest records it): ``none``, ``bf16``, or
    ``bf16, bfloat16 weights``."""
    return precision_words(*teacher_precision(amp, dtype, run_amp))


def precision_words(mode: str, weights: torch.dtype) -> str:
    """An autocast mode and a weight dtype in the words of :func:`precision_label`."""
    return mode if weights == torch.float32 else f"{mode}, bfloat16 weights"


def build_teacher_model(cfg: TeacherConfig, num_classes: int) -> tuple[nn.Module, InputSpec]:
    """The teacher network of section ``cfg`` and its input spec, checked to take that input.

    It draws nothing from the global generators, so the student's modules initialise the same with
    a live teacher and with a cached one. A teacher without weights is an error unless
    ``teacher.random_init`` says it is meant."""
    if cfg.name:  # a misspelt name first: its fix is another than for missing weights
        check_model_name(cfg.name)
    check_weights(cfg)
    with untouched_rng():
        model = build_model(cfg, num_classes, "teacher")
    spec = model_spec(model, cfg)
    check_forward(model, spec.input_size, "teacher", cfg.name)
    return model, spec


def check_weights(cfg: TeacherConfig) -> None:
    """A teacher has weights (``checkpoint`` or ``pretrained``), or ``random_init`` says it is random on purpose:
    distilling from a random network is otherwise a mistake that trains for hours without a sign."""
    if not (cfg.checkpoint or cfg.pretrained or cfg.random_init):
        raise ConfigError(
            f"teacher {cfg.name} has no weights, so it would be a randomly initialised network: pass "
            "--teacher-checkpoint PATH, --teacher-pretrained (the tag's or Hub repo's weights) or --teacher-run "
            "runs/NAME (a model trained with `ofakd train`); to distil from random weights on purpose, pass "
            "--teacher-random-init (teacher.random_init: true)"
        )


def live_teacher(
    model: nn.Module,
    spec: InputSpec,
    student_spec: InputSpec,
    *,
    amp: str,
    dtype: str,
    run_amp: str,
) -> LiveTeacher:
    """``model`` as a run's live teacher: fed the student's batch through its own input view, in the
    precision ``teacher.amp``/``teacher.dtype`` give next to the run's ``run_amp``."""
    mode, weights = teacher_precision(amp, dtype, run_amp)
    return LiveTeacher(model, input_view=teacher_adapter(student_spec, spec), amp=mode, dtype=weights)
