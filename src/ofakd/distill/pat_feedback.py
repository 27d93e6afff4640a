"""PAT's feedback: the previous step's gap between the aligned student and the prompted teacher, per
prompted stage, which the prompts read in the next step (:class:`FeedbackMemory`).

It is state of the run, and each process keeps its own (the gaps of its own batches, as the authors'
processes do):

* a step's forward :meth:`~FeedbackMemory.stage`\\ s its gaps (detached, float32); the engine's
  ``on_step_end`` (called after a step the optimizer took, never after a skipped non-finite one)
  :meth:`~FeedbackMemory.commit`\\ s them for the next forward;
* the committed gaps are the module's *extra state*, not buffers, so neither DDP nor the engine's
  evaluation broadcasts process 0's to the others. ``state_dict()`` holds them as one float32 tensor of
  rows ``[rank, gap_1, ..., gap_k]`` (one per sample, the gaps flattened; no rows before the first step);
  before a checkpoint every process calls :meth:`~FeedbackMemory.gather`, so the main process saves every
  process's rows, and on loading each process takes the rows of its own rank: a resume under torchrun
  continues each process's feedback exactly;
* a batch of another size than the previous one (the short last batch of an epoch without drop_last)
  gets no feedback, as the first step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .collectives import gather_rows, process_rank
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
        self.gathered: torch.Tensor | None = None
        """Every process's rows, from :meth:`gather` until the next commit."""
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
            self.gaps, self.pending, self.gathered = self.pending, None, None

    def gather(self) -> None:
        """Every process's rows into this one's state (a collective: every process calls it)."""
        self.gathered = gather_rows(self.rows())

    def rows(self) -> torch.Tensor:
        """This process's rows ``[rank, gaps...]``: (B, 1 + Σ sizes), or (0, 1 + Σ sizes) without feedback."""
        if self.gaps is None:
            return torch.zeros(0, 1 + sum(self.sizes), device=self.anchor.device)
        gaps = [gap.to(self.anchor.device).flatten(1) for gap in self.gaps]
        rank = torch.full((gaps[0].shape[0], 1), float(process_rank()), device=self.anchor.device)
        return torch.cat([rank, *gaps], dim=1)

    def get_extra_state(self) -> torch.Tensor:
        return self.gathered if self.gathered is not None else self.rows()

    def set_extra_state(self, state: torch.Tensor) -> None:
        rows = state.to(self.anchor.device, torch.float32)
        rows = rows[rows[:, 0] == process_rank(), 1:]
        self.pending, self.gathered = None, None
        if rows.shape[0] == 0:
            self.gaps = None
            return
        parts = rows.split(self.sizes, dim=1)
        self.gaps = [part.reshape(layout.shape(rows.shape[0])).contiguous() for part, layout in zip(parts, self.layouts)]
