"""``build_data``: config → datasets, transforms, samplers, loaders and mixup in one :class:`DataBundle`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from timm.data import Mixup
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ConfigError, DataError
from .batched.batch_transforms import BatchedEvalTransform, BatchedTrainTransform
from .batched.choice import BATCHED, DataPath, choose_path
from .batched.loader import BatchedLoader
from .batched.resident import ResidentImages
from .config import AugmentConfig, DataConfig
from .datasets import ArrayImageDataset, IndexedDataset
from .fingerprint import fingerprint as compute_fingerprint
from .loaders import Loading, make_loader
from .samplers import train_sampler, val_sampler
from .sources import load_source, source_num_classes
from .transforms import build_eval_transform, build_train_transform, check_input_size
from .views import KeyedViewDataset, ViewCollate, ViewSampler

if TYPE_CHECKING:
    from ..config.schema import RunConfig
    from ..models.info import InputSpec

SUBSET_SEED = 0  # subsets are the same for every run seed, so runs and caches compare like with like


@dataclass
class DataBundle:
    """Everything the engine needs from the data layer."""

    train_loader: DataLoader
    val_loader: DataLoader
    num_classes: int
    class_names: list[str]
    train_sampler: Sampler
    """The index sampler (order of dataset indices); call ``set_epoch(epoch)`` before each epoch."""
    fingerprint: str
    soft_targets: bool = False
    """True when train batches' targets are soft rows (B, K): mixup/cutmix (timm ``Mixup``, label
    smoothing folded in) is applied inside ``train_loader`` under keyed generators."""
    rank: int = 0
    views: TrainViews | None = field(default=None, repr=False)
    path: DataPath = DataPath("per_image")
    """The data path the views take (batched or per_image) and, when ``data.loader: auto`` fell back, why."""

    @property
    def world_size(self) -> int:
        return self.views.world_size if self.views is not None else 1

    def for_rank(self, rank: int) -> DataBundle:
        """The same data with the train sampler and loader of ``rank`` (same world size): e.g. to
        produce every rank's views in one process. The data set is shared, not reloaded."""
        if self.views is None or not 0 <= rank < self.world_size:
            raise ConfigError(f"rank {rank} is not in a world of size {self.world_size}")
        sampler = self.views.sampler(rank)
        return replace(self, train_sampler=sampler, train_loader=self.views.loader(rank, sampler), rank=rank)


def dataset_num_classes(data: DataConfig) -> int:
    """Number of classes of ``data`` without reading images or building transforms."""
    return source_num_classes(data)


def _subset(dataset, n: int | None, field: str, split: str, location: str):
    if n is None:
        return dataset
    if n > len(dataset):
        raise DataError(
            f"data.{field}={n} is larger than the {len(dataset)} {split} images in {location}; "
            f"lower --data.{field} or leave it unset"
        )
    idx = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(dataset))[:n])
    return dataset.subset(idx)


def split_holdout(dataset, holdout: int | float, seed: int, location: str):
    """(training part, held-out part) of ``dataset``: ``holdout`` images (a count, or a fraction of ``len(dataset)``
    rounded to the nearest image) drawn uniformly with generator ``seed``, each part in dataset order."""
    n = len(dataset)
    count = int(round(holdout * n)) if isinstance(holdout, float) else int(holdout)
    if not 1 <= count < n:
        raise DataError(
            f"data.holdout={holdout} holds out {count} of the {n} training images in {location}; hold out at least "
            "one and leave at least one to train on (a count, or a fraction such as 0.1)"
        )
    order = np.random.default_rng(seed).permutation(n)
    return dataset.subset(np.sort(order[count:])), dataset.subset(np.sort(order[:count]))


def build_mixup(augment: AugmentConfig, num_classes: int) -> Mixup | None:
    """timm Mixup/CutMix (with label smoothing folded in) when either alpha is > 0."""
    if augment.mixup <= 0 and augment.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=augment.mixup,
        cutmix_alpha=augment.cutmix,
        prob=augment.mixup_prob,
        switch_prob=augment.mixup_switch_prob,
        mode="batch",
        label_smoothing=augment.smoothing,
        num_classes=num_classes,
    )


@dataclass(frozen=True)
class TrainViews:
    """The keyed training views of one world size: any rank's index sampler and loader over them."""

    dataset: Dataset | ResidentImages
    """The training set: a view is a function of the data seed, epoch and position only."""
    seed: int
    batch_size: int
    world_size: int
    repeated_aug: int
    drop_last: bool

    def sampler(self, rank: int) -> Sampler:
        """``rank``'s order of dataset indices (call ``set_epoch`` before each epoch)."""
        return train_sampler(
            self.dataset, seed=self.seed, world_size=self.world_size, rank=rank, drop_last=self.drop_last,
            repeated_aug=self.repeated_aug,
        )

    def loader(self, rank: int, sampler: Sampler) -> DataLoader | BatchedLoader:
        """``rank``'s batches of views in ``sampler``'s order."""
        raise NotImplementedError


@dataclass(frozen=True)
class PerImageViews(TrainViews):
    """Views made image by image (a PIL transform under each view's generators) in DataLoader workers."""

    collate: ViewCollate | None = None
    loading: Loading = Loading()

    def loader(self, rank: int, sampler: Sampler) -> DataLoader:
        return make_loader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=ViewSampler(sampler, world_size=self.world_size, rank=rank),
            seed=self.seed + rank,
            drop_last=self.drop_last,
            loading=self.loading,
            collate_fn=self.collate,
        )


@dataclass(frozen=True)
class BatchedViews(TrainViews):
    """Views made a batch at a time from resident images on their device (:mod:`ofakd.data.batched`)."""

    transform: Callable | None = None
    mixup: Callable | None = None
    with_indices: bool = False

    def loader(self, rank: int, sampler: Sampler) -> BatchedLoader:
        return BatchedLoader(self.dataset, self.transform, ViewSampler(sampler, world_size=self.world_size, rank=rank),
                             batch_size=self.batch_size, drop_last=self.drop_last, seed=self.seed, mixup=self.mixup,
                             with_indices=self.with_indices)


def reordered(loader: DataLoader | BatchedLoader, sampler: Sampler) -> DataLoader | BatchedLoader:
    """``loader``'s images and transforms (or collate) in ``sampler``'s order, one pass, no workers kept."""
    if isinstance(loader, BatchedLoader):
        return loader.with_sampler(sampler)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, num_workers=loader.num_workers,
                      sampler=sampler, collate_fn=loader.collate_fn)


def _check_batching(batch_size: int, world_size: int, rank: int, mixup_on: bool) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in a world of size {world_size}")
    if mixup_on and batch_size % 2:
        raise ConfigError(f"mixup/cutmix need an even batch size per process, got {batch_size}")


def _check_request(augment: AugmentConfig, input_size, batch_size: int, world_size: int, rank: int) -> None:
    """What a build of loaders is asked for makes sense: the batch, the rank, the input size."""
    _check_batching(batch_size, world_size, rank, augment.mixup > 0 or augment.cutmix > 0)
    check_input_size(input_size)


def _check_epoch(sampler: Sampler, batch_size: int, drop_last: bool, mixup_on: bool, location: str) -> None:
    if drop_last and len(sampler) < batch_size:
        raise DataError(
            f"{len(sampler)} training images per process in {location} make no full batch of {batch_size}; "
            "lower the batch size or use more images (data.train_subset)"
        )
    if mixup_on and not drop_last and len(sampler) % batch_size % 2:
        raise ConfigError(
            "mixup/cutmix need even batches: keep drop_last on, or make the epoch a multiple of 2"
        )


def build_data(
    data: DataConfig,
    augment: AugmentConfig,
    *,
    input_size: tuple[int, int, int],
    mean: tuple,
    std: tuple,
    batch_size: int,
    seed: int,
    world_size: int = 1,
    rank: int = 0,
    with_indices: bool = False,
    drop_last: bool = True,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    device: torch.device | str = "cpu",
) -> DataBundle:
    """Build train/val loaders for the student's ``input_size`` (C, H, W) and ``mean``/``std``.

    Train batches are a pure function of (``seed``, epoch, step, rank) (see :mod:`.views`): order,
    augmentation and mixup/cutmix never read the global generators. The epoch is partitioned across
    ``world_size`` ranks. Batches are ``[images, targets]`` or, with ``with_indices``,
    ``[images, targets, indices]``; train targets are soft rows (B, K) when mixup/cutmix is on
    (``bundle.soft_targets``), class indices otherwise. ``pin_memory`` and ``persistent_workers``: see
    :class:`~ofakd.data.loaders.Loading` (a training run on a GPU wants both). The data path follows
    ``data.loader`` (:func:`~ofakd.data.batched.choice.choose_path`); a batched one keeps the images on
    ``device`` and its batches come out there.
    """
    _check_request(augment, input_size, batch_size, world_size, rank)
    source = load_source(data)
    train_ds: Dataset = _subset(source.train, data.train_subset, "train_subset", "training", source.location)
    if data.holdout is not None:  # validation on training images held out: the validation split is never read
        train_ds, val_ds = split_holdout(train_ds, data.holdout, data.holdout_seed, source.location)
    else:
        val_ds = _subset(source.val, data.val_subset, "val_subset", "validation", source.location)
    fp = compute_fingerprint(data.name, train_ds, val_ds, source.class_names, source.location)
    return _transformed(data, augment, train_ds, val_ds, source.class_names, fp, source.location,
                        input_size=input_size, mean=mean, std=std, batch_size=batch_size, seed=seed,
                        world_size=world_size, rank=rank, with_indices=with_indices, drop_last=drop_last,
                        loading=Loading(data.workers, data.prefetch, pin_memory, persistent_workers), device=device)


def array_data(
    train: tuple,
    val: tuple,
    class_names: list[str],
    augment: AugmentConfig,
    *,
    input_size: tuple[int, int, int],
    mean: tuple,
    std: tuple,
    batch_size: int,
    seed: int,
    loader: str = "auto",
    world_size: int = 1,
    rank: int = 0,
    with_indices: bool = False,
    loading: Loading | None = None,
    device: torch.device | str = "cpu",
) -> DataBundle:
    """Train/val loaders over images given as arrays: ``train`` and ``val`` are ``(images, labels)`` with uint8
    images (N, H, W), (N, H, W, C) or (N, C, H, W), numpy or torch, and integer labels. They are data sets held in
    memory like CIFAR's: resized, augmented (``augment``) and normalised with ``mean``/``std`` as a run of
    ``ofakd distill`` would, on the batched path where ``loader`` (``data.loader``) allows."""
    _check_request(augment, input_size, batch_size, world_size, rank)
    train_ds = ArrayImageDataset.given(*train, what="train_set", classes=len(class_names))
    val_ds = ArrayImageDataset.given(*val, what="val_set", classes=len(class_names))
    fp = compute_fingerprint("python", train_ds, val_ds, class_names)
    loading = loading or Loading()
    data = DataConfig(name="python", loader=loader, workers=loading.workers, prefetch=loading.prefetch)
    return _transformed(data, augment, train_ds, val_ds, class_names, fp, "the given train_set",
                        input_size=input_size, mean=mean, std=std, batch_size=batch_size, seed=seed,
                        world_size=world_size, rank=rank, with_indices=with_indices, drop_last=True,
                        loading=loading, device=device)


def _transformed(data: DataConfig, augment: AugmentConfig, train_ds: Dataset, val_ds: Dataset,
                 class_names: list[str], fp: str, location: str, *, input_size, mean, std, batch_size: int,
                 seed: int, world_size: int, rank: int, with_indices: bool, drop_last: bool, loading: Loading,
                 device: torch.device | str) -> DataBundle:
    """The loaders of untransformed train/val data sets on the data path ``data.loader`` chooses for them."""
    mixup_on = augment.mixup > 0 or augment.cutmix > 0
    mixup = build_mixup(augment, len(class_names)) if mixup_on else None
    in_memory = isinstance(train_ds, ArrayImageDataset) and isinstance(val_ds, ArrayImageDataset)
    path = choose_path(data, augment, input_size, in_memory=in_memory)
    batching = dict(mixup=mixup, batch_size=batch_size, seed=seed, world_size=world_size, rank=rank,
                    with_indices=with_indices, drop_last=drop_last, repeated_aug=augment.repeated_aug)
    if path.name == BATCHED:
        train_images = ResidentImages.from_arrays(train_ds, device)
        val_images = ResidentImages.from_arrays(val_ds, device)
        return _batched_bundle(train_images, val_images, class_names, fp, location,
                               train_transform=BatchedTrainTransform(augment, input_size, mean, std),
                               val_transform=BatchedEvalTransform(augment, input_size, mean, std), **batching)
    train_ds.transform = build_train_transform(augment, input_size, mean, std)
    val_ds.transform = build_eval_transform(augment, input_size, mean, std)
    bundle = _bundle(train_ds, val_ds, class_names, fp, location, **batching, loading=loading)
    return replace(bundle, path=path)


def given_data(
    train: Dataset,
    val: Dataset,
    class_names: list[str],
    *,
    batch_size: int,
    seed: int,
    world_size: int = 1,
    rank: int = 0,
    with_indices: bool = False,
    loading: Loading | None = None,
) -> DataBundle:
    """Train/val loaders over data sets given in Python (items ``(image tensor, class index)``, transformed by
    the data sets themselves), with the engine's keyed views: each training item is loaded under the
    generators of its key (data seed, epoch, position), so random transforms drawing from ``random``, numpy
    or torch give the same views in every run, on any number of workers, and after a resume."""
    _check_batching(batch_size, world_size, rank, False)
    for split, dataset in (("train", train), ("val", val)):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__") or len(dataset) == 0:
            raise DataError(f"{split}_set must be a non-empty map-style torch Dataset (with __len__ and "
                            f"__getitem__), got {type(dataset).__name__}")
    fp = compute_fingerprint("python", train, val, class_names)
    return _bundle(train, val, class_names, fp, "the given train_set", mixup=None, batch_size=batch_size, seed=seed,
                   world_size=world_size, rank=rank, with_indices=with_indices, drop_last=True, repeated_aug=0,
                   loading=loading or Loading())


def _bundle(train_ds: Dataset, val_ds: Dataset, class_names: list[str], fp: str, location: str, *, mixup,
            batch_size: int, seed: int, world_size: int, rank: int, with_indices: bool, drop_last: bool,
            repeated_aug: int, loading: Loading) -> DataBundle:
    """The loaders of transformed train/val data sets: keyed training views (mixup in their collate), the
    validation split shared among ranks."""
    if with_indices:
        train_ds, val_ds = IndexedDataset(train_ds), IndexedDataset(val_ds)
    views = PerImageViews(
        dataset=KeyedViewDataset(train_ds, seed), collate=ViewCollate(seed, mixup), seed=seed,
        batch_size=batch_size, world_size=world_size, repeated_aug=repeated_aug, drop_last=drop_last,
        loading=loading,
    )
    val_loader = make_loader(
        val_ds,
        batch_size=batch_size,
        sampler=val_sampler(val_ds, world_size=world_size, rank=rank),
        seed=seed + rank,
        drop_last=False,
        loading=loading,
    )
    return _views_bundle(views, val_loader, class_names, fp, location, rank=rank, mixup_on=mixup is not None)


def _batched_bundle(train_images: ResidentImages, val_images: ResidentImages, class_names: list[str], fp: str,
                    location: str, *, train_transform: Callable, val_transform: Callable, mixup, batch_size: int,
                    seed: int, world_size: int, rank: int, with_indices: bool, drop_last: bool,
                    repeated_aug: int) -> DataBundle:
    """The loaders of resident train/val images on the batched path (keyed training views, mixup per batch)."""
    views = BatchedViews(
        dataset=train_images, seed=seed, batch_size=batch_size, world_size=world_size, repeated_aug=repeated_aug,
        drop_last=drop_last, transform=train_transform, mixup=mixup, with_indices=with_indices,
    )
    val_loader = BatchedLoader(val_images, val_transform, val_sampler(val_images, world_size=world_size, rank=rank),
                               batch_size=batch_size, drop_last=False, with_indices=with_indices)
    bundle = _views_bundle(views, val_loader, class_names, fp, location, rank=rank, mixup_on=mixup is not None)
    return replace(bundle, path=DataPath(BATCHED))


def _views_bundle(views: TrainViews, val_loader, class_names: list[str], fp: str, location: str, *, rank: int,
                  mixup_on: bool) -> DataBundle:
    """The bundle of ``rank``'s training views beside the validation loader."""
    sampler = views.sampler(rank)
    _check_epoch(sampler, views.batch_size, views.drop_last, mixup_on, location)
    return DataBundle(
        train_loader=views.loader(rank, sampler),
        val_loader=val_loader,
        num_classes=len(class_names),
        class_names=list(class_names),
        train_sampler=sampler,
        fingerprint=fp,
        soft_targets=mixup_on,
        rank=rank,
        views=views,
    )


def run_data(cfg: RunConfig, student_spec: InputSpec, *, world_size: int, rank: int, with_indices: bool,
             pin_memory: bool = False, persistent_workers: bool = False,
             device: torch.device | str = "cpu") -> DataBundle:
    """The data of a run of ``cfg``: the student's input spec, the data seed, full batches only. A live
    run and ``ofakd cache record`` both draw their views through this, so they draw the same ones."""
    return build_data(
        cfg.data,
        cfg.augment,
        input_size=student_spec.input_size,
        mean=student_spec.mean,
        std=student_spec.std,
        batch_size=cfg.train.batch_size,
        seed=cfg.data_seed,
        world_size=world_size,
        rank=rank,
        with_indices=with_indices,
        drop_last=True,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers,
        device=device,
    )
