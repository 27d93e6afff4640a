"""The few collectives methods need across the processes of a run (identities in one process).

Methods with state of their own call them directly (the engine hands them no process context): CRD keeps
its memory banks identical on every process, PAT gathers each process's feedback for the checkpoint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def process_rank() -> int:
    """This process's rank in the default group (0 outside one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N_r, ...) of every process in the default group concatenated along dim 0 (rank order;
    N_r may differ between processes); ``x`` itself when not distributed."""
    if not distributed():
        return x
    world = dist.get_world_size()
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    longest = max(int(c) for c in counts)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(c)] for part, c in zip(parts, counts)])


def mean_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over the processes of the default group; ``x`` when not distributed."""
    if not distributed():
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()
