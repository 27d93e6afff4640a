"""Each step's loss terms and gradient norm, kept on the device until the loop reads them all at once.

The loop must not wait on the device every step (that stalls a GPU's launch queue), so a step writes
its numbers into a device tensor, row ``i`` for step ``first + i``::

    [total loss, loss term 1, ..., loss term K, global gradient norm]

and :meth:`StepRecords.read` brings the rows to the host together: one host sync for many steps
(at log steps, checkpoints, epoch ends). With several processes the rows are averaged over them
first, in one all-reduce that also carries each process's stop flag; a NaN/inf on any process is a
NaN/inf in the average, so every process reads the same numbers and decides alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .processes import DistContext


@dataclass
class StepRecord:
    """One step as read back: the mean over processes of its numbers."""

    step: int
    """Global optimizer step, counted from 1."""
    total: float
    losses: dict[str, float]
    norm: float | None
    """Global gradient norm (None: not measured, e.g. with fp16's GradScaler, which skips overflowed steps itself)."""


def _scalar(value: torch.Tensor) -> torch.Tensor:
    value = value.detach().float()
    return value if value.dim() == 0 else value.sum()


class StepRecords:
    """Device-side rows of the steps since the last :meth:`read` (see the module docstring)."""

    def __init__(self, device: torch.device, capacity: int = 64) -> None:
        self.device = device
        self.capacity = max(int(capacity), 1)
        self.names: list[str] = []
        self.rows: torch.Tensor | None = None
        self.measured: list[bool] = []
        self.first = 0

    def __len__(self) -> int:
        return len(self.measured)

    def add(self, step: int, total: torch.Tensor, losses: dict[str, torch.Tensor], norm: torch.Tensor | None) -> None:
        """Record step ``step`` (counted from 1): device copies only, no host sync."""
        if self.rows is None:
            self.names = list(losses)
            self.rows = torch.zeros(self.capacity, len(self.names) + 2, device=self.device)
        if not self.measured:
            self.first = step
        i = len(self.measured)
        if i == self.rows.shape[0]:  # more steps between reads than foreseen: grow (on the device)
            self.rows = torch.cat([self.rows, torch.zeros_like(self.rows)])
        self.rows[i, :-1] = torch.stack([_scalar(v) for v in (total, *losses.values())])
        self.rows[i, -1] = norm.detach().float() if norm is not None else 0.0
        self.measured.append(norm is not None)

    def read(self, dist: DistContext, stop: bool = False) -> tuple[list[StepRecord], bool]:
        """The recorded steps (then forgotten) and whether any process asked to stop: one host sync, and
        with several processes one all-reduce."""
        n = len(self.measured)
        block = self.rows[:n] if self.rows is not None else torch.zeros(0, 2, device=self.device)
        if dist.distributed:
            flag = torch.full((1,), float(stop), device=self.device)
            values = dist.mean(torch.cat([block.flatten(), flag])).tolist()
            stop = values[-1] > 0
            width = block.shape[1]
            table = [values[i * width:(i + 1) * width] for i in range(n)]
        else:
            table = block.tolist()
        records = [
            StepRecord(self.first + i, row[0], dict(zip(self.names, row[1:-1])), row[-1] if measured else None)
            for i, (row, measured) in enumerate(zip(table, self.measured))
        ]
        self.measured = []
        return records, stop
