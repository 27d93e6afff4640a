"""DKD (Zhao et al., CVPR 2022): KD decoupled into a target-class and a non-target-class term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from ..models.tap import ModelOutput
from .base import TEMPERATURE, WEIGHT, Distiller, LossWeight
from .kd import LogitOptions
from .registry import register_method
from .search import Range
from .targets import hard_targets


def dkd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each averaged over the batch. With p = softmax(z / T) and t the target class:

        b = [p_t, 1 - p_t]                      (target vs. all other classes)
        q_c = p_c / (1 - p_t)  for c != t        (distribution over the non-target classes)
        TCKD = T² · KL(b_teacher ‖ b_student)
        NCKD = T² · KL(q_teacher ‖ q_student)

    ``targets`` are class indices or soft rows (their argmax is the target class). Computed
    in log space (no ``log(softmax)``), so it is finite for any logits.
    """
    target = hard_targets(targets)
    gt = F.one_hot(target, student_logits.shape[1]).bool()
    zs, zt = student_logits.float() / temperature, teacher_logits.float() / temperature
    log_ps, log_pt = F.log_softmax(zs, dim=1), F.log_softmax(zt, dim=1)

    def binary(log_p: torch.Tensor) -> torch.Tensor:  # log [p_t, 1 - p_t]
        target_part = log_p.masked_fill(~gt, float("-inf")).logsumexp(dim=1)
        other_part = log_p.masked_fill(gt, float("-inf")).logsumexp(dim=1)
        return torch.stack([target_part, other_part], dim=1)

    log_bs, log_bt = binary(log_ps), binary(log_pt)
    tckd = (log_bt.exp() * (log_bt - log_bs)).sum(dim=1).mean()

    log_qs = F.log_softmax(zs.masked_fill(gt, float("-inf")), dim=1)
    log_qt = F.log_softmax(zt.masked_fill(gt, float("-inf")), dim=1)
    log_qs, log_qt = log_qs.masked_fill(gt, 0.0), log_qt.masked_fill(gt, 0.0)
    q_t = log_qt.exp().masked_fill(gt, 0.0)
    nckd = (q_t * (log_qt - log_qs)).sum(dim=1).mean()
    return tckd * temperature**2, nckd * temperature**2


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 2.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``α · TCKD + β · NCKD`` (see :func:`dkd_terms`)."""
    tckd, nckd = dkd_terms(student_logits, teacher_logits, targets, temperature)
    return alpha * tckd + beta * nckd


class DKDOptions(LogitOptions):
    alpha: LossWeight = 1.0
    """α: weight of the target-class term TCKD."""
    beta: LossWeight = 2.0
    """β: weight of the non-target-class term NCKD."""
    warmup_epochs: int = Field(0, ge=0)
    """Ramp the DKD terms by min((epoch + 1) / warmup_epochs, 1) (the official DKD code used 20); 0 = off.
    Needs the engine to call set_epoch."""

    # kd_weight scales both terms, as alpha and beta do: it stays at 1
    search_space = {"alpha": WEIGHT, "beta": Range(0.5, 8.0, log=True), "temperature": TEMPERATURE}


@register_method("dkd")
class DKD(Distiller):
    summary = "Decoupled KD: target-class (TCKD, x alpha) and non-target-class (NCKD, x beta) KL terms"
    Options = DKDOptions

    def __init__(self, teacher, student, options: DKDOptions, **kwargs) -> None:
        super().__init__(teacher, student, options, **kwargs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def warmup_factor(self) -> float:
        """min((epoch + 1) / warmup_epochs, 1), or 1 without warm-up."""
        warmup = self.options.warmup_epochs
        return min((self.epoch + 1) / warmup, 1.0) if warmup else 1.0

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        opts = self.options
        z_s, z_t = opts.loss_logits(student.logits, teacher.logits)
        tckd, nckd = dkd_terms(z_s, z_t, targets, opts.temperature)
        weight = opts.kd_weight * self.warmup_factor()
        return {
            "tckd": weight * opts.alpha * tckd,
            "nckd": weight * opts.beta * nckd,
        }
