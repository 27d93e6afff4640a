"""KD (Hinton et al., 2015): KL divergence between softened teacher and student distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.tap import ModelOutput
from .base import TEMPERATURE, WEIGHT, Distiller, LossWeight, MethodOptions, Temperature
from .logit_standardization import loss_logits
from .registry import register_method


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))``, summed over classes, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    return kl * temperature**2


class LogitOptions(MethodOptions):
    """Options shared by logit-based methods."""

    kd_weight: LossWeight = 1.0
    """Weight of the distillation term(s) on the final logits."""
    temperature: Temperature = 1.0
    """Softmax temperature T for teacher and student logits."""
    logit_standardization: bool = False
    """z-score teacher and student logits per sample before the softmax (CVPR 2024)."""

    search_space = {"kd_weight": WEIGHT, "temperature": TEMPERATURE}

    def loss_logits(self, *logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The logits as the loss terms read them: float32, z-scored per sample with ``logit_standardization``."""
        return loss_logits(self.logit_standardization, *logits)


@register_method("kd")
class KD(Distiller):
    summary = "Hinton KD: KL(teacher || student) at temperature T, x T^2, plus cross-entropy"
    Options = LogitOptions

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        opts = self.options
        z_s, z_t = opts.loss_logits(student.logits, teacher.logits)
        return {"kd": opts.kd_weight * kd_loss(z_s, z_t, opts.temperature)}
