"""What a method calls for the teacher: one call that returns the teacher's output for a batch.

Two implementations: :class:`ofakd.teacher.live.LiveTeacher` (runs the model) and
:class:`ofakd.cache.cached_teacher.CachedTeacher` (replays a recording of it). A Distiller holds one
and calls it in ``forward``; it knows nothing of which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from ..models.tap import ModelOutput


@runtime_checkable
class TeacherSource(Protocol):
    """``teacher(images, sample_indices) -> ModelOutput`` (logits float32, plus what was required)."""

    @property
    def num_classes(self) -> int: ...

    @property
    def num_features(self) -> int:
        """Width D_t of the teacher's penultimate features."""

    def require(self, positions: Sequence[int] = (), *, embedding: bool = False) -> None:
        """From now on also give the stage features at ``positions`` (and the embedding); a source that
        cannot (a logits-only cache) raises an error naming the fix."""

    def probe(self, input_size: Sequence[int]) -> tuple[ModelOutput, tuple[int, int]]:
        """The output for a zero batch of the student's ``input_size`` and the (H, W) the teacher saw."""

    def start_epoch(self, epoch: int, step: int = 0) -> None:
        """The run starts (data) epoch ``epoch`` at ``step`` (a cache positions its reader; live: nothing)."""

    def __call__(self, images: torch.Tensor, sample_indices: torch.Tensor | None = None) -> ModelOutput: ...
