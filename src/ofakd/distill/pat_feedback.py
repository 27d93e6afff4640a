"""PAT's feedback: the previous step's gap between the aligned student and the prompted teacher, per
prompted stage, which the prompts read in the next step (:class:`FeedbackMemory`).

It is state of the run, kept by each process for its own batches:

* a step's forward :meth:`~FeedbackMemory.stage`\\ s its gaps (detached, float32); the engine's
  ``on_step_end`` (called after a step the optimizer took, never after a skipped non-finite one)
  :meth:`~FeedbackMemory.commit`\\ s them for the next forward;
* the committed gaps are the module's *extra state*: ``state_dict()`` holds them as one float32 tensor
  (B, Σ_k |gap_k|) — (0, ·) before the first step — so a checkpoint resumes them exactly; they are not
  buffers, so neither DDP nor the engine's evaluation broadcasts process 0's to the others;
* a batch of another size than the previous one (the short last batch of an epoch without drop_last)
  gets no feedback, as the first step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .pat_layout import Layout


class FeedbackMemory(nn.Module):
    """Gaps of the stages with ``layouts`` (their teacher stage outputs' layouts), from one step to the next."""

    def __init__(self, layouts: list[Layout]) -> None:
        super().__init__()
        self.layouts = layouts
        self.sizes = [math.prod(layout.shape(1)) for layout in layouts]
        self.gaps: list[torch.Tensor] | None = None
        """The committed gaps, (B, ...) each: what the next forward reads."""
        self.pending: list[torch.Tensor] | None = None
        self.register_buffer("anchor", torch.empty(0), persistent=False)  # follows .to(): the state's device

    def read(self, batch: int) -> tuple[list[torch.Tensor], bool]:
        """(the gaps for a batch of ``batch`` samples, True) or, without feedback for it, (zeros, False)."""
        if self.gaps is not None and self.gaps[0].shape[0] == batch:
            return [gap.to(self.anchor.device) for gap in self.gaps], True
        return [torch.zeros(layout.shape(batch), device=self.anchor.device) for layout in self.layouts], False

    def stage(self, gaps: list[torch.Tensor]) -> None:
        """This step's gaps, committed by :meth:`commit` once the step is taken (contiguous: a resumed run reads them
        in the layout it saved them in, so its convolutions add up in the same order)."""
        self.pending = [gap.detach().float().contiguous() for gap in gaps]

    def commit(self) -> None:
        if self.pending is not None:
            self.gaps, self.pending = self.pending, None

    def get_extra_state(self) -> torch.Tensor:
        if self.gaps is None:
            return torch.zeros(0, sum(self.sizes), device=self.anchor.device)
        return torch.cat([gap.flatten(1) for gap in self.gaps], dim=1)

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.pending = None
        if state.shape[0] == 0:
            self.gaps = None
            return
        parts = state.to(self.anchor.device, torch.float32).split(self.sizes, dim=1)
        self.gaps = [part.reshape(layout.shape(state.shape[0])).contiguous() for part, layout in zip(parts, self.layouts)]
