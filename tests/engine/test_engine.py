"""Engine: teacher input adapter, atomic checkpoints, seeding, optimiser/schedule, evaluation, resume."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from ofakd.config import TrainConfig, load_config
from ofakd.engine import fit
from ofakd.engine.amp import Precision
from ofakd.engine.evaluate import evaluate
from ofakd.engine.loop import StepContext, soft_targets, train_one_epoch
from ofakd.engine.optim import build_optimizer, build_scheduler, param_groups
from ofakd.engine.seeding import capture_rng, restore_rng
from ofakd.engine.state import RunState
from ofakd.errors import ConfigError, OfakdError
from ofakd.models.info import InputSpec
from ofakd.run_folder import atomic_write, load_state, read_metrics, read_weights_metadata, save_state
from ofakd.teacher.input_view import TeacherInput, teacher_adapter
from tests.conftest import tiny_overrides

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- teacher input


def test_teacher_input_renormalises_exactly():
    adapter = TeacherInput((3, 2, 2), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (3, 2, 2), IMAGENET_MEAN, IMAGENET_STD)
    x = torch.zeros(1, 3, 2, 2)
    x[0, :, 0, 0] = 1.0  # pixel 1.0 for the student (mean 0.5, std 0.5)
    x[0, :, 1, 1] = -1.0  # pixel 0.0
    out = adapter(x)
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx((1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6)
        assert out[0, c, 1, 1].item() == pytest.approx((0.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6)
        assert out[0, c, 0, 1].item() == pytest.approx((0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6)


def test_teacher_input_channels_and_size():
    gray_to_rgb = TeacherInput((1, 4, 4), (0.0,), (1.0,), (3, 8, 8), (0.0, 0.1, 0.2), (1.0, 1.0, 2.0))
    x = torch.full((2, 1, 4, 4), 0.6)
    out = gray_to_rgb(x)
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out[:, 0], torch.full((2, 8, 8), 0.6))
    torch.testing.assert_close(out[:, 2], torch.full((2, 8, 8), 0.2))
    rgb_to_gray = TeacherInput((3, 4, 4), (0, 0, 0), (1, 1, 1), (1, 2, 2), (0.5,), (0.5,))
    x = torch.stack([torch.full((4, 4), v) for v in (0.1, 0.2, 0.6)]).unsqueeze(0)
    out = rgb_to_gray(x)
    assert out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out, torch.full((1, 1, 2, 2), (0.3 - 0.5) / 0.5))


def test_teacher_input_is_skipped_when_nothing_differs():
    assert TeacherInput((3, 32, 32), IMAGENET_MEAN, IMAGENET_STD, (3, 32, 32), IMAGENET_MEAN, IMAGENET_STD).is_identity
    assert TeacherInput((3, 32, 32), (0.5,), (0.5,), (3, 32, 32), (0.5,) * 3, (0.5,) * 3).is_identity
    assert not TeacherInput((3, 32, 32), IMAGENET_MEAN, IMAGENET_STD, (3, 64, 64), IMAGENET_MEAN, IMAGENET_STD).is_identity
    spec = InputSpec((3, 32, 32), IMAGENET_MEAN, IMAGENET_STD)
    assert teacher_adapter(spec, spec) is None
    assert teacher_adapter(spec, InputSpec((3, 64, 64), IMAGENET_MEAN, IMAGENET_STD)) is not None
    adapter = TeacherInput((3, 2, 2), (0.5,), (0.5,), (3, 2, 2), (0.5,), (0.5,))
    assert adapter.state_dict() == {}  # its buffers come from the config, not checkpoints


# ----------------------------------------------------------------------------- checkpoints


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_state(path, {"epoch": 1, "w": torch.ones(3)})

    def broken_save(obj, f):
        f.write(b"partial garbage")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_state(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_state(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write(path, lambda f: f.write(b"old"))
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"


def test_load_state_refuses_non_checkpoints(tmp_path):
    with pytest.raises(OfakdError, match="nothing to resume"):
        load_state(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(OfakdError, match="not a readable checkpoint"):
        load_state(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------- seeding, targets


def test_rng_capture_and_restore_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng([gen])
    save_state(tmp_path / "rng.pt", {"epoch": 0, "rng": state})  # must survive weights_only loading
    first = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    restore_rng(load_state(tmp_path / "rng.pt")["rng"], [gen])
    again = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    assert first == again


def test_label_smoothing_targets():
    rows = soft_targets(torch.tensor([2, 0]), 4, 0.1)
    torch.testing.assert_close(rows.sum(1), torch.ones(2))
    assert rows[0, 2].item() == pytest.approx(0.9 + 0.025) and rows[0, 0].item() == pytest.approx(0.025)


# ----------------------------------------------------------------------------- optimiser, schedule


class _Toy(nn.Module):
    needs_sample_indices = False

    def __init__(self):
        super().__init__()
        self.student = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))
        self.branches = nn.Module()
        self.frozen = nn.Linear(2, 2).requires_grad_(False)

    def trainable_parameters(self):
        return (p for p in self.parameters() if p.requires_grad)

    def forward(self, images, targets, **_):
        logits = self.student(images)
        return logits, {"gt": nn.functional.cross_entropy(logits, targets) * self.scale}

    scale = 1.0

    def on_step_end(self):
        self.steps_seen = getattr(self, "steps_seen", 0) + 1


def test_param_groups_skip_decay_on_biases_and_norms_and_frozen():
    groups = param_groups(_Toy(), 0.05)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert sorted(p.shape for p in decay["params"]) == [torch.Size([3, 8]), torch.Size([8, 4])]
    assert len(no_decay["params"]) == 4  # 2 linear biases + LayerNorm weight and bias; the frozen layer is out


def _lrs(cfg: TrainConfig, epochs: int) -> list[float]:
    opt = build_optimizer(cfg, _Toy())
    sched = build_scheduler(cfg, opt, steps_per_epoch=10)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        sched.step(epoch + 1)
    return out


def test_step_schedule_with_warmup():
    cfg = TrainConfig(optimizer="sgd", lr=0.1, scheduler="step", decay_epochs=3, decay_rate=0.1, warmup_epochs=1,
                      warmup_lr=0.001, epochs=7)
    assert _lrs(cfg, 7) == pytest.approx([0.001, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001])


def test_cosine_schedule_reaches_min_lr():
    cfg = TrainConfig(optimizer="adamw", lr=1.0, min_lr=0.01, scheduler="cosine", epochs=4)
    lrs = _lrs(cfg, 4)
    assert lrs[0] == pytest.approx(1.0) and lrs[2] == pytest.approx(0.505) and all(a > b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("name", ["sgd", "adamw", "lamb"])
def test_timm_optimizers(name):
    opt = build_optimizer(TrainConfig(optimizer=name, lr=0.01), _Toy())
    assert opt.param_groups[0]["lr"] == 0.01


def test_fp16_needs_a_gpu():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        Precision("fp16", torch.device("cpu"))
    assert Precision("auto", torch.device("cpu")).mode == "none"
    assert Precision("bf16", torch.device("cpu")).dtype == torch.bfloat16


# ----------------------------------------------------------------------------- loop, evaluation


def _loader(n=8, batch=4):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def _ctx(model, **kw):
    cfg = TrainConfig(optimizer="sgd", lr=0.1)
    opt = build_optimizer(cfg, model)
    return StepContext(distiller=model, optimizer=opt, scheduler=build_scheduler(cfg, opt, 2),
                       precision=Precision("none", torch.device("cpu")), device=torch.device("cpu"), num_classes=3, **kw)


def test_one_epoch_steps_logs_and_calls_hooks():
    model, records = _Toy(), []
    before = model.student[0].weight.detach().clone()
    result = train_one_epoch(_ctx(model, log_every=1), _loader(), epoch=1, start_step=0, on_log=records.append)
    assert result.steps == 2 and result.images == 8 and model.steps_seen == 2
    assert [r["step"] for r in records] == [1, 2] and set(records[0]["losses"]) == {"gt"}
    assert not torch.equal(before, model.student[0].weight)


def test_nan_loss_stops_with_a_clear_error():
    model = _Toy()
    model.scale = float("nan")
    with pytest.raises(OfakdError, match=r"non-finite loss at epoch 1, step 1: loss component 'gt' is nan \(gt=nan\)"):
        train_one_epoch(_ctx(model), _loader(), epoch=1, start_step=0, on_log=lambda r: None)


def test_evaluate_top1_top5_on_a_hand_example():
    class Fixed(nn.Module):
        def forward(self, x):  # 6 classes; the score of class c is x[:, c]
            return x

    x = torch.tensor([
        [5.0, 0, 0, 0, 0, 0],  # target 0: top-1 hit
        [0.0, 5, 0, 0, 0, 0],  # target 1: top-1 hit
        [5.0, 0, 0, 0, 4, 0],  # target 4: second best, a top-5 hit only
        [0.0, 1, 2, 3, 4, 5],  # target 0: the worst score, a miss for both
    ])
    y = torch.tensor([0, 1, 4, 0])
    result = evaluate(Fixed(), [(x, y)], device=torch.device("cpu"))
    assert result.top1 == pytest.approx(50.0) and result.top5 == pytest.approx(75.0)
    assert result.count == 4
    assert result.mean_loss == pytest.approx(nn.functional.cross_entropy(x, y).item(), rel=1e-6)


def test_best_tracks_ema_when_better():
    state = RunState()
    assert state.consider(1, {"top1": 50.0, "top5": 80.0, "ema_top1": 40.0, "ema_top5": 70.0}) == "model"
    assert state.consider(2, {"top1": 55.0, "top5": 80.0, "ema_top1": 60.0, "ema_top5": 90.0}) == "ema"
    assert state.consider(3, {"top1": 58.0, "top5": 80.0, "ema_top1": 59.0, "ema_top5": 90.0}) is None
    assert (state.best.top1, state.best.top5, state.best.epoch, state.best.source) == (60.0, 90.0, 2, "ema")


# ----------------------------------------------------------------------------- whole runs


@pytest.fixture(scope="module")
def resumed_pair(tmp_path_factory):
    """The same OFA run (EMA, mixup, random erasing) uninterrupted, and stopped after epoch 1 then resumed."""
    out = tmp_path_factory.mktemp("runs")
    extra = [("train.ema_decay", 0.9), ("augment.mixup", 0.4), ("augment.cutmix", 1.0), ("augment.reprob", 0.3),
             ("augment.hflip", 0.5), ("train.warmup_epochs", 1), ("train.clip_grad", 1.0)]
    quiet = {"progress": False, "log": lambda _msg: None}
    full = fit(load_config("demo", tiny_overrides(out, "full", method="ofa") + extra), **quiet)
    part_cfg = load_config("demo", tiny_overrides(out, "part", method="ofa") + extra)
    first = fit(part_cfg, stop_after_epochs=1, **quiet)
    with pytest.raises(ConfigError, match="differs from the run's at 'train.lr'"):
        fit(load_config(str(out / "part" / "config.yaml"), [("train.lr", 0.5)]), resume=out / "part", **quiet)
    resumed = fit(load_config(str(out / "part" / "config.yaml")), resume=out / "part", **quiet)
    return out, full, first, resumed


def test_resume_continues_exactly(resumed_pair):
    out, full, first, resumed = resumed_pair
    assert first["epochs_done"] == 1 and not first["complete"] and first["data_path"] == "batched"
    assert resumed["complete"] and resumed["epochs_done"] == 2
    a = torch.load(out / "full" / "last.pt", weights_only=True)
    b = torch.load(out / "part" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8 and a["epoch"] == b["epoch"] == 2
    assert a["distiller"].keys() == b["distiller"].keys()
    assert any(k.startswith("branches.") for k in a["distiller"])  # OFA branches are resumed too
    for key in a["distiller"]:
        assert torch.equal(a["distiller"][key], b["distiller"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][k][name]))
    assert a["scheduler"] == b["scheduler"]
    assert (resumed["best_top1"], resumed["final_top1"]) == (full["best_top1"], full["final_top1"])
    # the resumed run's log has each epoch once, as the uninterrupted one
    strip = [{k: v for k, v in r.items() if k != "images_per_s"} for r in read_metrics(out / "part" / "metrics.jsonl")]
    full_records = [{k: v for k, v in r.items() if k != "images_per_s"} for r in read_metrics(out / "full" / "metrics.jsonl")]
    assert strip == full_records


def test_run_folder_files_exist_and_agree(resumed_pair):
    out, full, _, _ = resumed_pair
    run = out / "full"
    names = set(os.listdir(run))
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.safetensors", "summary.json"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    summary = json.loads((run / "summary.json").read_text())
    assert summary == full
    for key in ("name", "method", "teacher", "student", "dataset", "seed", "data_seed", "epochs", "best_top1",
                "best_top5", "best_epoch", "final_top1", "final_top5", "student_params", "branch_params",
                "wall_time_s", "images_per_s", "ema"):
        assert key in summary, key
    assert (summary["method"], summary["teacher"], summary["dataset"], summary["ema"]) == ("ofa", "test_byobnet", "digits", True)
    assert summary["branch_params"] > 0 and summary["student_params"] > 0
    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    for r in train:
        assert set(r) == {"kind", "epoch", "step", "lr", "loss", "images_per_s", "losses"}
        assert r["loss"] == pytest.approx(sum(r["losses"].values()), rel=1e-5)
        assert {"gt", "kd", "ofa_s1"} <= set(r["losses"])
    assert [r["step"] for r in train] == [2, 4, 6, 8]  # log_every 2, 4 steps per epoch
    best = max(evals, key=lambda r: max(r["top1"], r["ema_top1"]))
    assert summary["best_top1"] == max(best["top1"], best["ema_top1"])
    assert summary["best_epoch"] == best["epoch"]
    assert summary["final_top1"] == evals[-1]["top1"] and summary["final_top5"] == evals[-1]["top5"]
    assert summary["best_from"] == ("ema" if best["ema_top1"] > best["top1"] else "model")
    meta = read_weights_metadata(run / "best.safetensors")
    assert meta["ofakd_model"] == "vit_tiny_patch16_224" and meta["ofakd_source"] == summary["best_from"]
    assert meta["ofakd_epoch"] == summary["best_epoch"]


def test_data_seed_is_separate_from_the_init_seed(tmp_path):
    from ofakd.data import seed_everything
    from ofakd.engine.setup import build_setup

    def setup(seed, data_seed):
        cfg = load_config("demo", tiny_overrides(tmp_path, "x") + [("train.seed", seed), ("train.data_seed", data_seed)])
        seed_everything(cfg.train.seed)
        built = build_setup(cfg, torch.device("cpu"))
        built.bundle.train_sampler.set_epoch(0)
        return built.student.state_dict(), list(built.bundle.train_sampler)

    weights_a, order_a = setup(1, 5)
    weights_b, order_b = setup(1, 6)
    weights_c, order_c = setup(2, 5)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)  # same init seed: same weights
    assert order_a != order_b  # another data seed: another order
    assert order_a == order_c and not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)


def test_bf16_autocast_trains_on_cpu(tmp_path):
    summary = fit(load_config("demo", tiny_overrides(tmp_path, "bf16", epochs=1) + [("train.amp", "bf16")]),
                  progress=False, tensorboard=False, log=lambda _msg: None)
    assert summary["amp"] == "bf16" and summary["complete"]
    records = read_metrics(tmp_path / "bf16" / "metrics.jsonl")
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")


def test_progress_bar_on_a_terminal_plain_lines_elsewhere():
    """On a terminal a bar with the main loss terms; off one (a pipe, a log file) no bar at all, but a line per
    train record with the step, every loss term, lr, images/s and the ETA."""
    import io

    from ofakd.engine.progress import EpochProgress, epoch_line

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    record = {"step": 12, "loss": 1.75, "lr": 0.01, "images_per_s": 120.0,
              "losses": {"gt": 1.0, "kd": 0.25, "ofa_s1": 0.2, "ofa_s4": 0.3}}
    term, pipe, logged = Terminal(), io.StringIO(), {}
    for stream in (term, pipe):
        lines = logged.setdefault(id(stream), [])
        bar = EpochProgress(2, 3, steps=20, start_step=10, stream=stream, log=lines.append)
        bar.step()
        bar.step()
        bar.record(record)
        if bar.bar is not None:
            bar.bar.refresh()  # tqdm redraws at most every 0.1 s by itself
        bar.close()
    assert "epoch 2/3" in term.getvalue() and "loss 1.7500" in term.getvalue() and "img/s" in term.getvalue()
    assert "ofa 0.5" in term.getvalue() and "kd 0.25" in term.getvalue()  # per-stage terms summed on the bar
    assert logged[id(term)] == []
    assert pipe.getvalue() == ""  # no bar written to a non-terminal
    (line,) = logged[id(pipe)]
    assert line.startswith("epoch 2/3 step 2/20  loss 1.7500 (gt 1 kd 0.25 ofa_s1 0.2 ofa_s4 0.3)  lr 0.01  120 img/s")
    assert "  eta " in line and "(training " in line and "\n" not in line
    line = epoch_line(1, 3, loss=1.0, lr=0.01, images_per_s=120.0, seconds=2.0, terms={"gt": 0.75, "kd": 0.25},
                      evals={"top1": 50.0, "top5": 90.0, "ema_top1": 55.0}, best_top1=55.0)
    assert line.startswith("epoch 1/3  loss 1.0000 (gt 0.75 kd 0.25)") and "ema top1 55.00" in line
    assert "\n" not in line


@pytest.mark.parametrize("per_step", [True, False])
def test_resume_extends_a_finished_run_with_the_schedule_replanned_over_the_new_total(tmp_path, capsys, per_step):
    """`--resume RUN --epochs N` trains a finished run on: from the step reached, the lr is what a run planned for
    N epochs has there (cosine re-planned over the new total); config.yaml records N; fewer epochs than done is
    an error that changes nothing."""
    from ofakd.cli import main

    quiet = {"progress": False, "log": lambda _msg: None}
    said: list[str] = []
    sched = [("train.sched_on_updates", per_step)]
    short = fit(load_config("demo", tiny_overrides(tmp_path, "short", epochs=1) + sched), progress=False,
                log=said.append)
    assert short["complete"] and short["epochs_done"] == 1
    assert any(line.startswith("warning: train.warmup_epochs 1 >= train.epochs 1") for line in said)
    fit(load_config("demo", tiny_overrides(tmp_path, "long", epochs=2) + sched), **quiet)

    assert main(["train", "--resume", str(tmp_path / "short"), "--epochs", "2", "--print-config"]) == 0
    assert "epochs: 2" in capsys.readouterr().out  # the command line takes --epochs on a resume
    extended = fit(load_config(str(tmp_path / "short" / "config.yaml"), [("train.epochs", 2)]),
                   resume=tmp_path / "short", **quiet)
    assert extended["complete"] and (extended["epochs_done"], extended["epochs"]) == (2, 2)

    def lrs(run: str, epoch: int) -> list[tuple[int, float]]:
        return [(r["step"], r["lr"]) for r in read_metrics(tmp_path / run / "metrics.jsonl")
                if r["kind"] == "train" and r["epoch"] == epoch]

    assert lrs("short", 2) == lrs("long", 2) and lrs("short", 2)  # the 2-epoch schedule from epoch 1 on
    if per_step:
        assert lrs("short", 1) != lrs("long", 1)  # (the first epoch ran under the 1-epoch plan)
    assert "epochs: 2" in (tmp_path / "short" / "config.yaml").read_text()
    before = (tmp_path / "short" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="has trained 2 epochs; --epochs must be at least 2"):
        fit(load_config(str(tmp_path / "short" / "config.yaml"), [("train.epochs", 1)]), resume=tmp_path / "short",
            **quiet)
    assert (tmp_path / "short" / "last.pt").read_bytes() == before


class _Stop(Exception):
    """What a test's epoch-end callback raises to stop a run (as a search prunes a trial)."""


def test_epoch_end_callback_sees_each_epochs_evals_and_its_exception_stops_a_resumable_run(tmp_path):
    quiet = {"progress": False, "log": lambda _msg: None}
    seen = []
    full = fit(load_config("demo", tiny_overrides(tmp_path, "full")), on_epoch_end=lambda e, ev: seen.append((e, ev)),
               **quiet)
    logged = [r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [e for e, _ in seen] == [1, 2] == [r["epoch"] for r in logged]
    for (_, evals), record in zip(seen, logged):
        assert {k: evals[k] for k in ("top1", "top5", "loss")} == {k: record[k] for k in ("top1", "top5", "loss")}
    assert seen[-1][1]["top1"] == full["final_top1"]

    def stop_after_first(epoch, evals):
        if epoch == 1:
            raise _Stop(evals["top1"])

    with pytest.raises(_Stop) as stopped:
        fit(load_config("demo", tiny_overrides(tmp_path, "part")), on_epoch_end=stop_after_first, **quiet)
    assert stopped.value.args[0] == seen[0][1]["top1"]
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert (summary["epochs_done"], summary["complete"]) == (1, False)  # epoch 1 saved before the callback ran
    resumed = fit(load_config(str(tmp_path / "part" / "config.yaml")), resume=tmp_path / "part", **quiet)
    assert (resumed["epochs_done"], resumed["final_top1"]) == (2, full["final_top1"])
