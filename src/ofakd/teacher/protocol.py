"""What a Distiller calls for its teacher: one call that returns the teacher's output for a batch, and the few
things a run asks of it. The source owns its behaviour; nobody outside :mod:`ofakd.teacher` and
:mod:`ofakd.cache` asks which kind it is.

Two implementations: :class:`ofakd.teacher.live.LiveTeacher` (runs the model) and
:class:`ofakd.cache.cached_teacher.CachedTeacher` (replays a recording of it). A Distiller holds one
and calls it in ``forward``; the engine reaches it through the Distiller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, runtime_checkable

import torch

from ..models.tap import ModelOutput


@runtime_checkable
class TeacherSource(Protocol):
    """``teacher(images, sample_indices) -> ModelOutput`` (logits float32, plus the features asked for)."""

    # Optional: ``weights_sha256() -> str | None``, the teacher's weights' identity (LiveTeacher, CachedTeacher have
    # it): a run records it in last.pt and compares it on resume and across torchrun processes.

    gives_features: ClassVar[bool]
    """Whether it can give stage features and embeddings besides the logits (the live teacher: yes; a
    teacher-output cache: logits only). :func:`ofakd.teacher.feature_check.check_features` reads it."""

    @property
    def num_classes(self) -> int: ...

    @property
    def num_features(self) -> int:
        """Width D_t of the teacher's penultimate features."""

    def data_epoch(self, epoch: int) -> int:
        """The epoch of data views training epoch ``epoch`` (0-based) draws: ``epoch`` itself, or the recorded
        epoch a cache replays there."""

    def start_epoch(self, epoch: int, step: int = 0) -> None:
        """The run starts data epoch ``epoch`` at ``step`` (a cache positions its reader; live: nothing)."""

    def normalised_with(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The batches are normalised with ``mean``/``std`` (per channel): a view built for batches given in Python
        re-normalises from it."""

    def check_input(self) -> None:
        """Raise when the source cannot be fed the batches yet (its view does not know the data's normalisation);
        the error names the fix."""

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The teacher as a classifier of validation images (their logits), to score it at the start of a run;
        None for a source that knows only the training views it recorded."""

    def run_note(self) -> str:
        """A few words for the run's first log line (``teacher amp bf16``), or ``""``."""

    def __call__(self, images: torch.Tensor, sample_indices: torch.Tensor | None = None) -> ModelOutput: ...
