"""Worker processes that run ``ofakd`` commands, and a scheduler that respects job dependencies.

Each job is one or more ``ofakd ARGV`` steps, run in-process by a spawned worker with one thread
(stdout/stderr to the job's log, or a step's stdout to a file of its own, e.g. ``ofakd eval --json``).
:func:`run_jobs` starts a job as soon as every job it ``needs`` has finished, highest ``priority``
first, so a worker never waits at a stage boundary while other work is ready (scratch runs fill the
time the teachers take). It prints one line per finished job with the count, the elapsed time and
an estimate of the time left (from the ``cost`` estimates of the jobs still to run).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

MLP_NAME = "mixer_tiny_bench"
"""A small MLP-Mixer (default patch 4, 4 blocks, 64 wide, 32 px; any of these overridable by kwargs).
timm's ``mixer_*``/``resmlp_*``/``gmlp_*`` names fix patch size, depth and width (passing them as
kwargs raises), so the benchmark registers this one config of timm's own ``MlpMixer`` in its processes."""


@dataclass
class Step:
    argv: list[str]
    stdout: str | None = None
    """Write this step's stdout to this file (stderr still goes to the job's log)."""


@dataclass
class Job:
    id: str
    steps: list[Step]
    log: str
    needs: tuple[str, ...] = ()
    priority: float = 0.0
    """Higher starts first among ready jobs."""
    cost: float = 1.0
    """Relative cost (roughly seconds on one idle core), for the progress estimate."""
    watch: str | None = None
    """A run folder whose ``metrics.jsonl`` the heartbeat reads while the job runs."""
    after: object = None
    """Called in the main process with the job when it succeeded (e.g. to mark a cache done)."""
    meta: dict = field(default_factory=dict)


def register_models() -> None:
    """Register :data:`MLP_NAME` with timm (idempotent)."""
    import timm
    from timm.models import register_model
    from timm.models.mlp_mixer import _create_mixer

    if timm.is_model(MLP_NAME):
        return

    def mixer_tiny_bench(pretrained=False, **kwargs):
        args = dict(patch_size=4, num_blocks=4, embed_dim=64, img_size=32)
        return _create_mixer(MLP_NAME, pretrained=pretrained, **dict(args, **kwargs))

    register_model(mixer_tiny_bench)


def init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    register_models()


def run_ofakd(argv: list[str]) -> int:
    """``ofakd ARGV`` in this process; its exit status (a crash is printed and counts as 1)."""
    from ofakd.cli import main

    try:
        return main(argv)
    except SystemExit as err:  # argparse
        return err.code if isinstance(err.code, int) else 1
    except Exception:
        import traceback

        traceback.print_exc()
        return 1


def run_job(job_id: str, steps: list[Step], log: str) -> tuple[str, int, float]:
    """Run the steps in order (stopping at the first failure); returns (job id, exit status, seconds)."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rc = 0
    with open(log, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        for step in steps:
            if step.stdout is None:
                rc = run_ofakd(step.argv)
            else:
                tmp = Path(step.stdout + ".tmp")
                with open(tmp, "w") as out, contextlib.redirect_stdout(out):
                    rc = run_ofakd(step.argv)
                if rc == 0:
                    os.replace(tmp, step.stdout)
            if rc != 0:
                break
    return job_id, rc, time.perf_counter() - start


def run_job_args(args: tuple[str, list[Step], str]) -> tuple[str, int, float]:
    """:func:`run_job` for ``Pool.imap_unordered``."""
    return run_job(*args)


def fmt_s(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def _latest(run_dir: str | None) -> str:
    """``epoch E, top-1 T`` from the last lines of a run's ``metrics.jsonl`` (empty when there is none yet)."""
    if run_dir is None:
        return ""
    import json

    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()[-30:]
    except OSError:
        return ""
    epoch, top1 = None, None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        epoch = entry.get("epoch", epoch)
        if entry.get("kind") == "eval":
            top1 = entry.get("top1")
    if epoch is None:
        return ""
    return f" (epoch {epoch}" + (f", last val top-1 {top1:.2f}" if isinstance(top1, (int, float)) else "") + ")"


def run_jobs(jobs: list[Job], workers: int, title: str = "jobs", heartbeat_s: float = 600) -> list[str]:
    """Run ``jobs`` on ``workers`` spawned processes in dependency order; returns the ids that failed
    (and those that could not run because a job they need failed). Jobs may only need jobs in the list."""
    if not jobs:
        return []
    by_id = {job.id: job for job in jobs}
    missing = {n for job in jobs for n in job.needs if n not in by_id}
    if missing:
        raise ValueError(f"jobs need unknown jobs: {sorted(missing)}")
    pending = sorted(jobs, key=lambda j: -j.priority)
    done: set[str] = set()
    failed: list[str] = []
    running: dict[str, object] = {}
    total_cost = sum(j.cost for j in jobs)
    spent_cost = 0.0
    start = time.perf_counter()
    print(f"== {title}: {len(jobs)} job(s) on {workers} worker(s)", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned workers before torch loads
    ctx = multiprocessing.get_context("spawn")
    finished_jobs: queue.Queue = queue.Queue()
    with ctx.Pool(workers, initializer=init_worker) as pool:
        finished_count = 0
        while pending or running:
            blocked = [j for j in pending if any(n in failed for n in j.needs)]
            for job in blocked:
                pending.remove(job)
                failed.append(job.id)
                print(f"   skipped {job.id}: needs a job that failed", flush=True)
            while len(running) < workers:
                ready = next((j for j in pending if all(n in done for n in j.needs)), None)
                if ready is None:
                    break
                pending.remove(ready)
                running[ready.id] = pool.apply_async(run_job, (ready.id, ready.steps, ready.log),
                                                     callback=finished_jobs.put,
                                                     error_callback=lambda err, i=ready.id: finished_jobs.put((i, 1, 0.0)))
            if not running:
                break
            try:
                job_id, rc, seconds = finished_jobs.get(timeout=heartbeat_s)
            except queue.Empty:  # a long job: say what runs and how far it got
                elapsed = time.perf_counter() - start
                print(f"   ... {fmt_s(elapsed)} elapsed; running: "
                      + "; ".join(f"{i}{_latest(by_id[i].watch)}" for i in running), flush=True)
                continue
            del running[job_id]
            job = by_id[job_id]
            finished_count += 1
            spent_cost += job.cost
            if rc == 0:
                done.add(job_id)
                if job.after is not None:
                    job.after(job)
            else:
                failed.append(job_id)
            elapsed = time.perf_counter() - start
            left = elapsed / spent_cost * (total_cost - spent_cost) if spent_cost else 0.0
            status = "ok" if rc == 0 else f"FAILED (exit {rc}, log {job.log})"
            print(f"   [{finished_count}/{len(jobs)}] {job_id}: {status} in {fmt_s(seconds)}"
                  f"  | elapsed {fmt_s(elapsed)}, ~{fmt_s(left)} left", flush=True)
    return failed
