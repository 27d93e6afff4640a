"""The training step never waits on the device: host syncs counted over 20 steady-state steps, with one process
(under torchrun: tests/processes/test_host_syncs_torchrun.py); and ``train.nonfinite: skip`` leaves the model exactly
as it was before a bad step.

A host sync is any call that brings a tensor's value to Python: ``item``, ``tolist``, ``cpu``, ``numpy``,
``__float__``, ``__int__``, ``__bool__``, ``__index__`` (on a GPU each waits for the queued work; on CPU they are
cheap, so here they are counted by wrapping those methods). Adam's step counts are exempt: torch keeps them on
the CPU on purpose (``capturable=False``), so reading them never waits on a GPU.
"""

from __future__ import annotations

import torch

from ofakd.config import load_config
from ofakd.engine.loop import train_one_epoch
from ofakd.engine.trainer import Trainer
from tests.sync_counting import LOG_EVERY, WINDOW, count_syncs, tiny_trainer


def test_one_process_syncs_once_per_log_step(tmp_path):
    calls, records = count_syncs(tiny_trainer(tmp_path))
    reads = (WINDOW[1] - WINDOW[0]) // LOG_EVERY  # steps 10 and 20 are log steps; nothing else reads
    assert len(calls) <= reads, f"{len(calls)} host syncs in 20 steps: {calls}"
    assert [r["step"] for r in records] == [10, 20, 30, 32]  # every log_every steps and the epoch's last
    assert all(set(r["losses"]) == {"gt", "kd", "ofa_s1", "ofa_s2", "ofa_s3", "ofa_s4"} for r in records)


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
