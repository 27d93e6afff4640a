"""OFA-KD (Hao et al., NeurIPS 2023): student stage features projected into the logit space by
light branches and matched to the teacher's logits with the adaptive target-enhanced loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from ..errors import ConfigError, ModelError
from ..models.info import num_classes, num_features
from ..models.stages import stage_positions
from ..models.tap import ModelOutput
from .base import WEIGHT, Distiller, LossWeight, Stages
from .kd import LogitOptions
from .ofa_branches import build_branch
from .registry import register_method
from .search import Range
from .targets import one_hot_targets


def ofa_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target_mask: torch.Tensor,
    eps: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """OFA loss, averaged over the batch, with p = softmax(z / T) and m the one-hot target:

        L = - Σ_c [ (p_t + m)^ε - m ]_c · log p_s,c

    The target class is weighted (1 + p_t)^ε - 1 and the others p_t^ε; at ε = 1 this is
    cross-entropy to the teacher's soft labels. No T² factor. log p_s is a log_softmax.
    """
    p_t = F.softmax(teacher_logits.float() / temperature, dim=1)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    weight = (p_t + target_mask).pow(eps) - target_mask
    return -(weight * log_p_s).sum(dim=1).mean()


class OFAOptions(LogitOptions):
    stages: Stages = [1, 2, 3, 4]
    """OFA stages (1-4) that get a branch."""
    eps: list[float] = [1.0]
    """ε: one value for every term, or one per stage followed by one for the final logits."""
    ofa_weight: LossWeight = 1.0
    """Weight of the summed branch losses (the authors' CIFAR runs used 0.1)."""
    feature_indices: list[int] | None = None
    """Explicit feature_info positions of the four stages (default: the documented stage map)."""
    teacher_dim: int | None = Field(None, ge=1)
    """Teacher feature width D_t; read from the teacher, needed only when logits come from a cache."""

    # eps: one value for every term (the paper's pairs use 1.0 to 1.5); ofa_weight: around the authors' CIFAR 0.1
    search_space = {"eps": Range(0.8, 2.0), "ofa_weight": Range(0.03, 3.0, log=True), "kd_weight": WEIGHT,
                    "temperature": Range(1.0, 4.0, log=True)}

    @field_validator("eps")
    @classmethod
    def _positive_eps(cls, value: list[float]) -> list[float]:
        if not value or any(e <= 0 for e in value):
            raise ValueError(f"every ε must be > 0, got {value}")
        return value


@register_method("ofa")
class OFA(Distiller):
    summary = "OFA-KD: branches project student stages to logits; adaptive target-enhanced loss to teacher logits"
    Options = OFAOptions

    def __init__(self, teacher, student, options: OFAOptions, **kwargs) -> None:
        n_eps = len(options.eps)
        if n_eps not in (1, len(options.stages) + 1):
            raise ConfigError(
                f"eps has {n_eps} values; give 1, or {len(options.stages) + 1} "
                f"(one per stage {options.stages} and one for the final logits)"
            )
        if options.feature_indices is not None and len(options.feature_indices) != 4:
            raise ConfigError(f"feature_indices needs 4 positions (one per OFA stage), got {options.feature_indices}")
        positions = stage_positions(student, options.stages, options.feature_indices, kwargs.get("student_stages"))
        super().__init__(teacher, student, options, student_positions=positions, **kwargs)
        self.eps = options.eps * (len(options.stages) + 1) if n_eps == 1 else list(options.eps)
        self.branches = self._build_branches(student, options)

    def _build_branches(self, student, options: OFAOptions) -> nn.ModuleDict:
        teacher_dim = options.teacher_dim or (self.teacher.num_features if self.teacher is not None else None)
        if teacher_dim is None:
            raise ModelError("OFA needs the teacher's feature width: give a teacher or teacher_dim")
        probe = self.student_tap.probe(self.input_size)[0]
        branches = nn.ModuleDict()
        for stage, position in zip(options.stages, self.student_tap.positions):
            branches[f"stage{stage}"] = build_branch(
                probe.features[position],
                stage,
                student_dim=num_features(student),
                teacher_dim=int(teacher_dim),
                num_classes=num_classes(student),
                image_hw=tuple(self.input_size[1:]),
                num_prefix_tokens=self.student_tap.num_prefix_tokens,
                class_token=self.student_tap.has_class_token,
            )
        return branches

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        opts = self.options
        (z_t,) = opts.loss_logits(teacher.logits)
        mask = one_hot_targets(targets, student.logits.shape[1])
        losses = {}
        for k, (stage, position) in enumerate(zip(opts.stages, self.student_tap.positions)):
            (z_b,) = opts.loss_logits(self.branches[f"stage{stage}"](student.features[position]))
            losses[f"ofa_s{stage}"] = opts.ofa_weight * ofa_loss(z_b, z_t, mask, self.eps[k], opts.temperature)
        (z_s,) = opts.loss_logits(student.logits)
        losses["kd"] = opts.kd_weight * ofa_loss(z_s, z_t, mask, self.eps[-1], opts.temperature)
        return losses
