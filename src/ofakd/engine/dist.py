"""The process context of a run: rank and world size (one process until torchrun/DDP lands).

The loop asks this object, never ``torch.distributed`` directly, whether it is the main
process (the one that writes files and prints) and how to combine numbers across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistContext:
    """``rank`` of ``world_size`` processes; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

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

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


SINGLE_PROCESS = DistContext()
