"""DataLoaders and the seeding that makes their augmentation reproducible.

Randomness in a batch comes from three places:

* the order: the sampler's own generator, seeded by ``seed`` and the epoch (``set_epoch``);
* the augmentation (crop, flip, RandAugment, random erasing): with ``workers > 0`` each epoch
  starts fresh workers whose ``torch``/``random``/``numpy`` generators are seeded from one draw
  of the loader's ``generator`` (seeded by ``seed + rank``) plus the worker id (:func:`seed_worker`),
  so saving and restoring ``loader.generator``'s state restores an epoch's augmentation exactly;
  with ``workers == 0`` the transforms draw from the main process's global generators;
* mixup/cutmix (timm ``Mixup``), applied by the engine in the main process: global ``numpy``.

So the engine seeds the global generators (``random``, numpy, torch; e.g. :func:`seed_everything`)
before building the data and at each epoch, and keeps ``loader.generator``'s state in its
checkpoints. Different ``workers`` values give different (each repeatable) augmentation.
"""

from __future__ import annotations

import random

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


def make_loader(
    dataset: Dataset, *, batch_size: int, sampler: Sampler | None, workers: int, seed: int, drop_last: bool
) -> DataLoader:
    """A DataLoader with a seeded generator and worker seeding (workers are restarted each epoch)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,  # fresh worker seeds each epoch, from the restorable generator
    )
