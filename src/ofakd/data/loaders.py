"""DataLoaders and seeding helpers.

Randomness in a training batch comes from three places, all keyed (see :mod:`.views`):

* the order: the sampler's permutation, seeded by ``seed`` and the epoch (``set_epoch``);
* the augmentation (crop, flip, RandAugment, colour jitter, random erasing): generators seeded
  by ``(seed, epoch, position of the view in the epoch)`` around each image's transform;
* mixup/cutmix (timm ``Mixup``, applied in the loader's collate): generators seeded by
  ``(seed, epoch, position of the batch's first view)``.

So a training batch is a pure function of (data seed, epoch, step, rank): it does not depend on
the global generators, the model, the number of workers or a resume. Worker processes are still
seeded (:func:`seed_worker`) for any other randomness a custom dataset might draw, and a training
run keeps them from epoch to epoch (``persistent_workers``): the keys carry the epoch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and numpy from the worker's torch seed."""
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


@dataclass(frozen=True)
class Loading:
    """How batches are loaded, whatever they hold.

    ``workers``: loader processes (0: the main process). ``prefetch``: batches each worker prepares ahead
    (DataLoader's ``prefetch_factor``). ``persistent_workers``: the worker processes live from the first
    epoch to the last instead of starting again every epoch; the keyed views allow it, since the epoch
    travels in each key the sampler yields (in the main process), not in any worker's state.
    ``pin_memory``: page-locked batches, so the copy to a GPU runs asynchronously (for a CUDA run)."""

    workers: int = 0
    prefetch: int = 2
    pin_memory: bool = False
    persistent_workers: bool = False


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    sampler: Sampler | None,
    seed: int,
    drop_last: bool,
    loading: Loading = Loading(),
    collate_fn: Callable | None = None,
) -> DataLoader:
    """A DataLoader with a seeded generator and worker seeding, loading as ``loading`` says."""
    workers = loading.workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        drop_last=drop_last,
        collate_fn=collate_fn,
        pin_memory=loading.pin_memory,
        prefetch_factor=loading.prefetch if workers > 0 else None,
        persistent_workers=loading.persistent_workers and workers > 0,
    )
