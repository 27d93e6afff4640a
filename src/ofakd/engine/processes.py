"""The process context of a run: rank, world size and the collectives the engine needs.

The loop and the trainer ask this object, never ``torch.distributed`` directly, whether they
are the main process (the one that writes files and prints) and how to combine numbers
across processes. One process (``SINGLE_PROCESS``) is the default and needs no process group;
:func:`ofakd.engine.launch.distributed` builds the context of a ``torchrun`` process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """``rank`` of ``world_size`` processes; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    """Rank on this machine: the GPU index a process uses."""
    local_world_size: int = 1
    """Processes on this machine."""
    backend: str | None = None
    """``nccl`` or ``gloo`` once a process group is up; None for one process."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` over all processes (identity for one process)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        values = values.clone()
        dist.all_reduce(values)
        return values

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of ``values`` over all processes (identity for one process)."""
        if not self.distributed:
            return values
        return self.sum(values) / self.world_size

    def mean_floats(self, values: Sequence[torch.Tensor]) -> list[float]:
        """The mean over processes of each (scalar) tensor in ``values``, as floats: one all-reduce and one
        device sync for all of them. A NaN/inf on any process gives NaN/inf on every process."""
        stacked = torch.stack([v.detach().float().sum() for v in values])
        return self.mean(stacked).tolist()

    def gather_objects(self, value: Any) -> list[Any]:
        """``value`` of every process, by rank (a picklable, small object; ``[value]`` for one process)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every process rank 0's buffers of ``module`` (BatchNorm running statistics drift
        apart between DDP synchronisations: each process updates them from its own batch)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


SINGLE_PROCESS = DistContext()
