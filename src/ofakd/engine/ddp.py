"""The module the training loop calls: the distiller, made channels-last, SyncBatchNorm'd,
wrapped in DistributedDataParallel and compiled as the config asks.

DDP wraps the distiller, i.e. the student and the method's own modules (branches, projectors,
memory banks): the teacher lives outside the distiller's module tree (``Distiller.teacher``
is set through ``__dict__``), so DDP neither broadcasts nor all-reduces it. Checkpoints,
evaluation and EMA always use the bare distiller and student (no ``module.`` or
``_orig_mod.`` prefixes in any state_dict).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .processes import DistContext


def prepare_modules(distiller: nn.Module, *, dist: DistContext, device: torch.device, sync_bn: bool,
                    channels_last: bool, log: Callable[[str], None] = print) -> None:
    """In-place changes to the distiller that must come before its optimizer is built:
    BatchNorm -> SyncBatchNorm (``train.sync_bn``, several GPU processes) and channels-last
    weights (``train.channels_last``). The parameters stay the same objects."""
    if sync_bn and dist.distributed:
        if device.type == "cuda":
            replace_batchnorm(distiller)
        else:
            log("warning: train.sync_bn needs GPUs (torch's SyncBatchNorm does not run on CPU); "
                "each process normalises over its own batch")
    if channels_last:
        distiller.to(memory_format=torch.channels_last)


def replace_batchnorm(distiller: nn.Module) -> None:
    """Turn every BatchNorm of the distiller's children into a SyncBatchNorm (same parameters and buffers)."""
    for name, child in distiller.named_children():
        setattr(distiller, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))


def training_module(distiller: nn.Module, *, dist: DistContext, device: torch.device,
                    compile: bool = False) -> nn.Module:
    """What the loop calls as ``module(images, targets, **kwargs)``: the distiller itself, or it inside
    ``DistributedDataParallel`` (several processes), then ``torch.compile``d (``train.compile``).

    DDP averages the gradients over processes: with the loss a mean over each process's batch and
    equal batches, that is the gradient of the mean over the global batch, as in one process.
    ``static_graph`` lets a student with parameters a method never touches train without
    ``find_unused_parameters`` (the set of used parameters is the same every step).
    """
    module = distiller
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index if device.index is not None else dist.local_rank] if device.type == "cuda" else None
        module = DistributedDataParallel(distiller, device_ids=device_ids, static_graph=True)
    if compile:
        module = torch.compile(module)
    return module


def world_size_change(saved: int | None, now: int, batch_size: int, log: Callable[[str], None]) -> bool:
    """Warn (once, from the caller's main process) when a run resumes on another number of processes.

    ``train.batch_size`` is per process and is kept, so the global batch changes with the world size;
    the learning rate is not rescaled. Returns True when the world size changed.
    """
    if saved is None or saved == now:
        return False
    message = (f"resuming a run saved with {saved} process(es) on {now}: train.batch_size {batch_size} is per process "
               f"and is kept, so the global batch changes from {saved * batch_size} to {now * batch_size} "
               "(the learning rate is not rescaled; the data order of the remaining epochs follows the new split)")
    log(f"warning: {message}")
    return True
