"""OFA-KD branches: project a student stage feature into the logit space.

Maps (B, C, H, W) at stage s < 4: (4 - s) depthwise-separable stride-2 blocks, channels
doubling, the last out to max(D_s, D_t); at stage 4 a 1x1 conv to max(D_s, D_t); then
global average pooling and Linear(num_classes).

Tokens (B, N, D): prefix tokens set aside, k = floor(log2(min(h, w) / 7)) 2x2 patch merges
(LayerNorm(4C) -> Linear), each followed by GELU as in the reference: after merge 1 always,
after merges 2 .. k-1, never after merge k when k >= 2. Prefix tokens put back, then
max(4 - s, 1) transformer blocks of width D_s (4 heads, no qkv bias, LayerNorm eps 1e-5 as in
the reference), read out by the class token (or the mean of the patch tokens when the student
has none), Linear(num_classes). The grid is derived from the feature and the input size, so any
resolution works; odd grids are zero-padded before a merge (the reference assumes even grids).

Init as the reference: conv kaiming-normal (fan_out) with a conv bias left at PyTorch's default,
BatchNorm/LayerNorm (1, 0), Linear trunc-normal 0.02 with bias 0.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from ..errors import ModelError

FINAL_GRID = 7
BLOCK_LAYER_NORM_EPS = 1e-5
"""The reference's branch blocks use PyTorch's LayerNorm default, not timm's ViT 1e-6."""


def gelu_after_merge(index: int, merges: int) -> bool:
    """Whether merge ``index`` (0-based) of ``merges`` is followed by GELU: the first always,
    later ones all but the last."""
    return index == 0 or index < merges - 1


class SepConv(nn.Module):
    """dw3x3 s2 -> pw1x1 -> BN -> ReLU -> dw3x3 -> pw1x1 (to ``out_chans``) -> BN -> ReLU."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(in_chans, in_chans, 3, stride=2, padding=1, groups=in_chans, bias=False),
            nn.Conv2d(in_chans, in_chans, 1, bias=False),
            nn.BatchNorm2d(in_chans),
            nn.ReLU(),
            nn.Conv2d(in_chans, in_chans, 3, stride=1, padding=1, groups=in_chans, bias=False),
            nn.Conv2d(in_chans, out_chans, 1, bias=False),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def map_branch(in_chans: int, stage: int, width: int, num_classes: int) -> nn.Sequential:
    """Branch for a (B, C, H, W) feature at OFA stage ``stage`` (1-4); ``width`` = max(D_s, D_t)."""
    if stage < 4:
        blocks, chans = [], in_chans
        for i in range(4 - stage):
            out = width if i == 3 - stage else chans * 2
            blocks.append(SepConv(chans, out))
            chans *= 2
    else:
        blocks = [nn.Conv2d(in_chans, width, 1)]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (grid padded to even), LayerNorm(4C), Linear(4C -> out)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        batch, _, dim = x.shape
        h, w = grid
        x = x.reshape(batch, h, w, dim)
        if h % 2 or w % 2:
            x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        x = x.reshape(batch, (h // 2) * (w // 2), 4 * dim)
        return self.reduction(self.norm(x)), (h // 2, w // 2)


class TokenBranch(nn.Module):
    """Branch for a (B, P + h*w, C) token feature; ``P`` prefix tokens first."""

    def __init__(
        self,
        dim: int,
        grid: tuple[int, int],
        stage: int,
        student_dim: int,
        num_classes: int,
        num_prefix_tokens: int,
        class_token: bool,
    ) -> None:
        super().__init__()
        self.grid = grid
        self.num_prefix_tokens = num_prefix_tokens
        self.class_token = class_token
        merges = max(int(math.floor(math.log2(min(grid) / FINAL_GRID))), 0) if min(grid) >= FINAL_GRID else 0
        self.mergers = nn.ModuleList(
            PatchMerging(dim if i == 0 else student_dim, student_dim) for i in range(merges)
        )
        self.merge_activations = nn.ModuleList(
            nn.GELU() if gelu_after_merge(i, merges) else nn.Identity() for i in range(merges)
        )
        needs_projection = dim != student_dim
        # without any merge, a width change still needs a projection (tokens and prefix tokens alike)
        self.patch_projection = (
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, student_dim, bias=False))
            if needs_projection and merges == 0
            else nn.Identity()
        )
        self.prefix_projection = (
            nn.Linear(dim, student_dim, bias=False) if needs_projection and num_prefix_tokens else nn.Identity()
        )
        heads = 4 if student_dim % 4 == 0 else 1
        norm = partial(nn.LayerNorm, eps=BLOCK_LAYER_NORM_EPS)
        self.blocks = nn.Sequential(
            *[Block(dim=student_dim, num_heads=heads, norm_layer=norm) for _ in range(max(4 - stage, 1))]
        )
        self.head = nn.Linear(student_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix, patches = x[:, : self.num_prefix_tokens], x[:, self.num_prefix_tokens :]
        if patches.shape[1] != self.grid[0] * self.grid[1]:
            raise ModelError(
                f"OFA branch built for a {self.grid[0]}x{self.grid[1]} token grid got {patches.shape[1]} tokens; "
                "build the distiller with the input_size you train at"
            )
        grid = self.grid
        for merger, activation in zip(self.mergers, self.merge_activations):
            patches, grid = merger(patches, grid)
            patches = activation(patches)
        patches = self.patch_projection(patches)
        x = self.blocks(torch.cat([self.prefix_projection(prefix), patches], dim=1))
        readout = x[:, 0] if self.class_token else x[:, self.num_prefix_tokens :].mean(dim=1)
        return self.head(readout)


def token_grid(num_patches: int, image_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of ``num_patches`` tokens laid over an image of ``image_hw`` (same aspect ratio)."""
    height, width = image_hw
    h = max(round(math.sqrt(num_patches * height / width)), 1)
    w = num_patches // h
    if h * w != num_patches:
        raise ModelError(
            f"cannot lay {num_patches} tokens on a grid for a {height}x{width} input; "
            "no OFA branch supports this stage feature (pass other stage indices)"
        )
    return h, w


def init_branch_weights(module: nn.Module) -> None:
    """Conv: kaiming-normal (fan_out), bias as PyTorch made it; BN/LayerNorm: (1, 0);
    Linear: trunc-normal 0.02, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_branch(
    feature: torch.Tensor,
    stage: int,
    *,
    student_dim: int,
    teacher_dim: int,
    num_classes: int,
    image_hw: tuple[int, int],
    num_prefix_tokens: int = 0,
    class_token: bool = False,
) -> nn.Module:
    """The OFA branch for one probed stage ``feature`` (maps or tokens, read from its shape)."""
    if feature.dim() == 4:
        branch = map_branch(feature.shape[1], stage, max(student_dim, teacher_dim), num_classes)
    elif feature.dim() == 3:
        grid = token_grid(feature.shape[1] - num_prefix_tokens, image_hw)
        branch = TokenBranch(
            feature.shape[2], grid, stage, student_dim, num_classes, num_prefix_tokens, class_token
        )
    else:
        raise ModelError(
            f"stage {stage} feature has shape {tuple(feature.shape)}; OFA branches support maps (B, C, H, W) "
            "and tokens (B, N, D) only: pass other stage indices"
        )
    init_branch_weights(branch)
    return branch
