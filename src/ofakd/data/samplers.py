"""Train and val samplers: the epoch's order is a function of (seed, epoch) only, shared by all ranks."""

from __future__ import annotations

from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import Dataset, DistributedSampler, Sampler


class SeededRepeatAugSampler(RepeatAugSampler):
    """timm's repeated-augmentation sampler, with the permutation seeded by ``seed + epoch``.

    (timm seeds it with the epoch alone, so two run seeds would see the same order.)
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, num_repeats: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, num_repeats=num_repeats)
        self.seed = seed

    def __iter__(self):
        epoch = self.epoch
        self.epoch = self.seed + epoch  # timm's __iter__ seeds its generator with self.epoch
        try:
            return super().__iter__()  # builds the whole index list eagerly
        finally:
            self.epoch = epoch


def train_sampler(
    dataset: Dataset, *, seed: int, world_size: int, rank: int, drop_last: bool, repeated_aug: int = 0
) -> Sampler:
    """DistributedSampler (shuffled, seeded) even for one process, or the repeated-aug sampler."""
    if repeated_aug > 1:
        return SeededRepeatAugSampler(
            dataset, num_replicas=world_size, rank=rank, num_repeats=repeated_aug, seed=seed
        )
    return DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=drop_last
    )


class ShardSampler(Sampler):
    """Indices ``rank, rank + W, rank + 2W, ...`` in order: every sample exactly once over the ``W`` ranks
    (no padding, so the ranks' shares may differ by one; fine for evaluation, which has no DDP step)."""

    def __init__(self, dataset: Dataset, *, world_size: int, rank: int) -> None:
        self.size, self.world_size, self.rank = len(dataset), int(world_size), int(rank)

    def __iter__(self):
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


def val_sampler(dataset: Dataset, *, world_size: int, rank: int) -> Sampler | None:
    """None (sequential) for one process; else a :class:`ShardSampler`: summed over the ranks, a
    distributed evaluation counts every validation image exactly once, as one process does."""
    if world_size == 1:
        return None
    return ShardSampler(dataset, world_size=world_size, rank=rank)
