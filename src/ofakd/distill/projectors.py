"""Learned projectors between feature layouts of different families (tokens <-> maps).

A stage feature is a map (B, C, H, W) or tokens (B, P + h·w, D) with P prefix tokens
(class / distillation / register tokens) first. :func:`as_map` lays patch tokens on
their grid (prefix tokens set aside), so every pair is compared as maps:

    FeatureProjector(x_s) = resize_{h_t × w_t}( Conv1x1_{C_s → C_t}( as_map(x_s) ) )

Resizing is adaptive average pooling when the grid shrinks and bilinear interpolation
when it grows; both commute with the 1×1 convolution, which runs at the smaller grid.
The convolution has no bias when both sides are maps (the official CNN FitNet
projector) and a bias otherwise (token features are not zero-centred).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .ofa_branches import init_branch_weights, token_grid


def as_map(feature: torch.Tensor, num_prefix_tokens: int, grid: tuple[int, int] | None) -> torch.Tensor:
    """(B, C, H, W) view of a stage feature: maps unchanged, patch tokens laid on ``grid``."""
    if feature.dim() == 4:
        return feature
    patches = feature[:, num_prefix_tokens:]
    batch, count, dim = patches.shape
    if grid is None or grid[0] * grid[1] != count:
        raise ModelError(f"{count} patch tokens do not fit the {grid} grid the projector was built for")
    return patches.transpose(1, 2).reshape(batch, dim, grid[0], grid[1])


def resize_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` (B, C, H, W) at ``size``: average pooling to shrink, bilinear interpolation to grow."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _grid(feature: torch.Tensor, num_prefix_tokens: int, image_hw: tuple[int, int]) -> tuple[int, int]:
    if feature.dim() == 4:
        return int(feature.shape[2]), int(feature.shape[3])
    if feature.dim() == 3:
        return token_grid(feature.shape[1] - num_prefix_tokens, image_hw)
    raise ModelError(
        f"stage feature of shape {tuple(feature.shape)}: projectors support maps (B, C, H, W) and tokens (B, N, D)"
    )


class FeatureProjector(nn.Module):
    """Maps a student stage feature onto the layout, width and grid of a teacher stage feature.

    Built from one probed feature of each side; ``forward(student_feature)`` and
    ``target(teacher_feature)`` both give (B, C_t, h_t, w_t) maps to compare.
    """

    def __init__(
        self,
        student_feature: torch.Tensor,
        teacher_feature: torch.Tensor,
        *,
        student_prefix_tokens: int = 0,
        teacher_prefix_tokens: int = 0,
        student_hw: tuple[int, int],
        teacher_hw: tuple[int, int],
    ) -> None:
        super().__init__()
        self.student_prefix_tokens = student_prefix_tokens
        self.teacher_prefix_tokens = teacher_prefix_tokens
        self.student_grid = _grid(student_feature, student_prefix_tokens, student_hw)
        self.teacher_grid = _grid(teacher_feature, teacher_prefix_tokens, teacher_hw)
        self.student_tokens = student_feature.dim() == 3
        self.teacher_tokens = teacher_feature.dim() == 3
        in_chans = student_feature.shape[-1] if self.student_tokens else student_feature.shape[1]
        out_chans = teacher_feature.shape[-1] if self.teacher_tokens else teacher_feature.shape[1]
        bias = self.student_tokens or self.teacher_tokens
        self.proj = nn.Conv2d(int(in_chans), int(out_chans), kernel_size=1, bias=bias)
        init_branch_weights(self)

    def forward(self, student_feature: torch.Tensor) -> torch.Tensor:
        x = as_map(student_feature, self.student_prefix_tokens, self.student_grid if self.student_tokens else None)
        shrink = x.shape[-2] * x.shape[-1] >= self.teacher_grid[0] * self.teacher_grid[1]
        if shrink:
            return self.proj(resize_map(x, self.teacher_grid))
        return resize_map(self.proj(x), self.teacher_grid)

    def target(self, teacher_feature: torch.Tensor) -> torch.Tensor:
        """The teacher feature as the (B, C_t, h_t, w_t) map the projection is compared with."""
        return as_map(teacher_feature, self.teacher_prefix_tokens, self.teacher_grid if self.teacher_tokens else None)
