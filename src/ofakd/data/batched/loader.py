"""``BatchedLoader``: a DataLoader's stand-in for a data set held in memory.

Each batch is gathered from the resident uint8 images (:class:`~.resident.ResidentImages`) on their device
and transformed there as one batch. For training, the order comes from the same
:class:`~ofakd.data.views.ViewSampler` as the per-image path's (keys ``(index, epoch, global position)``),
each view's random parameters from ``(data seed, epoch, global position)`` through
:func:`~.keyed_uniforms.keyed_uniforms`, and mixup/cutmix from the batch's key
(:func:`~ofakd.data.views.keyed_mix`), so a view does not depend on the batch it lands in, on the number
of processes, on a resume or on the global generators. Batches come out on the images' device.

It has what the engine reads of a DataLoader: ``len()``, ``batch_size``, ``dataset`` (its length), ``sampler``
(``skip_next`` on a resume).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Sampler

from ..views import BATCHED_VIEW_KEY, keyed_mix
from .resident import ResidentImages


@dataclass
class BatchedLoader:
    """Batches of ``transform``-ed images in ``sampler``'s order.

    ``sampler`` yields view keys ``(index, epoch, position)`` (training: ``transform(images, key, positions)``
    with key ``(domain, seed, epoch)``) or plain indices (evaluation: ``transform(images)``).
    """

    dataset: ResidentImages
    transform: Callable
    sampler: Sampler | None
    batch_size: int
    drop_last: bool
    seed: int = 0
    mixup: Callable | None = None
    with_indices: bool = False

    def __len__(self) -> int:
        count = len(self._order())
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def _order(self) -> Iterable:
        return self.sampler if self.sampler is not None else range(len(self.dataset))

    def with_sampler(self, sampler: Sampler | None) -> BatchedLoader:
        """The same images and transform in another order (e.g. one process's share, for an evaluation)."""
        return replace(self, sampler=sampler)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        for chunk in _chunks(iter(self._order()), self.batch_size):
            if self.drop_last and len(chunk) < self.batch_size:
                return
            yield self._batch(np.asarray(chunk, dtype=np.int64))

    def _batch(self, chunk: np.ndarray) -> list[torch.Tensor]:
        keyed = chunk.ndim == 2
        index = chunk[:, 0] if keyed else chunk
        where = torch.from_numpy(index).to(self.dataset.device)
        images, targets = self.dataset.take(where)
        if keyed:
            epoch, positions = int(chunk[0, 1]), chunk[:, 2]
            images = self.transform(images, (BATCHED_VIEW_KEY, self.seed, epoch), positions)
            if self.mixup is not None:
                images, targets = keyed_mix(self.mixup, self.seed, epoch, int(positions[0]), images, targets)
        else:
            images = self.transform(images)
        return [images, targets, where] if self.with_indices else [images, targets]


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
