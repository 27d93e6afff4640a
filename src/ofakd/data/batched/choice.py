"""Which data path a run takes: ``data.loader`` (auto, batched, per_image) against what the batched path can do.

The batched path needs the data set in memory (digits, Fashion-MNIST, CIFAR, arrays given to ``ofakd.fit``)
and augmentations it computes per view: crops, resize (bilinear, bicubic, nearest, random), padded crop,
flip, erasing, mixup/cutmix. RandAugment/AutoAugment and colour jitter stay on the per-image path: kornia
has batched versions, but its RandAugment is another policy than timm's ``rand-m9-mstd0.5-inc1`` (op set,
magnitude noise, increasing variants) and both draw from torch's global generator rather than from a
view's key, so a recipe would silently mean something else and a cached teacher would not replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import ConfigError
from ..config import AugmentConfig, DataConfig
from .resample import FILTERS

IN_MEMORY_SOURCES = ("digits", "fashion-mnist", "cifar10", "cifar100")
BATCHED, PER_IMAGE = "batched", "per_image"


@dataclass(frozen=True)
class DataPath:
    """The path a run's views take, and (for ``auto`` falling back) why it is not the batched one."""

    name: str
    note: str | None = None


def batched_obstacles(augment: AugmentConfig, input_size: Sequence[int]) -> list[str]:
    """What in ``augment`` the batched path does not compute for ``input_size`` (C, H, W) (empty: all of it)."""
    found = []
    if augment.auto_augment:
        found.append(f"augment.auto_augment {augment.auto_augment!r} (RandAugment/AutoAugment)")
    if augment.color_jitter > 0 and not augment.train_resize_only:
        found.append(f"augment.color_jitter {augment.color_jitter}")
    if augment.interpolation not in (*FILTERS, "random"):
        found.append(f"augment.interpolation {augment.interpolation!r} (batched: {', '.join(FILTERS)}, random)")
    if augment.crop_pct is not None and int(input_size[1]) != int(input_size[2]):
        found.append("augment.crop_pct with a non-square input (timm keeps the aspect ratio there)")
    return found


def choose_path(data: DataConfig, augment: AugmentConfig, input_size: Sequence[int], *,
                in_memory: bool | None = None) -> DataPath:
    """The data path of ``data.loader`` for this data set and augmentation. ``in_memory``: whether the images
    are held in memory (default: by the data set's name). ``batched`` where it cannot apply is an error naming
    why; ``auto`` falls back to the per-image path with a note saying why."""
    if data.loader == PER_IMAGE:
        return DataPath(PER_IMAGE)
    in_memory = data.name in IN_MEMORY_SOURCES if in_memory is None else in_memory
    reasons = batched_obstacles(augment, input_size) if in_memory else [
        f"data {data.name!r} is read image by image from files or a Python data set"]
    if not reasons:
        return DataPath(BATCHED)
    if data.loader == BATCHED:
        raise ConfigError(f"data.loader batched cannot compute {'; '.join(reasons)}: set data.loader auto or "
                          "per_image, or drop those settings")
    if not in_memory:
        return DataPath(PER_IMAGE)
    return DataPath(PER_IMAGE, f"the per-image data path is used (the batched path does not compute "
                               f"{'; '.join(reasons)}); data.loader per_image silences this note")

