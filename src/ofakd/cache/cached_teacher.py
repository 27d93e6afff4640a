"""The teacher replayed from a teacher-output cache: the recorded logits of exactly these views.

A :class:`CachedTeacher` is a :class:`~ofakd.teacher.protocol.TeacherSource`: a Distiller calls it as it
would call the live teacher. The run positions it at each epoch (:meth:`start_epoch`, at the recorded epoch
:meth:`data_epoch` names); each call then returns the next recorded batch's logits, after checking that the
batch is the one recorded. It gives logits only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import CacheError
from ..models.tap import ModelOutput
from .reader import EpochReader, TeacherCache


class CachedTeacher:
    """``teacher(images, sample_indices) -> ModelOutput`` (logits only) from ``cache``, for process ``rank``;
    with ``cycle`` a run longer than the recording replays its epochs again (epoch e: recorded e mod E)."""

    gives_features = False

    def __init__(self, cache: TeacherCache, rank: int = 0, *, cycle: bool = False) -> None:
        self.cache = cache
        self.rank = rank
        self.cycle = cycle
        self._reader: EpochReader | None = None

    def weights_sha256(self) -> str | None:
        """The recorded teacher's weights, as the cache's manifest names them."""
        return self.cache.manifest["teacher"].get("weights_sha256")

    @property
    def num_classes(self) -> int:
        return self.cache.num_classes

    @property
    def num_features(self) -> int:
        return self.cache.teacher_dim

    def data_epoch(self, epoch: int) -> int:
        """The recorded epoch training epoch ``epoch`` replays (past the recording without ``cycle``: an error)."""
        return self.cache.data_epoch(epoch, self.cycle)

    def start_epoch(self, epoch: int, step: int = 0) -> None:
        """Replay recorded epoch ``epoch`` from ``step`` on."""
        self._reader = self.cache.epoch_reader(epoch, self.rank, step=step)

    def normalised_with(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Nothing to do: the recording was made of the views as they were."""

    def check_input(self) -> None:
        """Nothing to check: the recording checks each batch against the views it recorded."""

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """None: a recording knows the training views only."""
        return None

    def run_note(self) -> str:
        return ""

    def __call__(self, images: torch.Tensor, sample_indices: torch.Tensor | None = None) -> ModelOutput:
        if self._reader is None:
            raise CacheError(f"teacher cache {self.cache.directory}: start_epoch(epoch) before the first batch")
        return ModelOutput(self._reader(images, sample_indices))
