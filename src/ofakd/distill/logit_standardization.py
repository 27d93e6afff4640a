"""Logit standardization (Sun et al., CVPR 2024): z-score each sample's logits before the softmax.

    standardize(z)_c = (z_c - mean(z)) / std(z)

The temperature then divides the standardized logits. Applied to teacher and student alike,
it makes a logit loss invariant to a per-sample shift and scale of either side's logits.
"""

from __future__ import annotations

import torch


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-row z-score of ``logits`` (B, K)."""
    logits = logits.float()
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


def loss_logits(enabled: bool, *logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each of ``logits`` as a logit loss reads it: z-scored by :func:`standardize` when ``enabled``, else as float32 (the
    ``logit_standardization`` option of :class:`~ofakd.distill.kd.LogitOptions`)."""
    return tuple(standardize(z) if enabled else z.float() for z in logits)
