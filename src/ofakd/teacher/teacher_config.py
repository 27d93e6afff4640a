"""The ``teacher:`` section of a run config: the model (as a student's, :class:`~ofakd.models.model_config.ModelConfig`),
or the cache of its outputs, and its precision (:class:`TeacherConfig`; torch-free)."""

from __future__ import annotations

from typing import Literal

from ..models.model_config import ModelConfig


class TeacherConfig(ModelConfig):
    """The teacher: a model as above, or (``cache``) its logits recorded by ``ofakd cache record``."""

    cache: str | None = None
    """Folder of a teacher-output cache: distil from its recorded logits; the teacher is never built."""
    cache_cycle: bool = False
    """Train past the cache's recorded epochs by replaying them (epoch e uses recorded epoch e mod E)."""
    amp: Literal["same", "none", "bf16"] = "same"
    """Autocast of the teacher's forward: same (as train.amp), none (float32 even when the student uses AMP),
    bf16 (bfloat16 autocast on CPU or GPU even when the student trains in float32)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """The teacher's weights: bfloat16 halves their memory; its forward then runs under bfloat16 autocast."""
    random_init: bool = False
    """Distil from a randomly initialised teacher on purpose (tests, timings): without it a teacher with no
    weights (no checkpoint, pretrained or --teacher-run) is an error (--teacher-random-init)."""
