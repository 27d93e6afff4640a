"""The teacher replayed from a teacher-output cache: the recorded logits of exactly these views.

A :class:`CachedTeacher` is a :class:`~ofakd.teacher.protocol.TeacherSource`: a Distiller calls it as it
would call the live teacher. The engine positions it at each epoch (:meth:`start_epoch`); each call
then returns the next recorded batch's logits, after checking that the batch is the one recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import CacheError
from ..models.tap import ModelOutput
from .reader import EpochReader, TeacherCache


class CachedTeacher:
    """``teacher(images, sample_indices) -> ModelOutput`` (logits only) from ``cache``, for process ``rank``."""

    def __init__(self, cache: TeacherCache, rank: int = 0) -> None:
        self.cache = cache
        self.rank = rank
        self._reader: EpochReader | None = None

    @property
    def num_classes(self) -> int:
        return self.cache.num_classes

    @property
    def num_features(self) -> int:
        return self.cache.teacher_dim

    def require(self, positions: Sequence[int] = (), *, embedding: bool = False) -> None:
        if positions or embedding:
            raise self._logits_only()

    def probe(self, input_size: Sequence[int]) -> tuple[ModelOutput, tuple[int, int]]:
        raise self._logits_only()

    def _logits_only(self) -> CacheError:
        return CacheError(
            f"teacher cache {self.cache.directory} holds logits only, and this method needs teacher features; "
            "run it with a live teacher (drop --teacher-cache)"
        )

    def start_epoch(self, epoch: int, step: int = 0) -> None:
        """Replay recorded epoch ``epoch`` from ``step`` on."""
        self._reader = self.cache.epoch_reader(epoch, self.rank, step=step)

    def __call__(self, images: torch.Tensor, sample_indices: torch.Tensor | None = None) -> ModelOutput:
        if self._reader is None:
            raise CacheError(f"teacher cache {self.cache.directory}: start_epoch(epoch) before the first batch")
        return ModelOutput(self._reader(images, sample_indices))
