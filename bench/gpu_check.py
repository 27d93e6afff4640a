"""One prepared check of every CUDA path ofakd has, and the throughput table, in one command: about 8 minutes on one
GPU at most, every check under a time budget of its own.

    python bench/gpu_check.py --device cuda --out bench-out/gpu-check     # gpu_check.json + gpu_check.md
    python bench/gpu_check.py --device cpu --smoke --out /tmp/gpu-check   # the same code paths, tiny (the test's mode)
    python bench/gpu_check.py --device cuda --only speed_resnet50_to_deit_t --out ...   # some checks again

Correctness (``gpu_check_correctness.py``): a few steps of OFA with a map student and with a token student, and of
KD, in float32, bfloat16 and float16 with its GradScaler, eager, channels-last and compiled: every loss finite, each
step's loss within a stated tolerance of the float32 eager run's; a run from the teacher-output cache equals the
live run; a resumed run equals an uninterrupted one; ``torchrun --nproc_per_node 1`` with an NCCL process group runs
``ofakd distill``. Speed (``gpu_check_speed.py``): at 224 px, batch 128, bf16, the images/s and peak memory of the
engine's step for the student alone and for OFA with a live and a cached teacher, DeiT-T -> ResNet18 and
ResNet50 -> DeiT-T, and the teacher-cache recording's images/s; CIFAR-size data end to end on the per-image and the
in-memory batched data path. Every check runs ofakd's own entry points (the engine, ``ofakd.fit``, the cache recorder, the command
line); nothing is re-implemented here.

A check that fails, raises or runs out of its budget is reported with what it compared and the next one runs; a
check whose budget no longer fits in ``--budget-s`` is skipped, saying so. The device, driver and versions head the
report. Exit status 0 when no check failed.
"""

from __future__ import annotations  # noqa: I001 - ofakd first: it sets OMP_WAIT_POLICY before torch loads

import ofakd

import argparse
import contextlib
import datetime
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from gpu_check_context import GPU, SMOKE, Context, OutOfTime, Skip, release_memory
from gpu_check_correctness import (
    Variant,
    cache_equals_live,
    precision_check,
    resume_equals_uninterrupted,
    torchrun_check,
    torchrun_worker,
)
from gpu_check_report import markdown
from gpu_check_speed import cifar_loaders, speed_check

from ofakd.finite_json import dumps as finite_dumps

MIN_BUDGET_S = 5.0
"""A check is not started with less time than this (or its own budget, when smaller) left of ``--budget-s``."""


@dataclass(frozen=True)
class Check:
    name: str
    what: str
    run: Callable[[Context, dict], bool]
    """Fills the details as it goes (kept when it stops early); True: pass, False: fail; raises Skip to skip."""
    budget_s: float
    """Seconds on a GPU; the smoke run on a CPU allows ``SMOKE_BUDGET_S`` for each."""


SMOKE_BUDGET_S = 120.0
STATUSES = ("pass", "fail", "error", "timeout", "skipped")
GPU_TOTAL_S = 450.0
"""Seconds for all checks on a GPU: with imports, the environment and the report, under 8 minutes."""
CHECKS = [  # each method one compiled variant besides gpu_check_correctness.EAGER (compiling is the slow part)
    Check("precision_ofa_map", "OFA, map student: losses of fp32/bf16/fp16 eager, channels-last, compiled vs fp32",
          precision_check("ofa", "map", Variant("bf16 compiled, channels-last", "bf16", channels_last=True,
                                                compile=True)), 80),
    Check("precision_ofa_token", "OFA, token student: the same",
          precision_check("ofa", "token", Variant("bf16 compiled", "bf16", compile=True)), 80),
    Check("precision_kd", "KD, map student: the same",
          precision_check("kd", "map", Variant("fp16 compiled + GradScaler", "fp16", compile=True)), 55),
    Check("cache_equals_live", "ofakd.fit from its recorded teacher cache vs live (bf16 teacher): final weights",
          cache_equals_live, 25),
    Check("resume_equals_uninterrupted", "ofakd.fit crashed inside epoch 2 and resumed vs uninterrupted (fp16 on "
          "CUDA, drop-path): final weights, GradScaler", resume_equals_uninterrupted, 25),
    Check("torchrun_nccl", "torchrun --nproc_per_node 1, NCCL group (gloo on CPU), all-reduce, ofakd distill",
          torchrun_check, 35),
    *(Check(p.name, f"{p.label}: images/s and peak memory of the step, cache recording", speed_check(p.name), 60)
      for p in GPU.pairs),
    Check("speed_cifar_loaders", "CIFAR-size data end to end: per-image vs in-memory batched data path", cifar_loaders,
          30),
]


# ----------------------------------------------------------------------------- running checks under budgets


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`OutOfTime` in this (main) thread once ``seconds`` have passed."""

    def expire(_signum, _frame):
        raise OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_checks(checks: list[Check], ctx: Context, *, total_s: float, smoke: bool,
               log: Callable[[str], None] = print,
               after_each: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Each check under its budget (none past ``total_s`` from now); one result each, whatever happened.
    ``after_each(results so far)`` runs after every check (the report is written then, so a killed run keeps it)."""
    end = time.monotonic() + total_s
    results = []
    for check in checks:
        own = SMOKE_BUDGET_S if smoke else check.budget_s
        budget = min(own, end - time.monotonic())
        result = {"name": check.name, "what": check.what, "budget_s": round(budget, 1), "details": {}}
        results.append(result)
        if budget < min(own, MIN_BUDGET_S):
            result.update(status="skipped", seconds=0.0, reason=f"no time left of the {total_s:g}s total")
            log(f"{check.name}: skipped (no time left)")
            continue
        started = time.monotonic()
        ctx.deadline = started + budget
        try:
            with time_limit(budget):
                passed = check.run(ctx, result["details"])
            result.update(status="pass" if passed else "fail", reason=None)
        except Skip as why:
            result.update(status="skipped", reason=str(why))
        except OutOfTime:
            result.update(status="timeout", reason=f"ran past its {budget:.3g}s budget; the details hold what it did")
        except Exception as err:
            result.update(status="error", reason=f"{type(err).__name__}: {err}"[:1000],
                          traceback=traceback.format_exc()[-4000:])
        finally:
            result["seconds"] = round(time.monotonic() - started, 2)
            release_memory(ctx.device)
        log(f"{check.name}: {result['status']} ({result['seconds']:.1f}s of {budget:.0f}s)"
            + (f" - {result['reason']}" if result.get("reason") else ""))
        if after_each is not None:
            after_each(results)
    return results


# ----------------------------------------------------------------------------- where it ran


def environment(device: torch.device, smoke: bool) -> dict:
    """The device, its driver and the versions, as the report's head."""
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "smoke" if smoke else "full", "device": str(device),
        "torch": torch.__version__, "timm": timm.__version__, "ofakd": ofakd.__version__,
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "git_commit": _output(["git", "rev-parse", "HEAD"]),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        env.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1), bf16_supported=torch.cuda.is_bf16_supported(),
                   driver=_output(["nvidia-smi", f"--id={index}", "--query-gpu=driver_version", "--format=csv,noheader"]),
                   cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    else:
        env.update(device_name=_cpu_name(), driver=None)
    return env


def _output(command: list[str]) -> str | None:
    """A command's first output line, or None when it cannot run here."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


# ----------------------------------------------------------------------------- the command


def parse_tolerance(text: str) -> tuple[str, float]:
    precision, _, value = text.partition("=")
    if precision not in ("fp32", "bf16", "fp16") or not value:
        raise argparse.ArgumentTypeError(f"expected PRECISION=RTOL with PRECISION fp32, bf16 or fp16, got {text!r}")
    return precision, float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny models at 32 px, few steps (seconds on a CPU)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/gpu-check"), help="gpu_check.json, gpu_check.md")
    parser.add_argument("--work", type=Path, default=None, help="run folders and caches (default: a temporary folder)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help=f"seconds for all checks together (default {GPU_TOTAL_S:g} on a GPU: with start-up, under 8 minutes)")
    parser.add_argument("--only", nargs="+", choices=[c.name for c in CHECKS], metavar="CHECK",
                        help=f"run these checks only: {', '.join(c.name for c in CHECKS)}")
    parser.add_argument("--tolerance", type=parse_tolerance, action="append", default=[], metavar="PRECISION=RTOL",
                        help="another loss tolerance for a precision, e.g. bf16=0.05")
    parser.add_argument("--torchrun-worker", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else GPU
    if args.torchrun_worker is not None:  # inside `torchrun`, started by the torchrun_nccl check
        torchrun_worker(args.torchrun_worker, args.device, sizes)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible here; use --device cpu --smoke for the CPU smoke run")
    sys.stdout.reconfigure(line_buffering=True)  # each check's line as it ends, also into a log file
    checks = [c for c in CHECKS if args.only is None or c.name in args.only]
    total_s = args.budget_s or (len(checks) * SMOKE_BUDGET_S if args.smoke else GPU_TOTAL_S)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(device, args.smoke)
    print(f"gpu_check on {env['device_name']} ({device}), torch {env['torch']}, {len(checks)} checks, "
          f"{total_s:.0f}s at most", flush=True)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        ctx = Context(device=device, sizes=sizes, work=work, smoke=args.smoke)
        ctx.loss_rtol.update(dict(args.tolerance))

        def write(results: list[dict]) -> dict:
            report = {"environment": env, "loss_rtol": ctx.loss_rtol, "state_atol": ctx.state_atol,
                      "seconds": round(time.monotonic() - started, 1), "checks": results,
                      "counts": {s: sum(r["status"] == s for r in results) for s in STATUSES}}
            (args.out / "gpu_check.json").write_text(finite_dumps(report, indent=2) + "\n")
            (args.out / "gpu_check.md").write_text(markdown(report))
            return report

        report = write(run_checks(checks, ctx, total_s=total_s, smoke=args.smoke, after_each=write))
    print(f"{report['counts']} in {report['seconds']:.0f}s -> {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return 1 if any(report["counts"][s] for s in ("fail", "error", "timeout")) else 0


if __name__ == "__main__":
    sys.exit(main())
