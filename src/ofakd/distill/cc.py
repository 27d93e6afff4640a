"""CC (Peng et al., ICCV 2019): correlation congruence, in the form the official OFA-KD and
RepDistiller code use — linear embeddings of both penultimate embeddings, and the product of
consecutive samples' embedding differences."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..models.tap import ModelOutput
from .base import LossWeight, MethodOptions
from .feature_distiller import FeatureDistiller
from .float32 import float32_loss
from .registry import register_method
from .search import Range


@float32_loss
def cc_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """With δ_i = |f_s,i - f_t,i| the per-sample absolute difference of the (B, d) embeddings:

        L = (1 / (B - 1)) Σ_{i=1}^{B-1} Σ_d δ_i,d · δ_{i+1},d

    (0 for a batch of one sample).
    """
    delta = (student.float() - teacher.float()).abs()
    if len(delta) < 2:
        return delta.sum() * 0.0
    return (delta[:-1] * delta[1:]).sum(dim=1).mean()


class CCOptions(MethodOptions):
    cc_weight: LossWeight = 0.02
    """Weight (the official 'correlation scale') of the correlation-congruence loss."""
    embed_dim: int = Field(128, ge=1)
    """Width of the linear embeddings of the student and teacher penultimate embeddings."""

    search_space = {"cc_weight": Range(0.002, 0.2, log=True)}



@register_method("cc")
class CC(FeatureDistiller):
    summary = "Correlation congruence: correlated embedding differences of consecutive samples"
    Options = CCOptions

    def __init__(self, teacher, student, options: CCOptions, **kwargs) -> None:
        super().__init__(teacher, student, options, **kwargs)
        student_out, teacher_out, _, _ = self.probe()
        self.branches = nn.ModuleDict(
            {
                "embed_student": nn.Linear(student_out.embedding.shape[1], options.embed_dim),
                "embed_teacher": nn.Linear(teacher_out.embedding.shape[1], options.embed_dim),
            }
        )

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        f_s = self.branches["embed_student"](student.embedding.float())
        f_t = self.branches["embed_teacher"](teacher.embedding.float())
        return {"cc": self.options.cc_weight * cc_loss(f_s, f_t)}
