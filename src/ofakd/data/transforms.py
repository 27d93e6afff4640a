"""Train and validation transforms, assembled from timm's pieces.

Every image enters as a PIL image and is converted to RGB first, so timm's augmentations
(random-resized-crop, RandAugment, colour jitter) see what they expect; for a 1-channel
student it becomes grayscale ("L") just before ``ToTensor``. Normalisation uses the
student's mean/std; a 3-value mean/std for a 1-channel input is averaged.
Random erasing (timm, per-pixel fill as in the official recipes) acts on the normalised tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image
from timm.data import create_transform
from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import MaybeToTensor, str_to_interp_mode
from torchvision import transforms as T

from ..errors import ConfigError

if TYPE_CHECKING:
    from .config import AugmentConfig


class ToMode:
    """Convert a PIL image to ``mode`` ("RGB" or "L")."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == self.mode else img.convert(self.mode)

    def __repr__(self) -> str:
        return f"ToMode({self.mode!r})"


def check_auto_augment(spec: str) -> None:
    """Raise ValueError unless timm understands the auto-augment string ``spec``."""
    if spec.startswith("rand"):
        build = rand_augment_transform
    elif spec.startswith("augmix"):
        build = augment_and_mix_transform
    else:
        build = auto_augment_transform
    try:
        build(spec, {})
    except (AssertionError, ValueError, KeyError) as e:
        raise ValueError(
            f"timm does not understand auto_augment {spec!r} ({e or 'bad section'}); "
            "use e.g. 'rand-m9-mstd0.5-inc1', 'rand-m7-mstd0.5', 'original' or null"
        ) from None


def channel_stats(values: Sequence[float], channels: int, what: str) -> tuple[float, ...]:
    """``values`` (mean or std) fitted to ``channels``: repeated from 1, averaged from 3 to 1."""
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if channels == 1 and len(values) == 3:
        return (sum(values) / 3,)
    raise ConfigError(
        f"{what} has {len(values)} values but the input has {channels} channels; give 1 or {channels}"
    )


def check_input_size(input_size: Sequence[int]) -> tuple[int, int, int]:
    if len(input_size) != 3 or input_size[0] not in (1, 3) or min(input_size[1:]) < 1:
        raise ConfigError(f"input_size must be (C, H, W) with C 1 or 3, got {tuple(input_size)}")
    c, h, w = (int(v) for v in input_size)
    return c, h, w


def _final(channels: int, mean, std, reprob: float) -> list:
    tail = [ToMode("L")] if channels == 1 else []
    tail += [MaybeToTensor(), T.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))]
    if reprob > 0:
        tail.append(RandomErasing(reprob, mode="pixel", max_count=1, device="cpu"))
    return tail


def build_train_transform(augment: AugmentConfig, input_size: Sequence[int], mean, std) -> T.Compose:
    """Random training transform: timm's random-resized-crop (or plain resize and an optional padded random
    crop), flip, RandAugment or colour jitter, then tensor, normalise, random erasing."""
    c, h, w = check_input_size(input_size)
    mean_c, std_c = channel_stats(mean, c, "mean"), channel_stats(std, c, "std")
    mean3 = channel_stats(mean_c, 3, "mean") if c == 1 else mean_c
    if augment.train_resize_only:
        interp = "bicubic" if augment.interpolation == "random" else augment.interpolation
        pil = [T.Resize((h, w), interpolation=str_to_interp_mode(interp))]
        if augment.crop_padding:
            pil.append(T.RandomCrop((h, w), padding=augment.crop_padding))
        if augment.hflip > 0:
            pil.append(T.RandomHorizontalFlip(augment.hflip))
        if augment.auto_augment:
            # timm builds RandAugment etc. as its "secondary" stage; reuse it without the crop.
            pil += _timm_train_stages(augment, h, w, mean3, std_c)[1]
    else:
        primary, secondary = _timm_train_stages(augment, h, w, mean3, std_c)
        pil = primary + secondary
    return T.Compose([ToMode("RGB"), *pil, *_final(c, mean_c, std_c, augment.reprob)])


def _timm_train_stages(augment: AugmentConfig, h: int, w: int, mean3, std) -> tuple[list, list]:
    primary, secondary, _ = create_transform(
        input_size=(3, h, w),
        is_training=True,
        scale=tuple(augment.scale),
        ratio=tuple(augment.ratio),
        hflip=augment.hflip,
        color_jitter=augment.color_jitter if augment.color_jitter > 0 else None,
        auto_augment=augment.auto_augment,
        interpolation=augment.interpolation,
        mean=mean3,
        std=std,
        separate=True,
    )
    return list(primary.transforms), list(secondary.transforms)


def build_eval_transform(augment: AugmentConfig, input_size: Sequence[int], mean, std) -> T.Compose:
    """Deterministic transform: resize to H×W, or with ``crop_pct`` timm's resize + center crop."""
    c, h, w = check_input_size(input_size)
    mean_c, std_c = channel_stats(mean, c, "mean"), channel_stats(std, c, "std")
    interp = "bicubic" if augment.interpolation == "random" else augment.interpolation
    if augment.crop_pct is None:
        pil = [T.Resize((h, w), interpolation=str_to_interp_mode(interp))]
    else:
        timm_eval = create_transform(
            input_size=(3, h, w), is_training=False, crop_pct=augment.crop_pct, interpolation=interp
        )
        pil = [t for t in timm_eval.transforms if not isinstance(t, (MaybeToTensor, T.ToTensor, T.Normalize))]
    return T.Compose([ToMode("RGB"), *pil, *_final(c, mean_c, std_c, 0.0)])
