"""DIST (Huang et al., NeurIPS 2022): match the teacher's class relations by Pearson correlation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.tap import ModelOutput
from .base import WEIGHT, Distiller, LossWeight
from .float32 import float32_loss
from .kd import LogitOptions
from .registry import register_method
from .search import Range


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``:
    ``<a_i - mean(a_i), b_i - mean(b_i)> / (‖a_i - mean(a_i)‖ · ‖b_i - mean(b_i)‖ + eps)``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@float32_loss
def dist_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inter-class, intra-class) relation losses. With Y = softmax(Z / τ) of shape (B, K):

        inter = τ² · (1 - mean_i pearson(Y_s[i, :], Y_t[i, :]))   (each sample's class relation)
        intra = τ² · (1 - mean_c pearson(Y_s[:, c], Y_t[:, c]))   (the same on the transpose)
    """
    y_s = F.softmax(student_logits.float() / temperature, dim=1)
    y_t = F.softmax(teacher_logits.float() / temperature, dim=1)
    inter = 1 - pearson_rows(y_s, y_t).mean()
    intra = 1 - pearson_rows(y_s.t(), y_t.t()).mean()
    return inter * temperature**2, intra * temperature**2


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``β · inter + γ · intra`` (see :func:`dist_terms`)."""
    inter, intra = dist_terms(student_logits, teacher_logits, temperature)
    return beta * inter + gamma * intra


class DISTOptions(LogitOptions):
    beta: LossWeight = 1.0
    """β: weight of the inter-class relation term (per sample, across classes)."""
    gamma: LossWeight = 1.0
    """γ: weight of the intra-class relation term (per class, across the batch)."""

    # kd_weight scales both terms, as beta and gamma do: it stays at 1. The paper's tau: 1 (ImageNet), 4 (CIFAR)
    search_space = {"beta": WEIGHT, "gamma": WEIGHT, "temperature": Range(1.0, 4.0, log=True)}


@register_method("dist")
class DIST(Distiller):
    summary = "DIST: 1 - Pearson correlation of teacher/student probabilities, per sample and per class"
    Options = DISTOptions

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        opts = self.options
        z_s, z_t = opts.loss_logits(student.logits, teacher.logits)
        inter, intra = dist_terms(z_s, z_t, opts.temperature)
        return {
            "dist_inter": opts.kd_weight * opts.beta * inter,
            "dist_intra": opts.kd_weight * opts.gamma * intra,
        }
