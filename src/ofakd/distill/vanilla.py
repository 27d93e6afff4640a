"""Vanilla: the student on labels alone (cross-entropy); needs no teacher."""

from __future__ import annotations

from .base import Distiller
from .registry import register_method


@register_method("vanilla")
class Vanilla(Distiller):
    summary = "no distillation: cross-entropy to the labels only (the from-scratch baseline)"
    needs_teacher = False

    def compute_losses(self, student, targets, teacher, sample_indices):
        return {}
