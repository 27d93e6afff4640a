"""PAT's region-aware attention: the student's four stage features as q = Q/4 region tokens each, attended
together (:class:`RegionAttention`).

Per stage k, a patch embedding (no norm) cuts the student's stage map (tokens laid on their grid, prefix
tokens set aside) into a √q × √q grid of regions of width d (:class:`RegionEmbedding`). With e the Q = 4q
region tokens of all stages, LN one shared LayerNorm and E(b) the sinusoidal code of the sample's position
b in the batch (the authors' code indexes its position encodings by the batch dimension):

    Q = W_q LN(e) + E(b),   K = W_k LN(e) + E(b),   V = W_v LN(e)
    out = softmax(Q Kᵀ / √(d/h)) V        (h = 8 heads, no dropout, no output projection)

and ``out`` is split back into the four stages' q tokens. Only student features enter (the teacher's are
the targets the outputs are aligned to).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import nn

from .pat_layout import Layout
from .pat_projectors import nearest

HEADS = 8


def batch_position_encoding(batch: int, dim: int, device=None) -> torch.Tensor:
    """(batch, 1, dim) sinusoidal codes of positions 0..batch-1: ``sin(b·ω_i)`` at even channels 2i,
    ``cos(b·ω_i)`` at odd ones, ω_i = 10000^(-2i/dim)."""
    position = torch.arange(batch, dtype=torch.float32, device=device).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    codes = torch.zeros(batch, dim, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)
    return codes.unsqueeze(1)


class RegionEmbedding(nn.Module):
    """A stage map (B, C, h, w) as (B, side², dim) region tokens: enlarged (nearest) to a whole number of
    side × side patches of ⌈h/side⌉ × ⌈w/side⌉ when smaller, then a patch embedding."""

    def __init__(self, layout: Layout, side: int, dim: int) -> None:
        super().__init__()
        self.layout = layout
        patch = tuple(max(math.ceil(s / side), 1) for s in layout.grid)
        self.size = (side * patch[0], side * patch[1])
        self.embed = PatchEmbed(img_size=self.size, patch_size=patch, in_chans=layout.width, embed_dim=dim)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.embed(nearest(self.layout.to_map(self.layout.patches(feature)), self.size))


class RegionAttention(nn.Module):
    """Multi-head attention over the region tokens of all stages; ``forward(features)`` gives each stage's
    (B, q, dim) output."""

    def __init__(self, layouts: list[Layout], num_queries: int, dim: int) -> None:
        super().__init__()
        self.per_stage = num_queries // len(layouts)
        self.dim = dim
        side = math.isqrt(self.per_stage)
        self.regions = Layout(True, dim, (side, side))
        """The layout of each stage's output: side × side region tokens of width ``dim``."""
        self.embeddings = nn.ModuleList(RegionEmbedding(layout, side, dim) for layout in layouts)
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        tokens = self.norm(torch.cat([embed(f) for embed, f in zip(self.embeddings, features)], dim=1))
        key, value = self.to_kv(tokens).chunk(2, dim=-1)
        code = batch_position_encoding(tokens.shape[0], self.dim, tokens.device).to(tokens.dtype)
        query, key = self.to_q(tokens) + code, key + code
        batch, count, _ = tokens.shape
        q, k, v = (t.reshape(batch, count, HEADS, self.dim // HEADS).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, scale=(self.dim // HEADS) ** -0.5)
        out = out.transpose(1, 2).reshape(batch, count, self.dim)
        return list(out.split(self.per_stage, dim=1))
