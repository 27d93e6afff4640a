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


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits to the (one-hot or soft) target rows, averaged over batch and classes:
    ``mean_{b,c} -[y log σ(z) + (1 - y) log(1 - σ(z))]`` (timm's BinaryCrossEntropy, DeiT III)."""
    rows = targets if targets.dim() == 2 else F.one_hot(targets, logits.shape[1]).float()
    return F.binary_cross_entropy_with_logits(logits.float(), rows.float())


def ground_truth_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """The supervised term: ``ce`` (soft cross-entropy) or ``bce`` (binary cross-entropy)."""
    return binary_cross_entropy(logits, targets) if kind == "bce" else soft_cross_entropy(logits, targets)
