"""Validated settings for the data set (:class:`DataConfig`) and augmentation (:class:`AugmentConfig`)."""

from __future__ import annotations

from typing import Literal

import pydantic

DatasetName = Literal["digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "python"]
LoaderName = Literal["auto", "batched", "per_image"]
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming", "random")
DOWNLOADABLE = ("fashion-mnist", "cifar10", "cifar100")


class DataConfig(pydantic.BaseModel, extra="forbid"):
    """Which data set, where it lives, and how it is loaded."""

    name: DatasetName = "digits"
    """python: data sets given in Python (ofakd.fit); the command line cannot read them."""
    root: str | None = None
    """Folder. Default per data set: fashion-mnist /usr/share/datasets/fashion-mnist, cifar ./data;
    digits needs none; imagefolder has no default (ROOT/train/<class>/<image>, ROOT/val/<class>/<image>)."""
    download: bool = False
    """Download cifar10/cifar100/fashion-mnist through torchvision when missing (needs internet)."""
    train_subset: int | None = None
    """Use N training images, a random subset drawn with a fixed seed (0), the same for every run seed."""
    val_subset: int | None = None
    """Validate on N images of the validation split, a random subset drawn with a fixed seed (0)."""
    holdout: int | float | None = None
    """Validate on images held out of the training split instead of on the validation split: a count (300) or
    a fraction (0.1) of the training images (after train_subset), drawn with holdout_seed; the rest train.
    The validation split is then never read (how `ofakd tune` scores trials and keeps the test split apart)."""
    holdout_seed: int = pydantic.Field(0, ge=0)
    """Seed of the holdout draw (fixed: every run and trial of a tuning holds out the same images)."""
    workers: int = 0
    """Loader processes (0: load in the main process); a training run keeps them from epoch to epoch."""
    prefetch: int = pydantic.Field(2, ge=1)
    """Batches each loader worker prepares ahead (DataLoader's prefetch_factor; with data.workers > 0)."""
    skip_corrupt: bool = False
    """imagefolder: skip unreadable images with a warning instead of failing on them."""
    loader: LoaderName = "auto"
    """The data path. batched: the data set held in memory as one uint8 tensor on the training device, each
    batch gathered and augmented there with tensor ops (digits, fashion-mnist, cifar, arrays given to ofakd.fit);
    per_image: a PIL transform per image in loader workers (any data set, every augmentation); auto: batched
    where it applies, else per_image (saying why when the data set is in memory). data.workers applies to
    per_image only."""

    @pydantic.field_validator("train_subset", "val_subset")
    @classmethod
    def _positive_subset(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be a positive number of images, or null for the whole split")
        return v

    @pydantic.field_validator("holdout")
    @classmethod
    def _holdout(cls, v: int | float | None) -> int | float | None:
        if v is None or (isinstance(v, int) and v >= 1) or (isinstance(v, float) and 0.0 < v < 1.0):
            return v
        raise ValueError("must be a number of training images (>= 1), a fraction between 0 and 1 (e.g. 0.1), "
                         "or null to validate on the validation split")

    @pydantic.field_validator("workers")
    @classmethod
    def _workers(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be 0 (load in the main process) or a positive number of worker processes")
        return v

    @pydantic.model_validator(mode="after")
    def _download_only_where_possible(self) -> DataConfig:
        if self.download and self.name not in DOWNLOADABLE:
            raise ValueError(
                f"download applies only to {', '.join(DOWNLOADABLE)}; set data.download false for {self.name}"
            )
        return self

    @pydantic.model_validator(mode="after")
    def _holdout_replaces_val_subset(self) -> DataConfig:
        if self.holdout is not None and self.val_subset is not None:
            raise ValueError("val_subset picks images of the validation split, which holdout replaces by held-out "
                             "training images: set one of them to null")
        return self


class AugmentConfig(pydantic.BaseModel, extra="forbid"):
    """Training augmentation (timm's transforms and mixup) and the validation crop."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.4
    auto_augment: str | None = None
    """timm auto-augment string, e.g. 'rand-m9-mstd0.5-inc1' (RandAugment); disables colour jitter."""
    reprob: float = 0.0
    """Random-erasing probability (timm RandomErasing, per-pixel random fill)."""
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.0
    crop_pct: float | None = None
    """Validation: resize to size/crop_pct then center-crop; None resizes straight to the input size."""
    interpolation: str = "bicubic"
    train_resize_only: bool = False
    """Plain resize + optional hflip instead of random-resized-crop (tiny images: digits, fashion-mnist);
    colour jitter is then off, auto_augment and reprob still apply."""
    crop_padding: int = 0
    """With train_resize_only: after the resize, a random crop of the input size out of the image zero-padded
    by this many pixels on each side (the classic CIFAR recipe's 4); 0 is off."""
    repeated_aug: int = 0
    """Repeated augmentation count (timm RepeatAugSampler); 0 or 1 is off."""

    @pydantic.field_validator("hflip", "reprob", "mixup_prob", "mixup_switch_prob")
    @classmethod
    def _probability(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("must be a probability between 0 and 1")
        return v

    @pydantic.field_validator("smoothing")
    @classmethod
    def _smoothing(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError("must be in [0, 1)")
        return v

    @pydantic.field_validator("color_jitter", "mixup", "cutmix")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        if v < 0:
            raise ValueError("must be >= 0 (0 turns it off)")
        return v

    @pydantic.field_validator("scale", "ratio")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("must be two numbers 0 < low <= high")
        return v

    @pydantic.field_validator("crop_pct")
    @classmethod
    def _crop_pct(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 < v <= 1.0:
            raise ValueError("must be in (0, 1], e.g. 0.875, or null to resize without cropping")
        return v

    @pydantic.field_validator("interpolation")
    @classmethod
    def _interpolation(cls, v: str) -> str:
        if v not in INTERPOLATIONS:
            raise ValueError(f"must be one of {', '.join(INTERPOLATIONS)}")
        return v

    @pydantic.model_validator(mode="after")
    def _padding_with_plain_resize(self) -> AugmentConfig:
        if self.crop_padding < 0:
            raise ValueError("crop_padding must be >= 0 (0 turns the padded crop off)")
        if self.crop_padding and not self.train_resize_only:
            raise ValueError("crop_padding applies after a plain resize: set train_resize_only true, or "
                             "crop_padding 0 (the random-resized crop already crops)")
        return self

    @pydantic.field_validator("repeated_aug")
    @classmethod
    def _repeats(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0 (0 or 1 turns repeated augmentation off)")
        return v

    @pydantic.field_validator("auto_augment")
    @classmethod
    def _auto_augment(cls, v: str | None) -> str | None:
        if v in (None, "", "none", "None"):
            return None
        from .transforms import check_auto_augment  # on use: timm's augmentations import torch

        check_auto_augment(v)
        return v
