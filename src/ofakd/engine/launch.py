"""Join the process group of a ``torchrun`` launch (or run as one process), and leave it.

``torchrun --nproc_per_node=N [--nnodes=M --rdzv-endpoint=HOST:PORT ...] -m ofakd distill ...``
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` in every process; :func:`distributed` reads them, picks the backend (NCCL
when the run's device is a GPU, gloo on CPU), gives each process its GPU (``cuda:LOCAL_RANK``)
and starts the process group with a timeout (``train.dist_timeout``): every collective waits
at most that long for the other processes. A process that loses a peer (it crashed, was killed,
or hangs past the timeout) stops with one clear line instead of hanging; ``last.pt`` is only
ever replaced atomically, so the last checkpoint stays whole and resumable.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import torch

from ..device import pick_device
from ..errors import EXIT_PEER_LOST, ConfigError, OfakdError
from .processes import SINGLE_PROCESS, DistContext


class PeerLostError(OfakdError):
    """Another process of a distributed run stopped (crash, kill, preemption) or stopped answering."""

    exit_code = EXIT_PEER_LOST
    label = "stopped"


_COMM_FAILURE = (
    "connection closed by peer", "connection reset by peer", "broken pipe", "timed out waiting", "gloo/transport",
    "nccl", "collective operation timeout", "communicator was aborted",
)
"""Markers (lower case) of the RuntimeErrors gloo and NCCL raise when a peer is gone or silent."""


def env_world() -> tuple[int, int, int, int] | None:
    """``(rank, world size, local rank, local world size)`` from torchrun's environment; None outside it."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise ConfigError("torchrun environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"torchrun environment: RANK={rank} is not in WORLD_SIZE={world}")
    return rank, world, local_rank, local_world


def rank_device(requested: str, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank``: ``cuda:LOCAL_RANK`` for a plain ``cuda``/``auto`` GPU."""
    device = pick_device(requested)
    if device.type == "cuda" and device.index is None:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"torchrun started process {local_rank} on this machine but only {count} GPU(s) are visible; "
                f"use --nproc_per_node={count} or fewer"
            )
        device = torch.device("cuda", local_rank)
    return device


def current_context() -> DistContext:
    """The context of an already started process group (library use), or one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE_PROCESS
    world = env_world()
    local_rank, local_world = (world[2], world[3]) if world else (0, 1)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       local_world_size=local_world, backend=str(dist.get_backend()))


@contextlib.contextmanager
def distributed(device: str = "auto", *, timeout_s: float = 1800.0, resume_hint: str | Path | None = None,
                keep_group: bool = False) -> Iterator[DistContext]:
    """The :class:`DistContext` of this process: one process unless torchrun started several.

    Starts the process group (NCCL on GPU, gloo on CPU, timeout ``timeout_s``) and destroys it at
    the end, or with ``keep_group`` leaves it for later calls in this process (starting a group again in
    one process is not reliable) and destroys it when the process exits. A collective that fails because another process is gone or silent raises
    :class:`PeerLostError` naming this rank, the cause and how to resume (``resume_hint``: the run folder).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # the caller manages the group
        yield current_context()
        return
    world = env_world()
    if world is None or world[1] == 1:
        yield SINGLE_PROCESS
        return
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run one process (without torchrun)")
    rank, world_size, local_rank, local_world = world
    placed = rank_device(device, local_rank)
    backend = "nccl" if placed.type == "cuda" else "gloo"
    if placed.type == "cuda":
        torch.cuda.set_device(placed)
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=placed if placed.type == "cuda" else None)
    except Exception as err:  # the rendezvous: a peer never came, or the endpoint is wrong
        raise PeerLostError(
            f"rank {rank} of {world_size}: could not join the process group within {timeout_s:g}s "
            f"({_first_line(err)}); check that every node started and that MASTER_ADDR:MASTER_PORT "
            f"(torchrun --rdzv-endpoint) is reachable"
        ) from None
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, local_world_size=local_world,
                      backend=backend)
    clean = False
    try:
        yield ctx
        clean = True
    except Exception as err:
        if isinstance(err, OfakdError) or not is_comm_failure(err):
            raise
        where = f" The last checkpoint is intact: continue with --resume {resume_hint}" if resume_hint else ""
        raise PeerLostError(
            f"rank {rank} of {world_size}: lost contact with another process ({_first_line(err)}); stopping. "
            f"The cause is in the log of the process that stopped first.{where} "
            "(with the same or another number of processes)"
        ) from err
    finally:
        if clean and keep_group:
            atexit.register(_destroy_group)
        elif clean:  # after a failure the group may be unusable (NCCL would hang): the process exits anyway
            _destroy_group()


def _destroy_group() -> None:
    import torch.distributed as dist

    with contextlib.suppress(Exception):
        if dist.is_initialized():
            dist.destroy_process_group()


def is_comm_failure(err: BaseException) -> bool:
    """True for the errors a collective raises when a peer is gone or silent (gloo/NCCL/store)."""
    import torch.distributed as dist

    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    if not isinstance(err, RuntimeError):
        return False
    text = str(err).lower()
    return any(marker in text for marker in _COMM_FAILURE)


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 300 else text[:297] + "..."
