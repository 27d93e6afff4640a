"""The training and validation transforms of the batched path: uint8 batches in, normalised batches out.

They do what the per-image transforms (:mod:`ofakd.data.transforms`) do, in the same order, to a whole
batch on its device:

* training: random-resized crop (timm's boxes, :mod:`.crop_params`) or, with ``train_resize_only``, a
  plain resize and an optional padded random crop (``crop_padding``); horizontal flip; the channels the
  student takes; ``/255`` and normalisation; random erasing (:mod:`.erasing`);
* validation: resize to the input size, or with ``crop_pct`` timm's resize then centre crop.

Crop, resize, crop-with-padding and flip of a view are folded into two resampling matrices and applied in
two batched products (:mod:`.resample`), each rounded to 8-bit pixel values as PIL's resize rounds them.
Every random parameter of a view comes from :func:`~.keyed_uniforms.keyed_uniforms` under the view's key.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..config import AugmentConfig
from ..transforms import channel_stats
from .crop_params import TRIES, centre_crop_start, randint, random_resized_boxes, whole_boxes
from .erasing import DRAWS as ERASE_DRAWS
from .erasing import erase
from .keyed_uniforms import keyed_uniforms, keyed_words
from .resample import AxisTable, flip_rows, resample, rows_go_first, shift_rows

FLIP, CROP, PAD, INTERPOLATION, ERASE, NOISE = range(1, 7)
"""The streams of a view's uniforms: what each number is for."""
RANDOM_INTERPOLATIONS = ("bilinear", "bicubic")
"""timm's ``interpolation: random`` picks one of these per view."""


def to_channels(pixels: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8-valued (B, C, H, W) pixels as ``channels`` channels: gray repeated to RGB, or RGB to PIL's luma
    ``L = (19595·R + 38470·G + 7471·B + 2¹⁵) >> 16`` (PIL's ``convert("L")``, exactly)."""
    have = pixels.shape[1]
    if have == channels:
        return pixels
    if channels == 3:
        return pixels.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int64, device=pixels.device).view(1, 3, 1, 1)
    luma = ((pixels.long() * weights).sum(dim=1, keepdim=True) + 32768) // 65536
    return luma.to(pixels.dtype)


class Normalise:
    """``(pixels / 255 − mean) / std`` per channel, for an input of ``channels`` channels."""

    def __init__(self, channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(channel_stats(mean, channels, "mean"), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(channel_stats(std, channels, "std"), dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """In place on ``pixels`` (float), in the per-image path's float32 steps (``ToTensor``, ``Normalize``)."""
        return pixels.div_(255.0).sub_(self.mean.to(pixels.device)).div_(self.std.to(pixels.device))


class BatchedTrainTransform:
    """``transform(images, key, positions)``: the training views of uint8 ``images`` (B, C, H, W) whose
    random parameters are keyed by ``key`` (e.g. (domain, data seed, epoch)) and each view's position."""

    def __init__(self, augment: AugmentConfig, input_size: Sequence[int], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self.augment = augment
        self.channels, self.height, self.width = (int(v) for v in input_size)
        self.normalise = Normalise(self.channels, mean, std)
        self.axis = AxisTables()

    def __call__(self, images: torch.Tensor, key: Sequence[int], positions: np.ndarray) -> torch.Tensor:
        aug = self.augment
        pixels = to_channels(images, 1) if self.channels == 1 else images
        geometry = self.geometry(key, positions, images.shape[-2], images.shape[-1], images.device)
        pixels = to_channels(resample(pixels.float(), *geometry), self.channels)
        out = self.normalise(pixels)
        if aug.reprob > 0:
            erase(out, keyed_uniforms(key, positions, ERASE, ERASE_DRAWS), keyed_words(key, positions, NOISE),
                  aug.reprob)
        return out

    def geometry(self, key: Sequence[int], positions: np.ndarray, height: int, width: int, device: torch.device
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, np.ndarray, bool]:
        """Each view's row and column resampling matrices (crop box, resize, padded crop and flip in one; None: the
        axis stays as it is), whether PIL would resize its rows first, and whether the matrices only move pixels."""
        aug, batch = self.augment, len(positions)
        same_size = (height, width) == (self.height, self.width)
        if aug.train_resize_only:
            boxes = whole_boxes(batch, height, width)
            filters = np.full(batch, "bicubic" if aug.interpolation == "random" else aug.interpolation)
        else:
            boxes = random_resized_boxes(keyed_uniforms(key, positions, CROP, TRIES * 4), height, width,
                                         tuple(aug.scale), tuple(aug.ratio))
            filters = self._filters(key, positions)
        moves_only = aug.train_resize_only and same_size  # no resampling: at most flips and shifts
        rows = cols = None
        if not moves_only:
            rows = self.axis(boxes.top, boxes.height, self.height, height, filters, device)
            cols = self.axis(boxes.left, boxes.width, self.width, width, filters, device)
        if aug.crop_padding:
            span = 2 * aug.crop_padding
            offsets = randint(keyed_uniforms(key, positions, PAD, 2), np.full((batch, 2), span))
            rows = shift_rows(_or_identity(rows, batch, self.height, device), torch.from_numpy(offsets[:, 0]).to(device),
                              aug.crop_padding)
            cols = shift_rows(_or_identity(cols, batch, self.width, device), torch.from_numpy(offsets[:, 1]).to(device),
                              aug.crop_padding)
        if aug.hflip > 0:
            flip = keyed_uniforms(key, positions, FLIP, 1)[:, 0] < aug.hflip
            cols = flip_rows(_or_identity(cols, batch, self.width, device), torch.from_numpy(flip).to(device))
        return rows, cols, rows_go_first(boxes.height, self.height, boxes.width, self.width), moves_only

    def _filters(self, key: Sequence[int], positions: np.ndarray) -> np.ndarray:
        if self.augment.interpolation != "random":
            return np.full(len(positions), self.augment.interpolation)
        pick = np.floor(keyed_uniforms(key, positions, INTERPOLATION, 1)[:, 0] * 2).astype(np.int64)
        return np.asarray(RANDOM_INTERPOLATIONS)[pick]


class BatchedEvalTransform:
    """``transform(images)``: the deterministic validation view of uint8 ``images`` (B, C, H, W): resize to the
    input size, or with ``crop_pct`` resize to ``⌊size / crop_pct⌋`` and centre-crop, as timm's eval transform."""

    def __init__(self, augment: AugmentConfig, input_size: Sequence[int], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self.channels, self.height, self.width = (int(v) for v in input_size)
        self.filter = "bicubic" if augment.interpolation == "random" else augment.interpolation
        self.crop_pct = augment.crop_pct
        self.normalise = Normalise(self.channels, mean, std)
        self.axis = AxisTables()

    def __call__(self, images: torch.Tensor, key: Sequence[int] = (), positions: np.ndarray | None = None) -> torch.Tensor:
        batch, height, width, device = images.shape[0], images.shape[-2], images.shape[-1], images.device
        pixels = to_channels(images, 1) if self.channels == 1 else images
        filters = np.full(batch, self.filter)
        whole = whole_boxes(batch, height, width)
        scaled_h, scaled_w = self.height, self.width
        if self.crop_pct is not None:
            scaled_h, scaled_w = (int(np.floor(s / self.crop_pct)) for s in (self.height, self.width))
        top, left = centre_crop_start(scaled_h, self.height), centre_crop_start(scaled_w, self.width)
        rows = cols = None  # the images' own size: nothing to resample
        if (scaled_h, scaled_w, self.height, self.width) != (height, width, height, width):
            rows = self.axis(whole.top, whole.height, scaled_h, height, filters, device)[:, top:top + self.height]
            cols = self.axis(whole.left, whole.width, scaled_w, width, filters, device)[:, left:left + self.width]
        rows_first = rows_go_first(np.full(batch, height), scaled_h, np.full(batch, width), scaled_w)
        pixels = resample(pixels.float(), rows, cols, rows_first)
        return self.normalise(to_channels(pixels, self.channels))


def _or_identity(weights: torch.Tensor | None, batch: int, size: int, device: torch.device) -> torch.Tensor:
    """``weights``, or the identity of an axis left as it is."""
    if weights is not None:
        return weights
    return torch.eye(size, device=device).expand(batch, size, size)


class AxisTables:
    """The :class:`~.resample.AxisTable` of each (input size, output size, filter) a transform meets, made on first use."""

    def __init__(self) -> None:
        self.tables: dict[tuple, AxisTable] = {}

    def __call__(self, start: np.ndarray, length: np.ndarray, out_size: int, in_size: int, filters: np.ndarray,
                 device: torch.device) -> torch.Tensor:
        """Resampling matrices of one axis, each view with its own box and filter."""
        start_t, length_t = torch.from_numpy(np.asarray(start)), torch.from_numpy(np.asarray(length))
        names = np.unique(filters)
        out = self._table(in_size, out_size, str(names[0]), device)(start_t, length_t)
        for name in names[1:]:
            chosen = torch.from_numpy(filters == name).to(device)
            out = torch.where(chosen[:, None, None], self._table(in_size, out_size, str(name), device)(start_t, length_t), out)
        return out

    def _table(self, in_size: int, out_size: int, name: str, device: torch.device) -> AxisTable:
        key = (in_size, out_size, name, str(device))
        if key not in self.tables:
            self.tables[key] = AxisTable(in_size, out_size, name, device)
        return self.tables[key]
