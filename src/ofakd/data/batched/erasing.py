"""Random erasing of a batch with each view's own keyed parameters, as timm's ``RandomErasing`` erases one image.

timm (mode ``pixel``, one box): with probability p, up to 10 tries of

    area = U(0.02, 1/3) · H·W,   aspect = exp(U(log 0.3, log 1/0.3)),   h = round(√(area·aspect)),   w = round(√(area/aspect))

until one fits strictly inside (w < W, h < H); that box, at top ``randint(0, H − h)`` and left
``randint(0, W − w)``, is filled with per-pixel standard normal noise (the images are normalised already).
The tries of all views are computed at once; the noise of each erased view comes from a generator seeded
by its key, so it too depends on the view alone.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .crop_params import TRIES, randint

MIN_AREA, MAX_AREA, MIN_ASPECT = 0.02, 1 / 3, 0.3
DRAWS = 1 + TRIES * 4
"""Uniforms per view: whether to erase, then (area, aspect, top, left) per try."""


def erase(images: torch.Tensor, u: np.ndarray, noise_seeds: np.ndarray, probability: float) -> torch.Tensor:
    """Erase a box of each normalised image (B, C, H, W) in place, as timm would with ``probability``;
    ``u`` (B, :data:`DRAWS`) uniforms and ``noise_seeds`` (B,) integers, both keyed by view."""
    _, channels, height, width = images.shape
    tries = u[:, 1:].reshape(len(u), TRIES, 4)
    area = (MIN_AREA + (MAX_AREA - MIN_AREA) * tries[..., 0]) * (height * width)
    low, high = math.log(MIN_ASPECT), math.log(1 / MIN_ASPECT)
    aspect = np.exp(low + (high - low) * tries[..., 1])
    h = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    w = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (w < width) & (h < height)
    first = fits.argmax(axis=1)
    rows = np.arange(len(u))
    chosen = (u[:, 0] <= probability) & fits.any(axis=1)
    h, w = h[rows, first], w[rows, first]
    top = randint(tries[rows, first, 2], height - h)
    left = randint(tries[rows, first, 3], width - w)
    for b in np.flatnonzero(chosen):
        generator = torch.Generator(device=images.device).manual_seed(int(noise_seeds[b]))
        noise = torch.randn((channels, int(h[b]), int(w[b])), generator=generator, device=images.device,
                            dtype=images.dtype)
        images[b, :, top[b]:top[b] + h[b], left[b]:left[b] + w[b]] = noise
    return images
