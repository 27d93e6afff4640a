"""Each view's crop box, drawn for a whole batch from its keyed uniforms, as timm draws one image's.

timm's random-resized crop tries up to 10 times

    area = U(scale) · H·W,   aspect = exp(U(log ratio)),   w = round(√(area·aspect)),   h = round(√(area/aspect))

and takes the first try that fits (w ≤ W, h ≤ H) at top ``randint(0, H − h)``, left ``randint(0, W − w)``;
when none fits it takes the centre crop of the image clamped to the ratio range. Here the 10 tries of every
view are computed at once (``u`` holds 4 uniforms per try) and the first fitting one is picked per view.
``randint(0, n)`` of a uniform ``u`` is ``⌊u·(n + 1)⌋``, Python's ``round`` is numpy's ``rint`` (half to even).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TRIES = 10
DRAWS_PER_TRY = 4


@dataclass(frozen=True)
class Boxes:
    """Integer crop boxes of a batch: top, left, height, width, each (B,) int64."""

    top: np.ndarray
    left: np.ndarray
    height: np.ndarray
    width: np.ndarray


def randint(u: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``random.randint(0, high)`` from uniforms ``u`` in [0, 1): ⌊u·(high + 1)⌋, inclusive of ``high``."""
    return np.minimum(np.floor(u * (high + 1)), high).astype(np.int64)


def random_resized_boxes(u: np.ndarray, height: int, width: int, scale: tuple[float, float],
                         ratio: tuple[float, float]) -> Boxes:
    """Boxes of timm's random-resized crop of an ``height`` × ``width`` image; ``u`` is (B, 40) uniforms."""
    tries = u.reshape(len(u), TRIES, DRAWS_PER_TRY)
    area = (scale[0] + (scale[1] - scale[0]) * tries[..., 0]) * (height * width)
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(low + (high - low) * tries[..., 1])
    w = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (w <= width) & (h <= height) & (w > 0) & (h > 0)
    first = fits.argmax(axis=1)
    rows = np.arange(len(u))
    h, w = h[rows, first], w[rows, first]
    top = randint(tries[rows, first, 2], height - h)
    left = randint(tries[rows, first, 3], width - w)
    fallback = _centre_box(height, width, ratio)
    found = fits.any(axis=1)
    return Boxes(
        top=np.where(found, top, fallback.top), left=np.where(found, left, fallback.left),
        height=np.where(found, h, fallback.height), width=np.where(found, w, fallback.width),
    )


def _centre_box(height: int, width: int, ratio: tuple[float, float]) -> Boxes:
    """timm's fallback: the whole image, cut to the nearer end of the ratio range, centred."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return Boxes(*(np.int64(v) for v in ((height - h) // 2, (width - w) // 2, h, w)))


def whole_boxes(batch: int, height: int, width: int) -> Boxes:
    """Every view takes the whole image (a plain resize)."""
    full = np.full(batch, 0, dtype=np.int64)
    return Boxes(full, full, full + height, full + width)


def centre_crop_start(size: int, crop: int) -> int:
    """torchvision's centre crop: the first kept pixel, ``int(round((size − crop) / 2))``."""
    return int(round((size - crop) / 2.0))
