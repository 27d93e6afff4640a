"""Vanilla: the student on labels alone (cross-entropy); needs no teacher."""

from __future__ import annotations

from .base import Distiller
from .registry import register_method
from .targets import soft_cross_entropy


@register_method("vanilla")
class Vanilla(Distiller):
    summary = "no distillation: cross-entropy to the labels only (the from-scratch baseline)"
    needs_teacher = False

    def compute_losses(self, images, targets, teacher, sample_indices):
        logits = self.student(images)
        return logits, {"gt": self.options.gt_weight * soft_cross_entropy(logits, targets)}
