"""Crop-and-resize of a whole batch, each image with its own box, as PIL resizes one image.

PIL resamples separably: along an axis, output pixel ``i`` of a box ``[start, start + length)`` resized to
``n`` pixels is centred at ``c_i = start + (i + ½)·s`` with ``s = length / n``, and takes input pixel ``j``
(inside the box) with weight

    w_ij ∝ f((j + ½ − c_i) / max(s, 1))        normalised so that Σ_j w_ij = 1,

where ``f`` is the filter (bilinear: the triangle ``1 − |x|``; bicubic: Keys' cubic with a = −0.5) widened
by ``max(s, 1)`` when shrinking (antialiasing). Nearest takes the pixel under ``c_i`` (where ``c_i`` falls on a
pixel border, PIL's fixed-point arithmetic may take the neighbour instead). Here those weights
form one matrix per image and axis, ``W_y`` (n_h × H) and ``W_x`` (n_w × W), so the batch resamples as

    out_b = W_y,b · x_b · W_x,bᵀ

— two batched matrix products on any device, in PIL's order and each rounded to whole pixel values as PIL's
8-bit passes are. A flip, a padded crop or a centre crop are row operations
on the same matrices, so the whole geometry of a view costs those two products.
"""

from __future__ import annotations

import numpy as np
import torch

FILTERS = ("bilinear", "bicubic", "nearest")
"""The interpolations the batched path computes (PIL's box, hamming and lanczos take the per-image path)."""
_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}
_BICUBIC_A = -0.5  # PIL's (and torch's antialiased) bicubic


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1.0 - x.abs()).clamp_min(0.0)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    a, t = _BICUBIC_A, x.abs()
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = (((t - 5.0) * t + 8.0) * t - 4.0) * a
    return torch.where(t < 1.0, near, torch.where(t < 2.0, far, torch.zeros_like(t)))


def axis_weights(start: torch.Tensor, length: torch.Tensor, out_size: int, in_size: int, filter_name: str) -> torch.Tensor:
    """``(B, out_size, in_size)`` float32: the weights that resize each image's box ``[start_b, start_b + length_b)``
    (integer pixels along this axis) to ``out_size`` pixels with ``filter_name``."""
    start, length = start.double()[:, None, None], length.double()[:, None, None]
    i = torch.arange(out_size, dtype=torch.float64, device=start.device)[None, :, None]
    j = torch.arange(in_size, dtype=torch.float64, device=start.device)[None, None, :]
    scale = length / out_size
    centre = start + (i + 0.5) * scale
    inside = (j >= start) & (j < start + length)
    if filter_name == "nearest":
        pick = torch.minimum(centre.floor(), start + length - 1)
        return (j == pick).float()
    if filter_name not in _SUPPORT:
        raise ValueError(f"batched resampling supports {', '.join(FILTERS)}, not {filter_name!r}")
    widen = scale.clamp_min(1.0)
    kernel = _triangle if filter_name == "bilinear" else _cubic
    weights = kernel((j + 0.5 - centre) / widen) * inside
    return (weights / weights.sum(dim=-1, keepdim=True)).float()


class AxisTable:
    """:func:`axis_weights` of every box along one axis (start, length), computed once on ``device``: a batch's
    matrices are then one lookup (a 28-px axis has 406 boxes; 32 px resized to 224, 528 boxes, 15 MB)."""

    def __init__(self, in_size: int, out_size: int, filter_name: str, device: torch.device | str) -> None:
        starts = [s for length in range(1, in_size + 1) for s in range(in_size - length + 1)]
        lengths = [length for length in range(1, in_size + 1) for _ in range(in_size - length + 1)]
        self.row = torch.full((in_size, in_size + 1), -1, dtype=torch.long)
        self.row[starts, lengths] = torch.arange(len(starts))
        self.weights = axis_weights(torch.tensor(starts), torch.tensor(lengths), out_size, in_size, filter_name).to(device)

    def __call__(self, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """(B, out, in) weights of the boxes ``[start_b, start_b + length_b)`` (CPU integer tensors)."""
        return self.weights[self.row[start, length].to(self.weights.device)]


def resample(pixels: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None,
             rows_first: np.ndarray | None = None, exact: bool = False) -> torch.Tensor:
    """``rows_b · pixels_b · cols_bᵀ`` for each image: (B, C, H, W) pixel values in [0, 255] with (B, h, H) and
    (B, w, W) -> (B, C, h, w); None leaves that axis as it is. Each pass is rounded to whole pixel values as
    PIL's 8-bit resampling rounds (``exact``: the matrices only move pixels — flips, shifts — and nothing needs
    rounding). PIL resamples columns first unless the rows shrink more (:func:`rows_go_first`); ``rows_first``
    (B,) says where, and a bicubic overshoot is clipped between the passes as there."""
    pixels_out = _to_pixels if not exact else (lambda values: values)

    def along_rows(values: torch.Tensor) -> torch.Tensor:
        return values if rows is None else pixels_out(rows[:, None] @ values)

    def along_cols(values: torch.Tensor) -> torch.Tensor:
        return values if cols is None else pixels_out(values @ cols[:, None].transpose(-1, -2))

    across = along_rows(along_cols(pixels))
    if rows_first is None or rows is None or cols is None or not rows_first.any():
        return across
    down = along_cols(along_rows(pixels))
    return torch.where(torch.from_numpy(rows_first).to(pixels.device)[:, None, None, None], down, across)


def rows_go_first(row_length: np.ndarray, out_height: int, col_length: np.ndarray, out_width: int) -> np.ndarray:
    """Where PIL (Pillow 13, checked on 800 random boxes) resizes the rows first: where they shrink by a larger factor
    than the columns, ``min(h / box_h, 1) < min(w / box_w, 1)``."""
    return np.minimum(out_height / np.asarray(row_length), 1.0) < np.minimum(out_width / np.asarray(col_length), 1.0)


def _to_pixels(values: torch.Tensor) -> torch.Tensor:
    return values.add_(0.5).floor_().clamp_(0.0, 255.0)  # half up, as PIL rounds


def shift_rows(weights: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """The weights of a crop of the same size out of the image zero-padded by ``padding`` on both sides, at
    ``offsets`` (B,) in [0, 2·padding]: output row ``i`` is row ``i + offset − padding``, zero outside."""
    if padding == 0:
        return weights
    batch, size, width = weights.shape
    zeros = weights.new_zeros(batch, padding, width)
    padded = torch.cat([zeros, weights, zeros], dim=1)
    index = offsets.long()[:, None] + torch.arange(size, device=weights.device)[None, :]
    return torch.gather(padded, 1, index[:, :, None].expand(-1, -1, width))


def flip_rows(weights: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Reverse the output order of the images where ``flip`` (B,) is true (a horizontal flip on the column axis)."""
    return torch.where(flip[:, None, None], weights.flip(1), weights)
