"""CRD (Tian et al., ICLR 2020): contrastive representation distillation with a memory bank.

Student and teacher penultimate embeddings are embedded (Linear → L2 normalisation) into
``embed_dim``. Two memory banks hold one embedding per dataset sample (student bank,
teacher bank), indexed by the dataset indices the data layer yields with each batch
(``sample_indices``). Each anchor is scored against its own sample's row (positive) and
``num_negatives`` rows of other samples drawn uniformly at random from the bank (the
"relax" sampling of the official code; the official CIFAR runs draw negatives of other
classes in the data set instead), with a noise-contrastive estimation loss. After each
training step the batch's rows move toward the new embeddings with momentum.

Under DDP every process applies the whole global batch's update (indices and embeddings are
gathered), so the banks stay identical on every process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..errors import ConfigError
from ..models.tap import ModelOutput
from .base import LossWeight, MethodOptions
from .collectives import gather_rows, mean_over_processes
from .feature_distiller import FeatureDistiller
from .float32 import float32_loss
from .registry import register_method
from .search import Range


@float32_loss
def contrast_scores(anchor: torch.Tensor, bank_rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """``exp(<m_{b,k}, v_b> / T)`` for each anchor v_b (B, d) and its K+1 bank rows m_b (B, K+1, d)."""
    return torch.exp(torch.bmm(bank_rows, anchor.unsqueeze(2)).squeeze(2) / temperature)


@float32_loss
def nce_loss(scores: torch.Tensor, num_samples: int, eps: float = 1e-7) -> torch.Tensor:
    """Noise-contrastive estimation loss of normalised scores x (B, 1 + m), positive first.

    With the uniform noise P_n = 1 / N (N = ``num_samples``):

        L = -(1/B) Σ_b [ log( x_b0 / (x_b0 + m·P_n + eps) ) + Σ_{k≥1} log( m·P_n / (x_bk + m·P_n + eps) ) ]
    """
    m = scores.shape[1] - 1
    noise = m / float(num_samples)
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    negative = torch.log(noise / (scores[:, 1:] + noise + eps)).sum(dim=1)
    return -(positive + negative).mean()


def sample_negatives(indices: torch.Tensor, num_samples: int, k: int) -> torch.Tensor:
    """(B, k) indices drawn uniformly from ``range(num_samples)`` without each row's own index."""
    draws = torch.randint(0, num_samples - 1, (indices.shape[0], k), device=indices.device)
    return draws + (draws >= indices.unsqueeze(1)).long()


def momentum_update(rows: torch.Tensor, new: torch.Tensor, momentum: float) -> torch.Tensor:
    """``normalize(momentum · rows + (1 - momentum) · new)`` (L2, per row)."""
    return F.normalize(rows * momentum + new * (1 - momentum), p=2, dim=1)


class Embed(nn.Module):
    """Linear projection to ``dim_out`` followed by L2 normalisation."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), p=2, dim=1)


class ContrastMemory(nn.Module):
    """Student and teacher memory banks (N, d) and their NCE normalisers Z (fixed on first use).

    Buffers, so they are checkpointed and follow ``.to(device)``.
    """

    def __init__(self, num_samples: int, dim: int) -> None:
        super().__init__()
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("student_bank", torch.rand(num_samples, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("teacher_bank", torch.rand(num_samples, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("normalizers", torch.full((2,), -1.0))
        """Z for the scores against the student bank and against the teacher bank (-1: not set yet)."""

    @torch.no_grad()
    def update(self, indices: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, momentum: float) -> None:
        """Move the rows ``indices`` of both banks toward the new embeddings (see :func:`momentum_update`);
        under DDP, the rows of the whole global batch."""
        indices, student, teacher = gather_rows(indices), gather_rows(student.detach()), gather_rows(teacher.detach())
        for bank, new in ((self.student_bank, student), (self.teacher_bank, teacher)):
            bank.index_copy_(0, indices, momentum_update(bank[indices], new.detach().to(bank.dtype), momentum))


class CRDOptions(MethodOptions):
    crd_weight: LossWeight = 1.0
    """Weight of the contrastive loss (student-anchored + teacher-anchored NCE terms)."""
    embed_dim: int = Field(128, ge=1)
    """Width of the contrastive embedding (and of each memory-bank row)."""
    num_negatives: int = Field(16384, ge=1)
    """Negatives per anchor, drawn from the memory bank (capped at num_samples - 1)."""
    nce_temperature: float = Field(0.07, gt=0)
    """Temperature T of the contrastive scores exp(<m, v> / T)."""
    memory_momentum: float = Field(0.5, ge=0, le=1)
    """Momentum of the memory-bank update: row <- normalize(m * row + (1 - m) * new)."""

    search_space = {"crd_weight": Range(0.1, 10.0, log=True)}



@register_method("crd")
class CRD(FeatureDistiller):
    summary = "Contrastive representation distillation: NCE against a memory bank over dataset indices"
    Options = CRDOptions
    needs_sample_indices = True

    def __init__(self, teacher, student, options: CRDOptions, **kwargs) -> None:
        super().__init__(teacher, student, options, **kwargs)
        if self.num_samples is None or self.num_samples < 2:
            raise ConfigError(
                f"method 'crd' needs the dataset size (num_samples >= 2, got {self.num_samples}): "
                "create_distiller(..., num_samples=len(train_dataset))"
            )
        self.num_negatives = min(options.num_negatives, self.num_samples - 1)
        self._normalizers_set = False  # checked once per process, then no host sync per step
        student_out, teacher_out, _, _ = self.probe()
        self.branches = nn.ModuleDict(
            {
                "embed_student": Embed(student_out.embedding.shape[1], options.embed_dim),
                "embed_teacher": Embed(teacher_out.embedding.shape[1], options.embed_dim),
                "memory": ContrastMemory(self.num_samples, options.embed_dim),
            }
        )

    def contrast_loss(self, v_s: torch.Tensor, v_t: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Both NCE terms for student embeddings ``v_s`` and teacher embeddings ``v_t`` (B, d) of samples ``indices``."""
        opts, memory = self.options, self.branches["memory"]
        rows = torch.cat([indices.unsqueeze(1), sample_negatives(indices, self.num_samples, self.num_negatives)], 1)
        flat = rows.flatten()
        # the teacher anchor against the student bank, the student anchor against the teacher bank
        scores_t = contrast_scores(v_t, memory.student_bank[flat].view(*rows.shape, -1), opts.nce_temperature)
        scores_s = contrast_scores(v_s, memory.teacher_bank[flat].view(*rows.shape, -1), opts.nce_temperature)
        if not self._normalizers_set and bool(memory.normalizers[0] < 0):
            # Z = mean score x N, fixed on first use (as the official code); a resumed bank keeps its Z
            z = torch.stack([scores_t.mean(), scores_s.mean()]).detach() * self.num_samples
            memory.normalizers.copy_(mean_over_processes(z))  # the same Z on every process
        self._normalizers_set = True
        loss = nce_loss(scores_s / memory.normalizers[1], self.num_samples) + nce_loss(
            scores_t / memory.normalizers[0], self.num_samples
        )
        if self.training:
            memory.update(indices, v_s, v_t, opts.memory_momentum)
        return loss

    def compute_losses(self, student: ModelOutput, targets, teacher: ModelOutput, sample_indices):
        if sample_indices.device.type == "cpu" and sample_indices.numel():  # no host sync for device indices
            low, high = int(sample_indices.min()), int(sample_indices.max())
            if low < 0 or high >= self.num_samples:
                raise ConfigError(
                    f"sample indices {low}..{high} are out of range for a memory bank of {self.num_samples} "
                    "samples; give num_samples=len(train_dataset)"
                )
        indices = sample_indices.to(device=student.logits.device, dtype=torch.long)
        v_s = self.branches["embed_student"](student.embedding.float())
        v_t = self.branches["embed_teacher"](teacher.embedding.float())
        return {"crd": self.options.crd_weight * self.contrast_loss(v_s, v_t, indices)}
