"""How PAT sees a stage feature: patch tokens on a grid or a channels-first map (:class:`Layout`).

PAT moves features between families (its projectors map tokens <-> maps) and compares them as maps.
A :class:`Layout` is a feature's shape without its batch and without prefix tokens:

* tokens ``(h·w, D)``, laid on an h × w grid (row-major, as a patch embedding makes them);
* a map ``(C, h, w)``.

:meth:`Layout.of_shape` reads it from a stage feature's shape as :class:`~ofakd.models.tap.ModelTap` gives it
(prefix tokens first, set aside by :meth:`Layout.patches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import ModelError
from .ofa_branches import token_grid


@dataclass(frozen=True)
class Layout:
    """A feature's layout: ``tokens`` (h·w tokens of ``width``) or a map (``width`` channels), on ``grid``."""

    tokens: bool
    width: int
    grid: tuple[int, int]
    prefix: int = 0
    """Leading prefix tokens (class, distillation, register) the feature carries besides (tokens only)."""

    @classmethod
    def of_shape(cls, shape: Sequence[int], num_prefix_tokens: int, image_hw: tuple[int, int]) -> Layout:
        """The layout of a stage feature of ``shape`` (B, P + h·w, D) or (B, C, h, w), its grid laid over ``image_hw``."""
        if len(shape) == 4:
            return cls(False, int(shape[1]), (int(shape[2]), int(shape[3])))
        if len(shape) == 3:
            return cls(True, int(shape[2]), token_grid(int(shape[1]) - num_prefix_tokens, image_hw), num_prefix_tokens)
        raise ModelError(f"stage feature of shape {tuple(shape)}: PAT supports maps (B, C, H, W) and tokens (B, N, D)")

    @property
    def count(self) -> int:
        """Patch tokens (or map positions): h·w."""
        return self.grid[0] * self.grid[1]

    def shape(self, batch: int) -> tuple[int, ...]:
        """The shape of a batch of such features, prefix tokens left out."""
        return (batch, self.count, self.width) if self.tokens else (batch, self.width, *self.grid)

    def patches(self, feature: torch.Tensor) -> torch.Tensor:
        """The feature without its prefix tokens."""
        return feature[:, self.prefix:] if self.tokens else feature

    def to_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, width, h, w): tokens (B, h·w, D) laid on the grid; maps as they are."""
        if not self.tokens:
            return x
        return x.transpose(1, 2).reshape(x.shape[0], self.width, *self.grid)

    def from_map(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_map`."""
        return x.flatten(2).transpose(1, 2) if self.tokens else x
