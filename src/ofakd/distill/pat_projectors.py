"""PAT's projectors between feature layouts, one per pair of families (the authors' CNN2CNN, ViT2CNN,
ViT2ViT and CNN2ViT projectors), built by :func:`layout_projector`.

With ``resize`` the nearest-neighbour interpolation to the target grid:

* map -> map:        ``Conv1x1_{C→C'}(BN(resize(x)))``, no bias;
* tokens -> map:     ``Conv1x1_{D→C'}(BN(resize(grid(x))))``, no bias (tokens laid on their grid first);
* tokens -> tokens:  ``Linear_{N→N'}(BN_D'(Linear_{D→D'}(BN_N(x))ᵀ))ᵀ`` (widths, then token counts; BN_N
  normalises each token position, BN_D' each channel);
* map -> tokens:     a patch embedding (conv k = s = ⌈h/h'⌉) onto the h' × w' token grid, the map first
  enlarged to a whole number of patches when it is smaller.

Init as the authors' (their ``init_weights``): conv kaiming-normal (fan_out), BatchNorm (1, 0), Linear
trunc-normal 0.02 with zero bias (:func:`~ofakd.distill.ofa_branches.init_branch_weights`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import nn

from .ofa_branches import init_branch_weights
from .pat_layout import Layout


def nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` (B, C, H, W) resized to ``size`` by nearest-neighbour interpolation (as it is when already there)."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="nearest")


class MapToMap(nn.Module):
    """(B, C, h, w) -> (B, C', h', w'): resize, BatchNorm, 1×1 conv."""

    def __init__(self, source: Layout, target: Layout) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.norm = nn.BatchNorm2d(source.width)
        self.conv = nn.Conv2d(source.width, target.width, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(nearest(self.source.to_map(x), self.target.grid)))


class TokensToMap(MapToMap):
    """(B, h·w, D) -> (B, C', h', w'): the tokens laid on their grid, then as :class:`MapToMap`."""


class TokensToTokens(nn.Module):
    """(B, N, D) -> (B, N', D'): BatchNorm over token positions, Linear on widths, BatchNorm over channels,
    Linear on token counts."""

    def __init__(self, source: Layout, target: Layout) -> None:
        super().__init__()
        self.width = nn.Sequential(nn.BatchNorm1d(source.count), nn.Linear(source.width, target.width))
        self.count = nn.Sequential(nn.BatchNorm1d(target.width), nn.Linear(source.count, target.count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.count(self.width(x).transpose(1, 2)).transpose(1, 2)


class MapToTokens(nn.Module):
    """(B, C, h, w) -> (B, h'·w', D'): a patch embedding with patches of ⌈h/h'⌉ × ⌈w/w'⌉ onto the target grid."""

    def __init__(self, source: Layout, target: Layout) -> None:
        super().__init__()
        patch = tuple(max(math.ceil(s / t), 1) for s, t in zip(source.grid, target.grid))
        self.size = (target.grid[0] * patch[0], target.grid[1] * patch[1])
        self.embed = PatchEmbed(img_size=self.size, patch_size=patch, in_chans=source.width, embed_dim=target.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(nearest(x, self.size))


def layout_projector(source: Layout, target: Layout) -> nn.Module:
    """The projector from features of layout ``source`` to ``target`` (by their families), initialised."""
    if source.tokens:
        module = TokensToTokens(source, target) if target.tokens else TokensToMap(source, target)
    else:
        module = MapToTokens(source, target) if target.tokens else MapToMap(source, target)
    init_branch_weights(module)
    return module
