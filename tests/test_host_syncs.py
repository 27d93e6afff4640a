"""The training step never waits on the device: host syncs counted over 20 steady-state steps, with one process
and under torchrun; and ``train.nonfinite: skip`` leaves the model exactly as it was before a bad step.

A host sync is any call that brings a tensor's value to Python: ``item``, ``tolist``, ``cpu``, ``numpy``,
``__float__``, ``__int__``, ``__bool__``, ``__index__`` (on a GPU each waits for the queued work; on CPU they are
cheap, so here they are counted by wrapping those methods). Adam's step counts are exempt: torch keeps them on
the CPU on purpose (``capturable=False``), so reading them never waits on a GPU.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
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


def test_one_process_syncs_once_per_log_step(tmp_path):
    calls, records = count_syncs(tiny_trainer(tmp_path))
    reads = (WINDOW[1] - WINDOW[0]) // LOG_EVERY  # steps 10 and 20 are log steps; nothing else reads
    assert len(calls) <= reads, f"{len(calls)} host syncs in 20 steps: {calls}"
    assert [r["step"] for r in records] == [10, 20, 30, 32]  # every log_every steps and the epoch's last
    assert all(set(r["losses"]) == {"gt", "kd", "ofa_s1", "ofa_s2", "ofa_s3", "ofa_s4"} for r in records)


SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import torch
from test_host_syncs import count_syncs, tiny_trainer
from ofakd.engine.launch import distributed
from ofakd.engine.loop import train_one_epoch

with distributed("cpu") as dist:
    trainer = tiny_trainer(Path(sys.argv[2]), dist=dist)
    calls, records = count_syncs(trainer)
    # then nonfinite: skip, rank 1 alone seeing an inf loss whose gradients are finite (a constant added to gt)
    trainer.numerics.policy, trainer.numerics.max_skipped = "skip", 5
    forward, seen = trainer.setup.distiller.forward, []

    def inf_on_rank_1(*args, **kwargs):
        logits, losses = forward(*args, **kwargs)
        seen.append(1)
        if dist.rank == 1 and len(seen) == 2:
            losses["gt"] = losses["gt"] + float("inf")
        return logits, losses

    trainer.setup.distiller.forward = inf_on_rank_1
    batches = list(trainer.setup.bundle.train_loader)[:3]
    result = train_one_epoch(trainer._step_context(), batches, epoch=2, start_step=32, on_log=lambda r: None)
    weights = torch.cat([p.detach().flatten() for p in trainer.setup.distiller.parameters()])
    both = [torch.zeros_like(weights) for _ in range(2)]
    torch.distributed.all_gather(both, weights)
    Path(sys.argv[2], f"rank{dist.rank}.json").write_text(json.dumps({
        "rank": dist.rank, "world": dist.world_size, "calls": calls, "steps": [r["step"] for r in records],
        "skipped": result.skipped, "same_weights": torch.equal(*both)}))
"""


@pytest.mark.slow
def test_torchrun_syncs_and_all_reduces_once_per_log_step_and_skips_alike(tmp_path):
    from .test_distributed import finish, free_port, launch_report, torchrun

    script = tmp_path / "count.py"
    script.write_text(SCRIPT)
    code, out = finish(torchrun([str(Path(__file__).parent), str(tmp_path)], nproc=2, port=free_port(),
                                program=(str(script),)))
    assert code == 0, launch_report(out)
    results = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in results) == [0, 1] and {r["world"] for r in results} == {2}
    for r in results:  # the 20 steps hold two reads, each one all-reduce of the step records and one host sync
        collectives = [c for c in r["calls"] if c in COLLECTIVES]
        assert collectives == ["all_reduce", "all_reduce"], r
        assert len(r["calls"]) - len(collectives) <= 2, r
        assert r["steps"] == [10, 20, 30, 32]
        assert r["skipped"] == 1 and r["same_weights"], r  # both processes skipped step 34, so they stay equal


# ----------------------------------------------------------------------------- nonfinite: skip is exact

RESNET = {"name": "test_resnet", "input_size": [3, 16, 16]}
"""A CNN student with BatchNorm: its forward writes running statistics."""


def model_state(trainer: Trainer) -> dict:
    """Everything a step may change, copied: weights and buffers, EMA, optimizer state."""
    return {
        "distiller": {k: v.clone() for k, v in trainer.setup.distiller.state_dict().items()},
        "ema": {k: v.clone() for k, v in trainer.ema.state_dict().items()},
        "optimizer": [{k: torch.as_tensor(v).clone() for k, v in s.items()} for s in trainer.optimizer.state.values()],
    }


def same_state(a: dict, b: dict) -> list[str]:
    """Keys whose tensors differ (NaN differs from everything)."""
    differ = [f"{part}.{k}" for part in ("distiller", "ema") for k in a[part] if not torch.equal(a[part][k], b[part][k])]
    return differ + [f"optimizer.{i}.{k}" for i, (x, y) in enumerate(zip(a["optimizer"], b["optimizer"]))
                     for k in x if not torch.equal(x[k], y[k])]


def test_a_skipped_step_leaves_the_model_exactly_as_before_batchnorm_and_ema_included(tmp_path):
    trainer = tiny_trainer(tmp_path, ("train.nonfinite", "skip"), ("train.max_skipped_steps", 1), student=RESNET)
    warnings = []
    trainer.numerics.log = warnings.append
    ctx = trainer._step_context()
    batches = list(trainer.setup.bundle.train_loader)[:4]
    train_one_epoch(ctx, batches[:3], epoch=1, start_step=0, on_log=lambda r: None)
    before = model_state(trainer)
    assert before["distiller"]["student.bn1.num_batches_tracked"] == 3
    images, *rest = batches[3]
    poisoned = [images * float("nan"), *rest]  # the forward's BatchNorm statistics turn NaN
    result = train_one_epoch(ctx, [poisoned], epoch=1, start_step=3, on_log=lambda r: None)
    assert result.skipped == 1 and result.steps == 1 and trainer.numerics.skipped == 1
    assert "step 4: loss component 'gt' is nan" in warnings[0] and "step skipped (1 of" in warnings[0]
    assert same_state(before, model_state(trainer)) == []
    train_one_epoch(ctx, batches[:1], epoch=1, start_step=4, on_log=lambda r: None)  # and it trains on
    after = model_state(trainer)
    assert "distiller.student.bn1.running_mean" in same_state(before, after)
    assert all(torch.isfinite(t).all() for part in ("distiller", "ema") for t in after[part].values())


def test_skip_keeps_a_batchnorm_run_going_to_its_end(tmp_path, monkeypatch):
    """The run of issue 18: a NaN batch under nonfinite: skip used to leave NaN running statistics that the next
    checkpoint refused (exit 3). Now the run ends, every saved tensor finite."""
    import ofakd.engine.trainer as trainer_module

    real = trainer_module.build_setup
    calls = []

    def nan_input_at_call_3(module, args):
        calls.append(1)
        return (args[0] * float("nan"),) if len(calls) == 3 else None

    def build_setup(*args, **kwargs):
        setup = real(*args, **kwargs)
        setup.student.register_forward_pre_hook(nan_input_at_call_3)
        return setup

    monkeypatch.setattr(trainer_module, "build_setup", build_setup)
    trainer = Trainer(load_config("demo", [
        ("data.train_subset", 64), ("data.val_subset", 16), ("train.batch_size", 8), ("train.epochs", 1),
        ("train.nonfinite", "skip"), ("train.ema_decay", 0.9), ("student", RESNET), ("method", {"name": "vanilla"}),
        ("teacher", {}), ("run.out_dir", str(tmp_path)), ("run.name", "run"),
    ]), progress=False, tensorboard=False, log=lambda _msg: None)
    summary = trainer.fit()
    assert summary["complete"] and summary["skipped_steps"] == 1
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for part in ("distiller", "ema") for t in saved[part].values()
               if t.is_floating_point())
    assert saved["distiller"]["student.bn1.num_batches_tracked"] == 8 - 1  # 8 steps, one of them skipped
