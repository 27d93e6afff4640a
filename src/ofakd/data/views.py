"""Keyed views: every training batch is a pure function of (data seed, epoch, position in the epoch).

A training *view* is one augmented image: the sample order, crop, flip, RandAugment, colour
jitter and random erasing that produced it. Here each view draws its randomness from generators
seeded by a hash of ``(data seed, epoch, global position)`` and nothing else, and mixup/cutmix
(partners and λ) from a hash of ``(data seed, epoch, global position of the batch's first view)``.
So the views of a run do not depend on the model (its init, dropout, drop-path), on what the
global generators did before, on the number of loader workers, or on a resume: a teacher
recording (``ofakd cache record``) and a distillation run see exactly the same images.

* :class:`ViewSampler` wraps the train sampler (``DistributedSampler`` or the repeated-aug
  sampler) and yields keys ``(dataset index, epoch, global position)``. For rank ``r`` of ``W``
  the ``i``-th sample is global position ``r + i·W`` (both samplers deal one permutation out
  round-robin), so with repeated augmentation each copy of an index is its own view.
* :class:`KeyedViewDataset` loads and transforms ``dataset[index]`` under :func:`keyed_rng`.
* :class:`ViewCollate` stacks the batch and applies mixup/cutmix under :func:`keyed_rng`.

:func:`keyed_rng` saves Python's ``random``, numpy's and torch's CPU generator states, seeds all
three from the key, runs the body and restores them: the surrounding code sees no draw at all.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate, get_worker_info

VIEW_KEY = 0
"""Domain tag of a single view's key."""
MIX_KEY = 1
"""Domain tag of a batch's mixup/cutmix key."""
BATCHED_VIEW_KEY = 2
"""Domain tag of a view's key on the batched path (:mod:`ofakd.data.batched`)."""


def key_state(*key: int) -> np.ndarray:
    """Four well-mixed 32-bit words from non-negative-or-negative integers ``key`` (SeedSequence)."""
    entropy = [int(k) % 2**64 for k in key]
    return np.random.SeedSequence(entropy).generate_state(4)


@contextlib.contextmanager
def keyed_rng(*key: int) -> Iterator[None]:
    """Run the body with ``random``, numpy and torch (CPU) seeded from ``key``; restore them after.

    Only torch's CPU generator is touched (never CUDA's), so GPU dropout is unaffected. Inside a
    DataLoader worker process nothing else draws from them, so the (costly, ~0.1 ms) save and
    restore is skipped there.
    """
    words = key_state(*key)
    if get_worker_info() is not None:
        _seed(words)
        yield
        return
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        _seed(words)
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


def _seed(words: np.ndarray) -> None:
    random.seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(words)
    torch.random.default_generator.manual_seed(int(words[2]) << 32 | int(words[3]))


@contextlib.contextmanager
def untouched_rng() -> Iterator[None]:
    """Run the body and put ``random``, numpy and torch (CPU) back as they were: its draws are invisible.

    E.g. building a teacher (random init before its checkpoint loads) without shifting what the
    student's modules built afterwards draw, so a run with a cached teacher initialises alike.
    """
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class ViewSampler(Sampler):
    """Yields ``(dataset index, epoch, global position)`` for each sample of the wrapped sampler's epoch."""

    def __init__(self, sampler: Sampler, *, world_size: int = 1, rank: int = 0) -> None:
        self.sampler = sampler
        self.world_size = int(world_size)
        self.rank = int(rank)
        self._skip = 0

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def skip_next(self, samples: int) -> None:
        """Make the next pass start after its first ``samples`` samples, with the keys they would have had
        (a resume inside an epoch: the batches that follow are the uninterrupted run's). Once only."""
        self._skip = max(int(samples), 0)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch = self.epoch
        skip, self._skip = self._skip, 0
        for i, index in enumerate(self.sampler):
            if i >= skip:
                yield int(index), epoch, self.rank + i * self.world_size


class KeyedViewDataset(Dataset):
    """``dataset[index]`` transformed under the RNG of key ``(seed, epoch, position)``; items are ``(key, item)``."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]):
        index, epoch, position = key
        with keyed_rng(VIEW_KEY, self.seed, epoch, position):
            item = self.dataset[index]
        return key, item


class ViewCollate:
    """Collate ``(key, item)`` pairs into a batch (a list, as ``default_collate`` gives) and apply
    ``mixup`` (e.g. timm ``Mixup``, which returns soft targets) to ``batch[0], batch[1]`` under the
    RNG of key ``(seed, epoch, first view's global position)`` — the batch's unique name."""

    def __init__(self, seed: int, mixup: Callable | None = None) -> None:
        self.seed = int(seed)
        self.mixup = mixup

    def __call__(self, pairs: list) -> list:
        keys = [key for key, _ in pairs]
        batch = list(default_collate([item for _, item in pairs]))
        if self.mixup is not None:
            _, epoch, first = keys[0]
            batch[0], batch[1] = keyed_mix(self.mixup, self.seed, epoch, first, batch[0], batch[1])
        return batch


def keyed_mix(mixup: Callable, seed: int, epoch: int, first_position: int, images, targets):
    """``mixup(images, targets)`` under the RNG of the batch's key ``(seed, epoch, first view's global position)``:
    the same λ, mode and box for the same batch on either data path."""
    with keyed_rng(MIX_KEY, seed, epoch, first_position):
        return mixup(images, targets)
