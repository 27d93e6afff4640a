"""RKD (Park et al., CVPR 2019): match the distances and angles between samples' embeddings.

It reads the penultimate embeddings (pooled last features) of both models; relations
are dimension-free, so no projector is needed between families.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from ..models.tap import ModelOutput
from .base import LossWeight, MethodOptions
from .feature_distiller import FeatureDistiller
from .float32 import float32_loss
from .registry import register_method
from .search import Range


def pairwise_distances(e: torch.Tensor, squared: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """(B, B) Euclidean distances ``‖e_i - e_j‖`` (squared if asked), clamped at ``eps``, diagonal 0."""
    sq = e.pow(2).sum(dim=1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        d = d.sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=d.dtype))


@float32_loss
def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor, squared: bool = False, eps: float = 1e-12):
    """``smooth_l1(d_s / mean(d_s), d_t / mean(d_t))`` over all (i, j) pairs, with d the pairwise
    distances of each side's flattened embeddings and mean(d) the mean of the positive distances
    (0 for a batch of one sample)."""
    s, t = student.flatten(1).float(), teacher.flatten(1).float()
    if len(s) < 2:
        return s.sum() * 0.0
    with torch.no_grad():
        d_t = pairwise_distances(t, squared, eps)
        d_t = d_t / d_t[d_t > 0].mean()
    d_s = pairwise_distances(s, squared, eps)
    d_s = d_s / d_s[d_s > 0].mean()
    return F.smooth_l1_loss(d_s, d_t)


@float32_loss
def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``smooth_l1(cos∠_s, cos∠_t)`` over all triplets (i, j, k), where
    ``cos∠(i, j, k) = <unit(e_i - e_j), unit(e_k - e_j)>`` (unit(0) = 0)."""
    s, t = student.flatten(1).float(), teacher.flatten(1).float()

    def angles(e: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # diff[j, i] = unit(e_i - e_j)
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()

    with torch.no_grad():
        a_t = angles(t)
    return F.smooth_l1_loss(angles(s), a_t)


class RKDOptions(MethodOptions):
    distance_weight: LossWeight = 25.0
    """Weight of the distance-wise relation loss."""
    angle_weight: LossWeight = 50.0
    """Weight of the angle-wise relation loss."""
    squared: bool = False
    """Use squared Euclidean distances."""
    eps: float = Field(1e-12, gt=0)
    """Lower clamp of the squared distances before the square root."""

    search_space = {"distance_weight": Range(2.5, 250.0, log=True), "angle_weight": Range(5.0, 500.0, log=True)}



@register_method("rkd")
class RKD(FeatureDistiller):
    summary = "Relational KD: distances and angles between samples' penultimate embeddings"
    Options = RKDOptions

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        opts = self.options
        return {
            "rkd_distance": opts.distance_weight * rkd_distance_loss(
                student.embedding, teacher.embedding, opts.squared, opts.eps
            ),
            "rkd_angle": opts.angle_weight * rkd_angle_loss(student.embedding, teacher.embedding),
        }
