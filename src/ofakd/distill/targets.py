"""Targets as class indices (B,) or soft rows (B, K): the pieces every method shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hard_targets(targets: torch.Tensor) -> torch.Tensor:
    """Class indices: ``targets`` itself, or the argmax of soft rows (mixup, cutmix, smoothing)."""
    return targets.argmax(dim=1) if targets.dim() == 2 else targets


def one_hot_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot mask m of the (hard) target class, float."""
    return F.one_hot(hard_targets(targets), num_classes).float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``-Σ_c y_c log softmax(z)_c`` averaged over the batch; class indices or soft rows."""
    if targets.dim() == 2:
        return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()
    return F.cross_entropy(logits.float(), targets)
