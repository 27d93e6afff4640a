"""FitNet (Romero et al., ICLR 2015): regress teacher stage features from student stage features
through a learned projector; here across families (tokens <-> maps, any width and grid)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.stages import stage_positions
from ..models.tap import ModelOutput
from .base import LossWeight, MethodOptions, Stages
from .feature_distiller import FeatureDistiller
from .float32 import float32_loss
from .projectors import FeatureProjector
from .registry import register_method
from .search import Range


@float32_loss
def fitnet_loss(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error ``mean((proj(f_s) - f_t)²)`` over every element of the two (B, C_t, h_t, w_t) maps."""
    return F.mse_loss(projected.float(), target.float())


class FitNetOptions(MethodOptions):
    stages: Stages = [1, 2, 3, 4]
    """Stages (1-4) whose student feature regresses the teacher's feature at the same stage."""
    fitnet_weight: LossWeight = 1.0
    """Weight of each stage's MSE (the loss is their weighted sum)."""
    feature_indices: list[int] | None = None
    """Explicit feature_info positions of the student's four stages (default: the documented stage map)."""
    teacher_feature_indices: list[int] | None = None
    """Explicit feature_info positions of the teacher's four stages (default: the documented stage map)."""

    search_space = {"fitnet_weight": Range(0.1, 10.0, log=True)}



@register_method("fitnet")
class FitNet(FeatureDistiller):
    summary = "FitNet hints: MSE between projected student stage features and teacher stage features"
    Options = FitNetOptions

    @classmethod
    def stage_positions(cls, options: FitNetOptions, student, teacher, *, student_modules=None, teacher_modules=None):
        return (
            stage_positions(student, options.stages, options.feature_indices, student_modules),
            stage_positions(teacher, options.stages, options.teacher_feature_indices, teacher_modules),
        )

    def __init__(self, teacher, student, options: FitNetOptions, **kwargs) -> None:
        super().__init__(teacher, student, options, **kwargs)
        student_stages, teacher_stages = self.student_tap.positions, self.teacher_positions
        student_out, teacher_out, student_hw, teacher_hw = self.probe()
        self.branches = nn.ModuleDict(
            {
                f"stage{stage}": FeatureProjector(
                    f_s,
                    f_t,
                    student_prefix_tokens=self.student_tap.num_prefix_tokens,
                    teacher_prefix_tokens=self.teacher.tap.num_prefix_tokens,
                    student_hw=student_hw,
                    teacher_hw=teacher_hw,
                )
                for stage, f_s, f_t in zip(
                    options.stages, student_out.select(student_stages), teacher_out.select(teacher_stages)
                )
            }
        )

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        opts = self.options
        losses = {}
        for stage, s_pos, t_pos in zip(opts.stages, self.student_tap.positions, self.teacher_positions):
            projector = self.branches[f"stage{stage}"]
            f_s, f_t = student.features[s_pos], teacher.features[t_pos]
            losses[f"fitnet_s{stage}"] = opts.fitnet_weight * fitnet_loss(projector(f_s), projector.target(f_t))
        return losses
