"""Scale-out on CPU (gloo): torchrun/DDP against one process, two simulated nodes, a lost rank and a
resume on another world size, distributed evaluation, and the precision / compile / channels-last options.

The multi-process tests start real ``torchrun`` launches (``python -m torch.distributed.run``) of
``python -m ofakd distill``: one process with batch 2B must give the same weights as two with B each.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ofakd.cli import main
from ofakd.config import load_config
from ofakd.engine import fit
from ofakd.errors import ConfigError
from ofakd.run_folder import load_state, read_metrics
from tests.launching import child_env, finish, free_port, launch_report, torchrun

VIT = {"img_size": 16, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}
"""A one-block ViT at 16 px: no BatchNorm, so one and two processes compute the same thing."""
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")


def distill_args(out_dir: Path, name: str, *, batch: int, student: str = "vit", method: str = "ofa",
                 epochs: int = 2, extra: tuple[str, ...] = ()) -> list[str]:
    """``ofakd distill`` on 64 digits at 16 px (2 steps an epoch at a global batch of 32), on the batched data path
    with a random flip and random erasing per view."""
    model = (["--student", "vit_tiny_patch16_224", "--student.kwargs", json.dumps(VIT)] if student == "vit"
             else ["--student", student, "--student.kwargs", "{}"])
    return [
        "distill", "--config", "demo", "--data.train_subset", "64", "--data.val_subset", "30",
        "--epochs", str(epochs), "--train.eval_teacher", "false", "--train.log_every", "1",
        "--train.optimizer", "sgd", "--train.lr", "0.05",  # AdamW would magnify rounding in near-zero gradients
        "--teacher", "test_byobnet", "--teacher.input_size", "[3, 16, 16]", "--teacher-random-init", *model,
        "--student.input_size", "[3, 16, 16]", "--method", method, "--train.batch_size", str(batch),
        "--augment.hflip", "0.5", "--augment.reprob", "0.25",
        "--out-dir", str(out_dir), "--name", name, *extra,
    ]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_state(run / "last.pt")["distiller"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def initial_weights(run: Path) -> dict[str, torch.Tensor]:
    """The distiller's weights before the first step, built as the trainer builds them."""
    from ofakd.data import seed_everything
    from ofakd.engine.setup import build_setup

    cfg = load_config(str(run / "config.yaml"))
    seed_everything(cfg.train.seed)
    return build_setup(cfg, torch.device("cpu")).distiller.state_dict()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: one process, batch 32."""
    out = tmp_path_factory.mktemp("one")
    assert main(distill_args(out, "one", batch=32)) == 0
    return out / "one"


# ----------------------------------------------------------------------------- one vs many processes


@pytest.mark.slow
def test_two_processes_give_the_weights_of_one_process(one_process, tmp_path):
    code, out = finish(torchrun(distill_args(tmp_path, "two", batch=16), nproc=2, port=free_port()))
    assert code == 0, launch_report(out)
    run = tmp_path / "two"
    reference = weights(one_process)
    assert max_difference(weights(run), reference) < 1e-5
    assert max_difference(reference, initial_weights(one_process)) > 1e-3  # training moved the weights
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 32 and summary["complete"]
    assert summary["data_path"] == "batched"
    assert json.loads((one_process / "summary.json").read_text())["global_batch"] == 32
    # rank 0 alone logs: one record per step, the loss averaged over both processes = the global batch's loss
    ours = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    theirs = [r for r in read_metrics(one_process / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in ours] == [1, 2, 3, 4]
    assert np.allclose([r["loss"] for r in ours], [r["loss"] for r in theirs], atol=1e-4)
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["top1"] for r in evals] == [r["top1"] for r in read_metrics(one_process / "metrics.jsonl")
                                          if r["kind"] == "eval"]  # 30 val images split 15/15, counted once
    assert "2 processes (gloo), global batch 32" in out
    assert out.count("done: best val top1") == 1  # only rank 0 reports
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no stray temporary files


@pytest.mark.slow
def test_two_nodes_give_the_weights_of_one_process(one_process, tmp_path):
    port = free_port()
    nodes = [torchrun(distill_args(tmp_path, "nodes", batch=16), nproc=1, port=port, nnodes=2, node_rank=rank)
             for rank in (0, 1)]
    results = [finish(node) for node in nodes]
    for code, out in results:
        assert code == 0, launch_report(out)
    run = tmp_path / "nodes"
    assert max_difference(weights(run), weights(one_process)) < 1e-5
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    assert "done: best val top1" in results[0][1] and "done: best val top1" not in results[1][1]


@pytest.mark.slow
def test_batchnorm_cnn_student_on_two_processes(tmp_path):
    args = distill_args(tmp_path, "bn", batch=16, student="test_resnet", method="kd", epochs=1, extra=("--sync-bn",))
    code, out = finish(torchrun(args, nproc=2, port=free_port()))
    assert code == 0, launch_report(out)
    assert "train.sync_bn needs GPUs" in out  # SyncBatchNorm is GPU-only: each process keeps its own statistics
    summary = json.loads((tmp_path / "bn" / "summary.json").read_text())
    assert summary["complete"] and summary["world_size"] == 2
    state = weights(tmp_path / "bn")
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    assert means and all(torch.isfinite(m).all() for m in means)
    assert any(m.abs().sum() > 0 for m in means)  # the statistics were updated (they start at 0)


@pytest.mark.slow
def test_pat_saves_the_feedback_of_every_process(tmp_path):
    """PAT's feedback is each process's own: the main process's last.pt holds every process's rows (the
    engine gathers them before saving; each process taking its own back is tests/distill/test_pat.py's DDP test)."""
    args = distill_args(tmp_path, "pat", batch=16, method="pat", epochs=1,
                        extra=("--method.query_dim", "64", "--method.num_queries", "16"))
    code, out = finish(torchrun(args, nproc=2, port=free_port()))
    assert code == 0, launch_report(out)
    rows = weights(tmp_path / "pat")["branches.feedback._extra_state"]
    assert rows[:, 0].tolist() == [0.0] * 16 + [1.0] * 16  # the last step's 16 samples of each process
    assert not torch.equal(rows[:16, 1:], rows[16:, 1:])


# ----------------------------------------------------------------------------- a rank that dies


FAULTY_RANK = """
import os, signal, sys
import torch
torch.set_num_threads(1)
import ofakd.engine.trainer as trainer
from ofakd.cli import main

original = trainer.train_one_epoch

def faulty(ctx, loader, *, epoch, **kwargs):
    if os.environ["RANK"] == "1" and epoch == 2:  # after epoch 1 was saved
        os.kill(os.getpid(), signal.SIGKILL if os.environ["FAULT"] == "kill" else signal.SIGSTOP)
    return original(ctx, loader, epoch=epoch, **kwargs)

trainer.train_one_epoch = faulty
sys.exit(main(sys.argv[1:]))
"""
"""``ofakd ARGS`` whose rank 1 dies (SIGKILL) or hangs (SIGSTOP) as epoch 2 starts."""


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_a_lost_rank_stops_the_other_and_the_run_resumes(tmp_path, fault, capsys):
    timeout = 30 if fault == "kill" else 5  # a hung peer is noticed only when the collective times out
    args = distill_args(tmp_path, "lost", batch=16, extra=("--train.dist_timeout", str(timeout)))
    port = free_port()
    ranks = [subprocess.Popen([sys.executable, "-c", FAULTY_RANK, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=child_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                                            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), FAULT=fault))
             for r in (0, 1)]
    try:
        code, out = finish(ranks[0])
    finally:
        with contextlib.suppress(ProcessLookupError):
            ranks[1].send_signal(signal.SIGKILL)
        ranks[1].communicate()
    assert code == 69, out[-3000:]  # EXIT_PEER_LOST
    assert "rank 0 of 2: lost contact with another process" in out
    assert f"--resume {tmp_path / 'lost'}" in out
    if fault == "hang":
        assert "Timed out" in out
    assert load_state(tmp_path / "lost" / "last.pt")["epoch"] == 1  # epoch 1's checkpoint, whole
    if fault == "hang":
        return
    # resume on ONE process: the per-process batch (16) is kept, the global batch halves, the run completes
    capsys.readouterr()
    assert main(["distill", "--resume", str(tmp_path / "lost")]) == 0
    printed = capsys.readouterr().out
    assert "global batch changes from 32 to 16" in printed
    summary = json.loads((tmp_path / "lost" / "summary.json").read_text())
    assert summary["complete"] and summary["world_size"] == 1 and summary["steps"] == 2 + 4
    # the per-step schedule continues from the epoch reached, as a one-process run with batch 16 has it:
    # epoch 2 is its updates 5..8 of 8 (cosine after a 1-epoch warm-up), ending at min_lr
    from ofakd.engine.optim import build_scheduler

    cfg = load_config(str(tmp_path / "lost" / "config.yaml"))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    schedule = build_scheduler(cfg.train, optimizer, 4)
    expected = []
    for update in (5, 6, 7, 8):
        schedule.step_update(num_updates=update)
        expected.append(optimizer.param_groups[0]["lr"])
    logged = [r["lr"] for r in read_metrics(tmp_path / "lost" / "metrics.jsonl") if r["kind"] == "train"]
    assert logged[2:] == pytest.approx(expected) and expected[-1] == pytest.approx(1e-5)
    assert len(set(expected)) == 4  # a cosine, not a constant


# ----------------------------------------------------------------------------- one writer


@pytest.mark.slow
def test_a_locked_run_folder_stops_every_rank(one_process, tmp_path):
    """Under torchrun rank 0 takes the run folder's lock; when another process holds it, rank 0 names that
    process and every rank stops with status 2 at once (none waits for rank 0 until dist_timeout)."""
    from ofakd.run_folder import FolderLock

    port = free_port()
    with FolderLock(one_process / "run.lock", "run folder"):  # as if a run were writing there
        ranks = [subprocess.Popen([sys.executable, "-m", "ofakd", "distill", "--resume", str(one_process)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=child_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2",
                                                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
                 for r in (0, 1)]
        results = [finish(rank) for rank in ranks]
    assert [code for code, _ in results] == [2, 2], results
    assert f"is being written by pid {os.getpid()}" in results[0][1]
    assert "the main process (rank 0) could not claim the run folder" in results[1][1]
    assert "Traceback" not in results[0][1] + results[1][1]


# ----------------------------------------------------------------------------- distributed evaluation


def test_distributed_eval_counts_every_image_once(one_process):
    """Each rank of ``ofakd eval`` under torchrun evaluates its share; the shares add up to the whole split."""
    from dataclasses import dataclass

    from ofakd.config.load import read_recipe, validate
    from ofakd.engine.processes import DistContext
    from ofakd.evaluation import evaluate_target

    @dataclass(frozen=True)
    class OneRankOfTwo(DistContext):  # the ranks run one after the other here: no all-reduce, we add up
        def sum(self, values):
            return values

    raw = read_recipe(str(one_process / "config.yaml"))
    raw["student"]["checkpoint"] = str(one_process / "best.safetensors")
    raw["data"].update(train_subset=63, val_subset=29)  # odd: a padding sampler would count an image twice
    cfg = validate({**raw, "method": {"name": "vanilla"}, "teacher": {}})
    for split, images in (("val", 29), ("train", 63)):
        alone, _ = evaluate_target(cfg, split=split)
        shares = [evaluate_target(cfg, split=split, dist=OneRankOfTwo(rank=r, world_size=2))[0] for r in (0, 1)]
        assert alone.count == images and [s.count for s in shares] == [images // 2 + 1, images // 2]
        correct = sum(s.top1 * s.count for s in shares) / 100
        assert correct == pytest.approx(alone.top1 * images / 100)  # every image once, none twice
        assert sum(s.mean_loss * s.count for s in shares) / images == pytest.approx(alone.mean_loss, rel=1e-5)


# ----------------------------------------------------------------------------- precision, compile, layout


def tiny_run(tmp_path, name: str, *, epochs: int = 2, student: str = "vit", method: str = "kd",
             extra: list[tuple[str, object]] | None = None, log=lambda _msg: None) -> dict:
    model = ({"name": "vit_tiny_patch16_224", "kwargs": VIT, "input_size": [3, 16, 16]} if student == "vit"
             else {"name": student, "input_size": [3, 16, 16]})
    overrides = [
        ("data.train_subset", 128), ("data.val_subset", 64), ("train.batch_size", 16), ("train.epochs", epochs),
        ("train.lr", 5e-3), ("train.eval_teacher", False), ("student", model),
        ("teacher", {"name": "test_byobnet", "input_size": [3, 16, 16], "random_init": True}), ("method", {"name": method}),
        ("run.out_dir", str(tmp_path)), ("run.name", name), ("train.log_every", 1), *(extra or []),
    ]
    return fit(load_config("demo", overrides), progress=False, tensorboard=False, log=log)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    summary = tiny_run(tmp_path, "bf16", epochs=3, extra=[("train.amp", "bf16")])
    assert summary["amp"] == "bf16" and summary["complete"]
    records = read_metrics(tmp_path / "bf16" / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    top1 = [r["top1"] for r in records if r["kind"] == "eval"]
    assert max(top1) > top1[0] and max(top1) > 20  # 10 classes: chance is 10 %


@pytest.mark.parametrize("method", ["kd", "fitnet", "pat"])  # logits only, teacher stage features, prompted teacher
def test_bf16_teacher_with_a_float32_student(tmp_path, method):
    from ofakd.engine.trainer import Trainer

    cfg = load_config("demo", [
        ("data.train_subset", 32), ("data.val_subset", 16), ("train.batch_size", 16), ("train.epochs", 1),
        ("train.amp", "none"), ("student", {"name": "vit_tiny_patch16_224", "kwargs": VIT, "input_size": [3, 16, 16]}),
        ("teacher", {"name": "test_byobnet", "input_size": [3, 16, 16], "dtype": "bfloat16", "random_init": True}),
        ("method", {"name": method}), ("run.out_dir", str(tmp_path)), ("run.name", method),
    ])
    lines: list[str] = []
    trainer = Trainer(cfg, progress=False, tensorboard=False, log=lines.append)
    summary = trainer.fit()
    assert summary["complete"] and summary["amp"] == "none"
    assert {p.dtype for p in trainer.setup.teacher.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in trainer.setup.student.parameters()} == {torch.float32}
    assert any("teacher amp bf16" in line for line in lines)
    records = read_metrics(tmp_path / method / "metrics.jsonl")
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert trainer.state.teacher_eval is not None  # the bf16 teacher was evaluated too
    # the teacher's logits in bf16 are close to its float32 logits
    teacher, x = trainer.setup.teacher, torch.randn(4, 3, 16, 16)
    low = teacher.logits(x)
    with torch.inference_mode():
        high = teacher.model.float()(teacher.view(x))
    assert torch.allclose(low, high, atol=0.1, rtol=0.05) and not torch.equal(low, high)


def test_teacher_precision_options_are_checked():
    from ofakd.teacher import LiveTeacher
    from ofakd.teacher.run_teacher import teacher_precision

    with pytest.raises(ConfigError, match="teacher.dtype bfloat16"):
        teacher_precision("none", "bfloat16", "none")
    assert teacher_precision("same", "float32", "none") == ("none", torch.float32)
    assert teacher_precision("same", "float32", "bf16") == ("bf16", torch.float32)
    assert teacher_precision("bf16", "float32", "none") == ("bf16", torch.float32)
    assert teacher_precision("same", "bfloat16", "none") == ("bf16", torch.bfloat16)
    # a float32 teacher inside a bf16 student step computes in float32
    seen = []
    model = torch.nn.Linear(4, 3)
    model.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    model.num_classes, model.num_features = 3, 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        LiveTeacher(model, amp="none")(torch.randn(2, 4))
        LiveTeacher(model, amp=None)(torch.randn(2, 4))  # None: the caller's context
    assert seen == [False, True]
    with pytest.raises(ConfigError, match="teacher.amp"):
        load_config("demo", [("teacher.amp", "fp16")])


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path, monkeypatch):
    from ofakd.distill import Distiller

    calls = []
    real = torch.compile

    def eager_compile(module, **kwargs):  # dynamo traces for real; the eager backend skips the C++ build
        calls.append(module)
        return real(module, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    compiled = tiny_run(tmp_path, "compiled", epochs=1, extra=[("train.compile", True)])
    plain = tiny_run(tmp_path, "plain", epochs=1)
    assert len(calls) == 1 and isinstance(calls[0], Distiller)  # the training forward: student, modules, losses
    state = weights(tmp_path / "compiled")
    assert not any("_orig_mod" in k or k.startswith("module.") for k in state)  # checkpoints stay plain
    assert max_difference(state, weights(tmp_path / "plain")) < 1e-5
    assert compiled["final_top1"] == plain["final_top1"]


def test_channels_last_trains_like_contiguous(tmp_path):
    last = tiny_run(tmp_path, "nhwc", epochs=1, student="test_resnet", extra=[("train.channels_last", True)])
    plain = tiny_run(tmp_path, "nchw", epochs=1, student="test_resnet")
    assert last["complete"] and plain["complete"]
    ours, theirs = weights(tmp_path / "nhwc"), weights(tmp_path / "nchw")
    assert ours.keys() == theirs.keys()
    for key in ours:  # another summation order, the same run (BatchNorm variances are large: relative)
        assert torch.allclose(ours[key].double(), theirs[key].double(), rtol=1e-3, atol=1e-4), key


def test_scale_out_flags_reach_the_config(ofakd_cli, tmp_path):
    code, out, _ = ofakd_cli("distill", "--config", "demo", "--compile", "--channels-last", "--sync-bn",
                             "--train.dist_timeout", "60", "--teacher.amp", "bf16", "--print-config")
    assert code == 0
    train = load_config(None, []).train  # the defaults are off
    assert not (train.compile or train.channels_last or train.sync_bn) and train.dist_timeout == 1800
    for line in ("compile: true", "channels_last: true", "sync_bn: true", "dist_timeout: 60.0", "amp: bf16"):
        assert line in out


# ----------------------------------------------------------------------------- pieces


def test_shard_sampler_counts_each_index_once():
    from ofakd.data.samplers import ShardSampler, val_sampler

    data = list(range(11))
    shards = [list(ShardSampler(data, world_size=3, rank=r)) for r in range(3)]
    assert sorted(sum(shards, [])) == data and [len(s) for s in shards] == [4, 4, 3]
    assert [len(ShardSampler(data, world_size=3, rank=r)) for r in range(3)] == [4, 4, 3]
    assert val_sampler(data, world_size=1, rank=0) is None


def test_one_process_context_needs_no_process_group(monkeypatch):
    from ofakd.engine.launch import distributed, env_world
    from ofakd.engine.processes import SINGLE_PROCESS

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert env_world() is None
    with distributed("cpu") as dist:
        assert dist is SINGLE_PROCESS and dist.is_main and not dist.distributed
    values = torch.tensor([1.5, 2.0])
    assert SINGLE_PROCESS.sum(values) is values and SINGLE_PROCESS.mean_floats([values[0], values[1]]) == [1.5, 2.0]
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1 is one process too
    assert env_world() == (0, 1, 0, 1)
    with distributed("cpu") as dist:
        assert dist is SINGLE_PROCESS
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2 is not in WORLD_SIZE=2"):
        env_world()


def test_communication_failures_are_told_apart():
    from ofakd.engine.launch import PeerLostError, is_comm_failure

    assert is_comm_failure(RuntimeError("[../gloo/transport/tcp/pair.cc:561] Connection closed by peer [1.2.3.4]:5"))
    assert is_comm_failure(RuntimeError("[..] Timed out waiting 5000ms for recv operation to complete"))
    assert not is_comm_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_comm_failure(ValueError("Connection closed by peer"))
    assert PeerLostError.exit_code == 69


def test_shifted_scheduler_moves_per_step_updates_only():
    from ofakd.engine.ddp import world_size_change
    from ofakd.engine.optim import ShiftedScheduler

    seen = []

    class Fake:
        def step(self, epoch, metric=None):
            seen.append(("epoch", epoch))

        def step_update(self, num_updates, metric=None):
            seen.append(("update", num_updates))

        def state_dict(self):
            return {"t": 1}

    shifted = ShiftedScheduler(Fake(), 2)
    shifted.step_update(6)
    shifted.step(3)
    assert seen == [("update", 8), ("epoch", 3)] and shifted.state_dict() == {"t": 1}
    lines = []
    assert world_size_change(2, 4, 16, lines.append) and "global batch changes from 32 to 64" in lines[0]
    assert not world_size_change(2, 2, 16, lines.append) and not world_size_change(None, 2, 16, lines.append)
    assert len(lines) == 1


def test_ddp_sees_the_student_and_method_modules_but_not_the_teacher(tmp_path):
    """DDP synchronises ``module.parameters()`` and ``module.buffers()``: the teacher is in neither."""
    from ofakd.engine.setup import build_setup

    cfg = load_config("demo", [
        ("data.train_subset", 32), ("data.val_subset", 16), ("train.batch_size", 16),
        ("student", {"name": "vit_tiny_patch16_224", "kwargs": VIT, "input_size": [3, 16, 16]}),
        ("teacher", {"name": "test_byobnet", "input_size": [3, 16, 16], "random_init": True}), ("method", {"name": "ofa"}),
    ])
    setup = build_setup(cfg, torch.device("cpu"))
    synced = {id(t) for t in (*setup.distiller.parameters(), *setup.distiller.buffers())}
    assert not synced & {id(t) for t in (*setup.teacher.parameters(), *setup.teacher.buffers())}
    assert {id(p) for p in setup.student.parameters()} <= synced
    assert {id(p) for p in setup.distiller.branches.parameters()} and {id(p) for p in setup.distiller.branches.parameters()} <= synced


@pytest.mark.slow
@pytest.mark.parametrize("differs", ["settings", "teacher"])
def test_processes_given_different_settings_or_teacher_refuse_to_train_together(tmp_path, differs):
    """Two torchrun processes started with another lr, or with teacher files of other weights: each names what
    differs and stops with status 2 before any step (issue 29, point 8), instead of training on rank 0's."""
    import timm

    args = distill_args(tmp_path, "mixed", batch=16, epochs=1)
    per_rank = [[], ["--train.lr", "0.1"]] if differs == "settings" else []
    if differs == "teacher":
        args.remove("--teacher-random-init")
        for rank in (0, 1):
            torch.manual_seed(rank)
            torch.save(timm.create_model("test_byobnet", num_classes=10).state_dict(), tmp_path / f"t{rank}.pth")
        per_rank = [["--teacher-checkpoint", str(tmp_path / f"t{rank}.pth")] for rank in (0, 1)]
    port = free_port()
    ranks = [subprocess.Popen([sys.executable, "-m", "ofakd", *args, *per_rank[r]], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=child_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2",
                                            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
             for r in (0, 1)]
    results = [finish(rank) for rank in ranks]
    assert [code for code, _ in results] == [2, 2], results
    expected = ("settings (train.lr: 0.05 on rank 0, 0.1 on rank 1)" if differs == "settings"
                else "teacher weights (rank 0 and rank 1 differ)")
    for _, output in results:
        assert f"the 2 processes of this torchrun job were given different {expected}" in output, output
        assert "Traceback" not in output and "lost contact" not in output
    assert not (tmp_path / "mixed" / "last.pt").exists()
