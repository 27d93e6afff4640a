"""A data set held in memory as one uint8 tensor on the training device, with its targets beside it."""

from __future__ import annotations

import numpy as np
import torch

from ..datasets import ArrayImageDataset


class ResidentImages:
    """``images`` (N, C, H, W) uint8 and ``targets`` (N,) int64 on one device; ``take(indices)`` gathers a batch."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(targets):
            raise ValueError("images must be uint8 (N, C, H, W) with one target per image")
        self.images, self.targets = images, targets.long()

    @classmethod
    def from_arrays(cls, dataset: ArrayImageDataset, device: torch.device | str = "cpu") -> ResidentImages:
        """The images of an in-memory data set ((N, H, W) gray or (N, H, W, 3) RGB) moved once to ``device``."""
        images = torch.from_numpy(np.require(dataset.images, requirements=["C", "W"]))  # copied only when read-only
        images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)
        return cls(images.contiguous().to(device), torch.from_numpy(dataset.targets).to(device))

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def image_size(self) -> tuple[int, int, int]:
        """(C, H, W) of the stored images."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, targets) at ``indices`` (on this device)."""
        return self.images[indices], self.targets[indices]
