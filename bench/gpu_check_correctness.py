"""The correctness checks of ``bench/gpu_check.py``: ofakd's own entry points run on the device, compared.

* ``precision_check``: a few steps of a method in float32, bfloat16 and float16 (GradScaler), eager, channels-last
  and compiled, each a run of the engine (``ofakd.engine.fit``, what ``ofakd distill`` runs) from the same
  initial weights on the same batches; every loss finite, and each step's total loss within ``LOSS_RTOL`` of the
  float32 eager run's.
* ``cache_equals_live``: ``ofakd.fit`` with a bf16 teacher, live and replayed from the teacher-output cache it
  records (``teacher_cache=``): the two students end equal.
* ``resume_equals_uninterrupted``: an ``ofakd.fit`` run that crashes inside its second epoch, resumed from its
  periodic checkpoint there (float16 with its GradScaler on a GPU, a drop-path student: the CUDA generator's state
  too), ends equal to an uninterrupted one.
* ``torchrun_check``: ``torchrun --nproc_per_node 1`` of a worker that starts an NCCL process group (gloo on CPU),
  all-reduces, and runs ``ofakd distill`` through ofakd's command line inside it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

import ofakd
from gpu_check_context import Context, Sizes, Skip, quiet
from ofakd.config import load_config
from ofakd.engine import fit
from ofakd.run_folder import read_metrics
from ofakd.teacher import LiveTeacher

LR = 1e-3
"""SGD's learning rate in every correctness run: small, so that the precisions' few steps stay on one path and
their losses compare step by step (at 0.01 the smoke run's bf16 KD losses drift 1.6 % from fp32's by step 2, at
1e-3 0.2 %), yet a step scaled wrongly (a GradScaler's 65536) still shows; SGD, as AdamW would magnify rounding in
near-zero gradients."""


@dataclass(frozen=True)
class Variant:
    label: str
    amp: str
    """train.amp: none (float32), bf16, fp16 (with the GradScaler)."""
    channels_last: bool = False
    compile: bool = False

    @property
    def precision(self) -> str:
        return {"none": "fp32"}.get(self.amp, self.amp)

    @property
    def slug(self) -> str:
        return "-".join([self.precision, *(["nhwc"] if self.channels_last else []), *(["compiled"] if self.compile else [])])


REFERENCE = Variant("fp32 eager", "none")
EAGER = (REFERENCE, Variant("fp32 channels-last", "none", channels_last=True), Variant("bf16 eager", "bf16"),
         Variant("fp16 eager + GradScaler", "fp16"))
"""Every method runs these; each also runs one compiled variant (compiling is the slow part on a GPU), chosen
so that across the methods compile meets bf16 with and without channels-last, and fp16 with its GradScaler."""


def train_losses(run: Path) -> list[dict[str, float]]:
    """Each step's total loss and its terms, from the run's metrics.jsonl."""
    return [{"loss": r["loss"], **r["losses"]} for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]


def all_finite(steps: list[dict[str, float]]) -> bool:
    return bool(steps) and all(math.isfinite(v) for step in steps for v in step.values())


def loss_agreement(reference: list[float], losses: list[float], rtol: float) -> dict:
    """The largest relative difference of ``losses`` from ``reference``, step by step, against ``rtol``."""
    if len(losses) != len(reference) or not losses:
        return {"max_rel_diff": None, "rtol": rtol, "pass": False}
    worst = max(abs(a - r) / max(abs(r), 1e-12) for a, r in zip(losses, reference))
    return {"max_rel_diff": worst, "rtol": rtol, "pass": math.isfinite(worst) and worst <= rtol}


def checkpoint(run: Path) -> dict:
    """The run's last.pt."""
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def state_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference of any tensor of two state dicts (inf when their keys or shapes differ)."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return math.inf
    return max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()), default=0.0)


def equality(ctx: Context, details: dict, runs: dict[str, Path], same: tuple[str, str], repeat: tuple[str, str]) -> bool:
    """Record how far the runs ``same`` are apart (weights and buffers of the distiller: student and method
    modules) against ``ctx.state_atol``, beside how far a plain repeat (``repeat``) is; the verdict."""
    states = {name: checkpoint(path)["distiller"] for name, path in runs.items()}
    diff = state_difference(states[same[0]], states[same[1]])
    details.update(compared=f"{same[0]} vs {same[1]}", max_abs_diff=diff, atol=ctx.state_atol,
                   data_path=json.loads((runs[same[0]] / "summary.json").read_text())["data_path"],
                   bitwise_equal=diff == 0.0, repeat_max_abs_diff=state_difference(*(states[r] for r in repeat)))
    return diff <= ctx.state_atol


# ----------------------------------------------------------------------------- losses across precisions


def precision_check(method: str, student: str, compiled: Variant):
    """The check of ``method`` with the map or token ``student``: the eager variants, then ``compiled``."""

    def run(ctx: Context, details: dict) -> bool:
        variants = (*EAGER, compiled)
        rows = [{"variant": v.label, "precision": v.precision, "channels_last": v.channels_last,
                 "compile": v.compile, "status": "not run"} for v in variants]
        details.update(method=method, student=getattr(ctx.sizes, f"{student}_student")["name"], steps=ctx.sizes.steps,
                       variants=rows)
        reference: list[float] | None = None
        for variant, row in zip(variants, rows):
            try:
                steps = run_variant(ctx, method, student, variant, row)
            except Skip as why:
                row.update(status="skipped", reason=str(why))
                continue
            except Exception as err:  # the next variant still runs
                row.update(status="error", reason=f"{type(err).__name__}: {err}"[:500])
                continue
            losses = [s["loss"] for s in steps]
            row.update(losses=losses, finite=all_finite(steps))
            if variant is REFERENCE:
                reference = losses
                row.update(status="pass" if row["finite"] else "fail")
                continue
            if reference is None:
                row.update(status="error", reason="no float32 eager run to compare with")
                continue
            agreement = loss_agreement(reference, losses, ctx.loss_rtol[variant.precision])
            row.update(reference_losses=reference, **{k: v for k, v in agreement.items() if k != "pass"})
            row["status"] = "pass" if agreement["pass"] and row["finite"] else "fail"
        return all(r["status"] in ("pass", "skipped") for r in rows)

    return run


def run_variant(ctx: Context, method: str, student: str, variant: Variant, row: dict) -> list[dict[str, float]]:
    """One engine run of ``variant``: ``steps`` SGD steps on the bundled digits (the ``demo`` recipe) at ``size``
    px; its per-step losses (and, for fp16, the GradScaler's final scale in ``row``)."""
    if variant.amp == "fp16" and not ctx.cuda:
        raise Skip("fp16 autocast needs a CUDA GPU (ofakd refuses it elsewhere)")
    s, size = ctx.sizes, [3, ctx.sizes.size, ctx.sizes.size]
    out = ctx.folder("precision", f"{method}-{student}")
    cfg = load_config("demo", [
        ("data.train_subset", s.batch * s.steps), ("data.val_subset", s.batch), ("train.batch_size", s.batch),
        ("train.epochs", 1), ("train.log_every", 1), ("train.optimizer", "sgd"), ("train.lr", LR),
        ("train.warmup_epochs", 0), ("train.eval_teacher", False), ("train.device", str(ctx.device)),
        ("train.amp", variant.amp), ("train.channels_last", variant.channels_last), ("train.compile", variant.compile),
        ("teacher", {**s.teacher, "input_size": size}),
        ("student", {**getattr(s, f"{student}_student"), "input_size": size}),
        ("method", {"name": method}), ("run.out_dir", str(out)), ("run.name", variant.slug),
    ])
    started = time.monotonic()
    try:
        with ctx.compiling():
            summary = fit(cfg, overwrite=True, progress=False, tensorboard=False, log=quiet)
    finally:
        if variant.compile:
            torch._dynamo.reset()  # the next variant compiles afresh
    row.update(seconds=round(time.monotonic() - started, 2), data_path=summary["data_path"])
    if not summary["complete"]:
        raise RuntimeError(f"the run stopped after {summary['steps']} steps")
    if variant.amp == "fp16":
        row["grad_scale_end"] = checkpoint(out / variant.slug)["scaler"].get("scale")
    return train_losses(out / variant.slug)


# ----------------------------------------------------------------------------- a cached teacher, a resumed run


EQUALITY_LR = 0.05
"""SGD's learning rate where two runs must end equal: large enough that one step computed differently (another
drop-path mask, a teacher's other logits) moves the weights by ~1e-3, far past rounding."""


class SimulatedCrash(Exception):
    """The data set stopped the run, as a killed process would (last.pt holds the last periodic checkpoint)."""


class NoisyClasses(Dataset):
    """``n`` images of noise around a level per class (10 classes), flipped at random by torch's global generator
    (as a torchvision transform draws): ofakd's keyed views make the same flips in every run. With ``crash_after``,
    loading item number ``crash_after + 1`` raises :class:`SimulatedCrash`."""

    classes = [f"level {k}" for k in range(10)]

    def __init__(self, n: int, size: int, seed: int, crash_after: int | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(0, 10, (n,), generator=g)
        self.images = torch.randn(n, 3, size, size, generator=g) + (self.targets.view(-1, 1, 1, 1) - 4.5) / 3
        self.crash_after, self.loaded = crash_after, 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        self.loaded += 1
        if self.crash_after is not None and self.loaded > self.crash_after:
            raise SimulatedCrash(f"item {self.loaded}")
        image = self.images[index]
        return (image.flip(-1) if torch.rand(()) < 0.5 else image), int(self.targets[index])


def api_distiller(sizes: Sizes, student: dict):
    """OFA from a bf16 teacher (its logits are bfloat16 values, which the cache's fp16 rows hold exactly) to
    ``student``, through the Python API, from the same initial weights every time."""
    torch.manual_seed(0)
    teacher = LiveTeacher(ofakd.create_model(sizes.teacher["name"], num_classes=10, **sizes.teacher["kwargs"]), amp="bf16")
    torch.manual_seed(1)
    model = ofakd.create_model(student["name"], num_classes=10, **student["kwargs"])
    return ofakd.create_distiller("ofa", teacher=teacher, student=model, input_size=(3, sizes.size, sizes.size))


def api_settings(ctx: Context, out: Path, amp: str) -> dict:
    """``ofakd.fit`` settings of the equality checks: 2 epochs of ``steps`` steps, SGD."""
    return dict(out_dir=out, epochs=2, batch_size=ctx.sizes.batch, optimizer="sgd", lr=EQUALITY_LR, amp=amp,
                device=str(ctx.device), progress=False, tensorboard=False, log=quiet)


def cache_equals_live(ctx: Context, details: dict) -> bool:
    s = ctx.sizes
    out = ctx.folder("cache")
    train, val = NoisyClasses(s.batch * s.steps, s.size, seed=0), NoisyClasses(s.batch, s.size, seed=1)
    runs = {}
    for name, cache in (("live", None), ("live-repeat", None), ("cached", out / "teacher-cache")):
        runs[name] = ofakd.fit(api_distiller(s, s.map_student), train, val, name=name, teacher_cache=cache,
                               overwrite=True, **api_settings(ctx, out, "bf16"))
    details["entry_point"] = "ofakd.fit(create_distiller('ofa', LiveTeacher(amp='bf16'), ...), teacher_cache=)"
    return equality(ctx, details, runs, same=("live", "cached"), repeat=("live", "live-repeat"))


def resume_equals_uninterrupted(ctx: Context, details: dict) -> bool:
    """A run that crashes inside its second epoch, resumed from its periodic checkpoint one step into that epoch
    (the sampler's skip, every generator's state, the CUDA one for drop-path, the GradScaler's state under fp16),
    ends equal to an uninterrupted run."""
    s = ctx.sizes
    out = ctx.folder("resume")
    amp = "fp16" if ctx.cuda else "bf16"
    student = {**s.token_student, "kwargs": {**s.token_student["kwargs"], "drop_path_rate": 0.1}}
    settings = {**api_settings(ctx, out, amp), "checkpoint_every": s.steps + 1}  # one step into epoch 2
    n, val = s.batch * s.steps, NoisyClasses(s.batch, s.size, seed=1)
    runs = {name: out / name for name in ("uninterrupted", "uninterrupted-repeat", "crashed-resumed")}
    for name in ("uninterrupted", "uninterrupted-repeat"):
        ofakd.fit(api_distiller(s, student), NoisyClasses(n, s.size, 0), val, name=name, overwrite=True, **settings)
    crashing = NoisyClasses(n, s.size, 0, crash_after=(s.steps + 2) * s.batch)  # fit's check of a batch, 1 epoch, 1 step
    try:
        ofakd.fit(api_distiller(s, student), crashing, val, name="crashed-resumed", overwrite=True, **settings)
        raise RuntimeError("the crashing data set did not stop the run")
    except SimulatedCrash:
        pass
    saved = checkpoint(runs["crashed-resumed"])
    ofakd.fit(api_distiller(s, student), NoisyClasses(n, s.size, 0), val, name="crashed-resumed", resume=True,
              **settings)
    scales = [checkpoint(runs[n])["scaler"].get("scale") for n in ("uninterrupted", "crashed-resumed")]
    details.update(amp=amp, student=student["name"], drop_path_rate=0.1, resumed_from_step=saved["step"],
                   resumed_inside_epoch=saved["epoch_step"] > 0, grad_scale_end=scales if amp == "fp16" else None)
    equal = equality(ctx, details, runs, same=("uninterrupted", "crashed-resumed"),
                     repeat=("uninterrupted", "uninterrupted-repeat"))
    return equal and details["resumed_inside_epoch"] and scales[0] == scales[1]


# ----------------------------------------------------------------------------- torchrun


def torchrun_check(ctx: Context, details: dict) -> bool:
    """``torchrun --nproc_per_node 1`` of this script's worker (see :func:`torchrun_worker`)."""
    out = ctx.folder("torchrun")
    result = out / "worker.json"
    result.unlink(missing_ok=True)
    script = Path(__file__).with_name("gpu_check.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", str(script),
               "--torchrun-worker", str(out), "--device", str(ctx.device), *(["--smoke"] if ctx.smoke else [])]
    code, output = run_process(command, timeout=max(ctx.seconds_left() - 5, 1))
    details.update(command="torchrun --standalone --nproc_per_node 1 bench/gpu_check.py --torchrun-worker ...",
                   exit_code=code)
    if code != 0 or not result.is_file():
        details["output_tail"] = output[-3000:]
        return False
    worker = json.loads(result.read_text())
    summary = json.loads((out / "run" / "summary.json").read_text())
    losses = train_losses(out / "run")
    expected = "nccl" if ctx.cuda else "gloo"
    details.update(backend=worker["backend"], expected_backend=expected, world_size=worker["world_size"],
                   all_reduce=worker["all_reduce"], cli_exit_code=worker["exit_code"], run_device=summary["device"],
                   data_path=summary["data_path"],
                   run_complete=summary["complete"], losses_finite=all_finite(losses))
    return (worker["backend"] == expected and worker["world_size"] == 1 and worker["all_reduce"] == 1.0
            and worker["exit_code"] == 0 and summary["complete"] and all_finite(losses))


def run_process(command: list[str], timeout: float) -> tuple[int | None, str]:
    """Run ``command`` in a session of its own; past ``timeout`` seconds the whole session (torchrun and the
    workers it started) is killed. Returns (exit status or None when killed, output)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except BaseException:  # the timeout, or this check's own budget running out
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        if sys.exc_info()[0] is subprocess.TimeoutExpired:
            return None, output + f"\n[killed after {timeout:.0f}s]"
        raise


def torchrun_worker(out: Path, device: str, sizes: Sizes) -> None:
    """Inside torchrun: start the process group (NCCL for a GPU, gloo for a CPU) as a user's script would, check one
    all-reduce, then run ``ofakd distill`` through the command line in that group; write ``out/worker.json``."""
    from datetime import timedelta

    import torch.distributed as dist

    from ofakd.cli import main as ofakd_main

    local_rank = int(os.environ["LOCAL_RANK"])
    placed = torch.device("cuda", local_rank) if device.startswith("cuda") else torch.device("cpu")
    if placed.type == "cuda":
        torch.cuda.set_device(placed)
    dist.init_process_group("nccl" if placed.type == "cuda" else "gloo", timeout=timedelta(seconds=120),
                            device_id=placed if placed.type == "cuda" else None)
    total = torch.ones(1, device=placed)
    dist.all_reduce(total)
    model = {**sizes.map_student, "input_size": [3, sizes.size, sizes.size]}
    code = ofakd_main([
        "distill", "--config", "demo", "--method", "ofa", "--device", str(placed), "--epochs", "1",
        "--data.train_subset", str(sizes.batch * sizes.steps), "--data.val_subset", str(sizes.batch),
        "--train.batch_size", str(sizes.batch), "--train.eval_teacher", "false", "--train.warmup_epochs", "0",
        "--teacher", sizes.teacher["name"], "--teacher.kwargs", json.dumps(sizes.teacher["kwargs"]),
        "--teacher.input_size", json.dumps(model["input_size"]), "--teacher-random-init",
        "--student", model["name"], "--student.kwargs", json.dumps(model["kwargs"]),
        "--student.input_size", json.dumps(model["input_size"]),
        "--out-dir", str(out), "--name", "run", "--overwrite",
    ])
    (out / "worker.json").write_text(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                                                 "all_reduce": total.item(), "exit_code": code}))
    dist.destroy_process_group()
