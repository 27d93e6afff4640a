"""RSD (ICCV 2025): align the student's penultimate embedding with the teacher's by a
Barlow-Twins-style redundancy-reduction loss on their cross-correlation matrix.

A 2-layer MLP (Linear D_s → e·D_s, BatchNorm, GELU, Linear → D_t) maps the student's
penultimate embedding into the teacher's embedding space; the teacher–student
cross-correlation matrix of the batch-standardised embeddings is pushed to the identity.
The MLP only serves training: it lives in ``branches`` and is not part of the student.
Standalone, ``rsd`` adds this term to cross-entropy and KD; ``ofa+rsd`` adds it to OFA.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..models.tap import ModelOutput
from .base import WEIGHT, LossWeight
from .feature_distiller import FeatureDistiller
from .float32 import float32_loss
from .kd import LogitOptions, kd_loss
from .ofa_branches import init_branch_weights
from .registry import register_method
from .search import Range


def batch_standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension z-score over the batch: ``(z - mean_b z) / sqrt(var_b z + eps)`` (biased variance)."""
    z = z.float()
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


@float32_loss
def rsd_loss(student: torch.Tensor, teacher: torch.Tensor, offdiag_weight: float = 0.01, eps: float = 1e-5):
    """Barlow-Twins loss between student (projected) and teacher embeddings, both (B, D):

        C = standardize(z_s)ᵀ · standardize(z_t) / B                     (D × D cross-correlation)
        L = Σ_i (1 - C_ii)² + λ · Σ_{i≠j} C_ij²                           (λ = ``offdiag_weight``)

    with ``standardize`` the per-dimension z-score over the batch (:func:`batch_standardize`).
    """
    if student.shape != teacher.shape:
        raise ValueError(f"RSD needs equal embedding shapes, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    c = batch_standardize(student, eps).t() @ batch_standardize(teacher, eps) / student.shape[0]
    diagonal = torch.diagonal(c)
    on = (1 - diagonal).pow(2).sum()
    off = c.pow(2).sum() - diagonal.pow(2).sum()
    return on + offdiag_weight * off


class RSDProjector(nn.Sequential):
    """Linear(D_s → e·D_s) → BatchNorm1d → GELU → Linear(e·D_s → D_t)."""

    def __init__(self, student_dim: int, teacher_dim: int, expansion: int = 2) -> None:
        hidden = expansion * student_dim
        super().__init__(nn.Linear(student_dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, teacher_dim))
        init_branch_weights(self)


class RSDOptions(LogitOptions):
    rsd_weight: LossWeight = 0.1
    """Weight of the RSD (cross-correlation) loss."""
    offdiag_weight: LossWeight = 0.01
    """λ: weight of the squared off-diagonal cross-correlations."""
    expansion: int = Field(2, ge=1)
    """Hidden width of the projector MLP as a multiple of the student embedding width."""

    search_space = {"rsd_weight": Range(0.01, 1.0, log=True), "kd_weight": WEIGHT}



@register_method("rsd")
class RSD(FeatureDistiller):
    summary = "RSD: MLP-projected student embedding, Barlow-Twins cross-correlation to the teacher's, + KD"
    Options = RSDOptions

    def __init__(self, teacher, student, options: RSDOptions, **kwargs) -> None:
        super().__init__(teacher, student, options, **kwargs)
        student_out, teacher_out, _, _ = self.probe()
        self.branches = nn.ModuleDict(
            {
                "projector": RSDProjector(
                    student_out.embedding.shape[1], teacher_out.embedding.shape[1], options.expansion
                )
            }
        )

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        opts = self.options
        projected = self.branches["projector"](student.embedding)
        losses = {"rsd": opts.rsd_weight * rsd_loss(projected, teacher.embedding.float(), opts.offdiag_weight)}
        if opts.kd_weight:  # 0 leaves the logit term to another method (``ofa+rsd``)
            z_s, z_t = opts.loss_logits(student.logits, teacher.logits)
            losses["kd"] = opts.kd_weight * kd_loss(z_s, z_t, opts.temperature)
        return losses
