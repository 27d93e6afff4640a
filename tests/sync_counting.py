"""Counting host syncs (the calls that bring a tensor's value to Python) and collectives over a trainer's own steps:
what tests/engine/test_host_syncs.py and its torchrun twin measure (see its docstring)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ofakd.config import load_config
from ofakd.engine.loop import train_one_epoch
from ofakd.engine.processes import SINGLE_PROCESS
from ofakd.engine.trainer import Trainer

VIT = {"img_size": 16, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}
SYNCING = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
WINDOW = (5, 25)
"""Batches whose steps are counted: 20 steady-state steps after 5 of warm-up (one-off work: lazy state)."""
LOG_EVERY = 10
COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce", "barrier")


class HostSyncs(contextlib.AbstractContextManager):
    """Counts, while :attr:`active`, the calls of the :data:`SYNCING` tensor methods (``exempt``: tensor ids)
    and, in a process group, of the :data:`COLLECTIVES` (DDP's own gradient all-reduce runs in C++, unseen)."""

    def __init__(self) -> None:
        self.active, self.calls, self.exempt = False, [], set()
        self.saved = [(torch.Tensor, name, getattr(torch.Tensor, name)) for name in SYNCING]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.saved += [(torch.distributed, name, getattr(torch.distributed, name)) for name in COLLECTIVES]

    def __enter__(self):
        for owner, name, function in self.saved:
            setattr(owner, name, self._counting(name, function))
        return self

    def _counting(self, name, function):
        def wrapper(first=None, *args, **kwargs):
            if self.active and id(first) not in self.exempt:
                self.calls.append(name)
            return function(first, *args, **kwargs) if first is not None else function(*args, **kwargs)

        return wrapper

    def __exit__(self, *exc) -> None:
        for owner, name, function in self.saved:
            setattr(owner, name, function)


class CountedBatches:
    """The batches, counting host syncs during the steps of batches WINDOW[0] to WINDOW[1] - 1."""

    def __init__(self, batches, syncs: HostSyncs, optimizer) -> None:
        self.batches, self.syncs, self.optimizer = batches, syncs, optimizer

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for i, batch in enumerate(self.batches):
            if i == WINDOW[0]:
                self.syncs.exempt = {id(s["step"]) for s in self.optimizer.state.values() if "step" in s}
            self.syncs.active = WINDOW[0] <= i < WINDOW[1]
            yield batch
        self.syncs.active = False


def tiny_trainer(out: Path, *extra: tuple[str, object], student=None, dist=SINGLE_PROCESS) -> Trainer:
    """A distillation run (OFA from a live CNN teacher, EMA, clipping) on 256 digits per process, batch 8:
    32 steps an epoch."""
    cfg = load_config("demo", [
        ("data.train_subset", 256 * dist.world_size), ("data.val_subset", 16), ("train.batch_size", 8),
        ("train.epochs", 1), ("train.log_every", LOG_EVERY), ("train.ema_decay", 0.9), ("train.clip_grad", 5.0),
        ("train.eval_teacher", False), ("teacher", {"name": "test_byobnet", "input_size": [3, 16, 16], "random_init": True}),
        ("student", student or {"name": "vit_tiny_patch16_224", "kwargs": VIT, "input_size": [3, 16, 16]}),
        ("run.out_dir", str(out)), ("run.name", "run"), ("train.device", "cpu"), *extra,
    ])
    trainer = Trainer(cfg, progress=False, tensorboard=False, log=lambda _msg: None, dist=dist)
    trainer._prepare()
    trainer.setup.bundle.train_sampler.set_epoch(0)
    return trainer


def count_syncs(trainer: Trainer) -> tuple[list[str], list[dict]]:
    """Host syncs over 20 steady-state steps of the trainer's own step, and the train records it logged."""
    batches = list(trainer.setup.bundle.train_loader)
    records: list[dict] = []
    with HostSyncs() as syncs:
        train_one_epoch(trainer._step_context(), CountedBatches(batches, syncs, trainer.optimizer),
                        epoch=1, start_step=0, on_log=records.append)
    return syncs.calls, records
