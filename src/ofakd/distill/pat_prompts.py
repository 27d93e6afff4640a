"""PAT's prompt blocks: trainable modules on the input of the frozen teacher's stages, fed back from the
student (the authors' Pro-tuning-style ``PromptBlock``).

For a stage input x (as a map (B, C, h, w)) and the previous step's feedback gap g = A_s − T (the aligned
student minus the prompted teacher at this stage's output, see :mod:`ofakd.distill.pat`):

    f  = Fusion([x, P(g)])           when there is feedback, else  f = x
    x' = x + β · Prompt(f)           β a learned scalar, 0 at the start (the teacher starts unchanged)

with P the projector from the stage's output layout to its input layout (none when they agree), and

    Fusion = Conv1x1(2C→C) → Conv5x5 → Conv1x1 → SE → Conv1x1
    Prompt = Conv1x1(groups 4) → depthwise Conv5x5 → Conv1x1 → SE → Conv1x1(groups 4)

where SE, as in the authors' code, returns the squeeze-and-excitation *gates* σ(W₂ ReLU(W₁ avgpool(·)))
of shape (B, C, 1, 1) rather than gating its input: Fusion and Prompt end on 1 × 1 maps, so a prompt adds
a per-sample channel vector to every position of the stage input. Convolutions keep PyTorch's default
init (the authors apply none).

A teacher stage input is tokens with prefix tokens first (ViT, Mixer), a channels-first map (CNNs) or a
channels-last map (Swin in timm >= 0.9); :class:`StageInput` takes the patch part out as a map and puts
the result back, prefix tokens untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .pat_layout import Layout
from .pat_projectors import layout_projector

SE_RATIO = 16
PROMPT_GROUPS = 4


class SqueezeExcitationGate(nn.Module):
    """``σ(Conv1x1(ReLU(Conv1x1(avgpool(x)))))``: (B, C, h, w) -> the gates (B, C, 1, 1), hidden C // 16 (at least 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // SE_RATIO, 1)
        self.compress = nn.Conv2d(channels, hidden, 1)
        self.excitation = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.excitation(torch.relu(self.compress(x.mean(dim=(2, 3), keepdim=True)))))


def _groups(channels: int) -> int:
    """The prompt's grouped 1x1 convolutions: 4 groups, or the largest divisor of C below 4 when 4 does not divide C."""
    return math.gcd(channels, PROMPT_GROUPS)


@dataclass(frozen=True)
class StageInput:
    """How a teacher stage's input is laid out: ``layout`` of its patch part (prefix tokens first for tokens),
    ``channels_last`` for a (B, h, w, C) map."""

    layout: Layout
    channels_last: bool = False

    @classmethod
    def of_input(cls, shape: tuple[int, ...], channels: int | None, num_prefix_tokens: int,
                 image_hw: tuple[int, int]) -> StageInput:
        """From the shape of a stage input and its channel count (when known: a (B, h, w, C) map is channels-last
        when ``channels`` is C and not h)."""
        if len(shape) == 4 and channels is not None and shape[-1] == channels and shape[1] != channels:
            return cls(Layout(False, channels, (shape[1], shape[2])), channels_last=True)
        return cls(Layout.of_shape(shape, num_prefix_tokens, image_hw))

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the patch part as a (B, C, h, w) map, the prefix tokens or None)."""
        if self.channels_last:
            return x.permute(0, 3, 1, 2), None
        prefix = x[:, : self.layout.prefix] if self.layout.tokens and self.layout.prefix else None
        return self.layout.to_map(self.layout.patches(x)), prefix

    def join(self, x: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
        """The inverse of :meth:`split`."""
        if self.channels_last:
            return x.permute(0, 2, 3, 1)
        x = self.layout.from_map(x)
        return torch.cat([prefix, x], dim=1) if prefix is not None else x


class PromptBlock(nn.Module):
    """One stage's prompt: ``forward(x, gap, has_gap)`` on the raw stage input (see the module docstring)."""

    def __init__(self, stage_input: StageInput, feedback: Layout) -> None:
        super().__init__()
        self.stage_input = stage_input
        site = stage_input.layout
        if (feedback.grid, feedback.width) == (site.grid, site.width):
            self.feedback_aligner, self.gap_layout = nn.Identity(), feedback
        else:
            self.gap_layout = Layout(site.tokens, site.width, site.grid)
            self.feedback_aligner = layout_projector(feedback, self.gap_layout)
        c, groups = site.width, _groups(site.width)
        self.fusion = nn.Sequential(
            nn.Conv2d(2 * c, c, 1), nn.Conv2d(c, c, 5, padding=2), nn.Conv2d(c, c, 1), SqueezeExcitationGate(c),
            nn.Conv2d(c, c, 1),
        )
        self.beta = nn.Parameter(torch.zeros(1))
        self.prompt = nn.Sequential(
            nn.Conv2d(c, c, 1, groups=groups), nn.Conv2d(c, c, 5, padding=2, groups=c), nn.Conv2d(c, c, 1),
            SqueezeExcitationGate(c), nn.Conv2d(c, c, 1, groups=groups),
        )

    def forward(self, x: torch.Tensor, gap: torch.Tensor, has_gap: bool) -> torch.Tensor:
        x_map, prefix = self.stage_input.split(x)
        aligned = self.gap_layout.to_map(self.feedback_aligner(gap))
        fused = self.fusion(torch.cat([x_map, aligned.to(x_map.dtype)], dim=1))
        # Without feedback (the first step) the prompt reads x itself, as the authors'; the fusion still runs so
        # that every step trains the same parameters (DDP's static graph): 0 · fused changes no value.
        source = fused if has_gap else x_map + 0 * fused.sum()
        return self.stage_input.join(x_map + self.beta * self.prompt(source), prefix)

