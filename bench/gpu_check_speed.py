"""The speed checks of ``bench/gpu_check.py``: the engine's own training step, timed on the device.

``speed_check(pair)``: for the pair's teacher -> student, at ``speed_size`` px and batch ``speed_batch`` under bf16
autocast, with contiguous and channels-last images:

* the teacher-output cache recorded by ``ofakd.cache.record_cache`` (what ``ofakd cache record`` runs) over one
  epoch of an ImageFolder of JPEGs (``speed_classes`` classes): its images/s, loader included;
* images/s of the training step ``ofakd distill`` runs (a ``Trainer`` built from the student family's shipped
  recipe, its step context, ``train_one_epoch``) for the student alone, OFA with the live teacher and OFA with
  the teacher replayed from that cache; one batch from the run's own loader, on the device beforehand and fed
  to every step, so loading is outside the timing (the cached teacher still reads a recorded row per step);
* peak memory of each (CUDA: peak allocated, everything the variant holds; CPU: resident-set growth), and on
  CUDA the synchronizing calls one timed round makes.

``cifar_loaders``: CIFAR-size data end to end through ``fit`` on the per-image and the in-memory batched data
path (``data.loader``), images/s and peak memory of each.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import torch

from data_path import write_cifar10
from gpu_check_context import Context, Pair, quiet, release_memory
from loader import write_jpegs
from ofakd.cache import record_cache
from ofakd.config import load_config
from ofakd.engine import Trainer, fit
from ofakd.engine.loop import train_one_epoch
from ofakd.run_folder import read_metrics
from overhead import cuda_syncs
from throughput import PeakMemory, sync

VARIANTS = ("student only", "OFA live teacher", "OFA cached teacher")


def image_folder(ctx: Context) -> Path:
    """An ImageFolder of one epoch of JPEGs at the speed size, written once per run of the checks."""
    if "images" not in ctx.shared:
        s = ctx.sizes
        root = ctx.folder("speed", "images")
        shutil.rmtree(root)  # a --work folder used before may hold another size's images
        write_jpegs(root, s.speed_batch * s.speed_steps, s.speed_size, classes=s.speed_classes)
        ctx.shared["images"] = root
    return ctx.shared["images"]


def pair_overrides(ctx: Context, pair: Pair, root: Path) -> list[tuple[str, object]]:
    s, size = ctx.sizes, [3, ctx.sizes.speed_size, ctx.sizes.speed_size]
    return [
        ("data.root", str(root)), ("data.workers", 0), ("train.batch_size", s.speed_batch), ("train.epochs", 1),
        ("train.warmup_epochs", 0), ("train.log_every", s.speed_steps), ("train.eval_teacher", False),
        ("train.amp", "bf16"), ("train.device", str(ctx.device)),
        ("teacher", {"name": pair.teacher, "kwargs": pair.teacher_kwargs, "input_size": size, "random_init": True}),
        ("student", {"name": pair.student, "kwargs": pair.student_kwargs, "input_size": size}),
        ("method", {"name": "ofa"}),
    ]


def speed_check(name: str):
    """The check of the pair ``name`` of the run's sizes (tiny models stand in for the smoke run)."""

    def run(ctx: Context, details: dict) -> bool:
        s = ctx.sizes
        pair, device = next(p for p in s.pairs if p.name == name), ctx.device
        out = ctx.folder("speed", pair.name)
        base = pair_overrides(ctx, pair, image_folder(ctx))
        details.update(pair=pair.label, teacher=pair.teacher, student=pair.student, recipe=pair.student_recipe,
                       size=s.speed_size, batch=s.speed_batch, amp="bf16", classes=s.speed_classes,
                       steps_per_round=s.speed_steps, rounds=s.speed_rounds, rows=[])
        cache = out / "teacher-cache"
        details["recording"] = record_teacher(ctx, load_config(pair.student_recipe, [
            *base, ("data.workers", s.workers), ("run.out_dir", str(out))]), cache)
        release_memory(device)
        for channels_last in (False, True):
            for variant in VARIANTS:
                overrides = [*base, ("train.channels_last", channels_last), ("run.out_dir", str(out)),
                             ("run.name", f"{variant}{' nhwc' if channels_last else ''}".replace(" ", "-"))]
                if variant == "student only":
                    overrides += [("method", {"name": "vanilla"}), ("teacher", {})]
                elif variant == "OFA cached teacher":
                    overrides += [("teacher.cache", str(cache))]
                row = {"variant": variant, "channels_last": channels_last,
                       **time_steps(ctx, load_config(pair.student_recipe, overrides), variant)}
                details["rows"].append(row)
                release_memory(device)  # the variant's models and optimizer state, before the next is built
        for row in details["rows"]:
            alone = next(r for r in details["rows"] if r["variant"] == "student only"
                         and r["channels_last"] == row["channels_last"])
            row["x_student_only"] = row["images_per_s"] / alone["images_per_s"]
        return all(r["images_per_s"] > 0 for r in details["rows"])

    return run


def record_teacher(ctx: Context, cfg, cache: Path) -> dict:
    """Record the teacher's logits over the epoch's views with ``record_cache``; its images/s end to end (the
    teacher built, the loader's workers started) and steady (from the first batch's end to the last's)."""
    ends: list[float] = []
    started = time.perf_counter()
    record_cache(cfg, cache, device=ctx.device, overwrite=True, log=quiet,
                 on_step=lambda *_: ends.append(time.perf_counter()))
    seconds = time.perf_counter() - started
    images = len(ends) * cfg.train.batch_size
    steady = (len(ends) - 1) * cfg.train.batch_size / (ends[-1] - ends[0]) if len(ends) > 1 else None
    return {"images": images, "seconds": round(seconds, 3), "images_per_s": images / seconds,
            "steady_images_per_s": steady, "workers": cfg.data.workers}


def time_steps(ctx: Context, cfg, variant: str) -> dict:
    """The engine's training step of one variant: images/s (median over rounds), peak memory, CUDA syncs."""
    trainer = Trainer(cfg, overwrite=True, progress=False, tensorboard=False, log=quiet)
    try:
        trainer._prepare()  # what fit() builds: the distiller on the device, optimizer, schedule, EMA, compile
        return measure(ctx, trainer, variant)
    finally:
        if trainer.lock is not None:
            trainer.lock.release()


def measure(ctx: Context, trainer: Trainer, variant: str) -> dict:
    s, device, setup = ctx.sizes, ctx.device, trainer.setup
    setup.bundle.train_sampler.set_epoch(0)
    batch = [t.to(device) for t in next(iter(setup.bundle.train_loader))]
    step_context, done = trainer._step_context(), [0]

    def round_of(steps: int) -> None:
        if setup.teacher is not None:
            setup.teacher.start_epoch(0)  # a cached teacher replays the recorded epoch from its first row
        train_one_epoch(step_context, [batch] * steps, epoch=1, start_step=done[0], on_log=lambda _r: None)
        done[0] += steps

    round_of(s.speed_warmup)  # allocator, cuDNN's kernel choice, the optimizer's state
    seconds = []
    with PeakMemory(device) as peak:
        for _ in range(s.speed_rounds):
            sync(device)
            start = time.perf_counter()
            round_of(s.speed_steps)
            sync(device)
            seconds.append((time.perf_counter() - start) / s.speed_steps)
    row = {"images_per_s": s.speed_batch / statistics.median(seconds), "step_s": statistics.median(seconds),
           "step_growth_mib": peak.peak / 2**20}
    if device.type == "cuda":
        row.update(peak_allocated_mib=torch.cuda.max_memory_allocated(device) / 2**20,
                   peak_reserved_mib=torch.cuda.max_memory_reserved(device) / 2**20,
                   cuda_syncs_per_round=cuda_syncs(lambda: round_of(s.speed_steps), device))
    if variant == "OFA live teacher":
        row["teacher_forward_images_per_s"] = teacher_forward_rate(ctx, setup.teacher, batch[0], trainer.precision)
    return row


def teacher_forward_rate(ctx: Context, teacher, images: torch.Tensor, precision) -> float:
    """Images/s of the live teacher's forward alone, as the step runs it (inference mode, the run's autocast)."""
    s = ctx.sizes
    with precision.autocast():
        teacher(images)
        sync(ctx.device)
        start = time.perf_counter()
        for _ in range(s.speed_steps):
            teacher(images)
        sync(ctx.device)
    return s.speed_steps * images.shape[0] / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- CIFAR-size data, both data paths


def cifar_loaders(ctx: Context, details: dict) -> bool:
    """CIFAR-size data (32-px RGB images in CIFAR-10's files, as bench/data_path.py writes them) end to end through
    ``fit``, the map student alone at 32 px (recipe ``cifar-cnn``), on the per-image path (PIL transforms in
    ``workers`` loader processes) and on the in-memory batched path (``data.loader: batched``: the images on the
    device, augmented there): images/s of the second epoch, loading included, and peak memory of the whole run."""
    s, device = ctx.sizes, ctx.device
    root = ctx.folder("cifar", "data")
    write_cifar10(root, train=s.speed_batch * s.cifar_steps, test=s.speed_batch)
    details.update(student=s.map_student["name"], size=32, batch=s.speed_batch, steps_per_epoch=s.cifar_steps,
                   amp="bf16", rows=[])
    for loader in ("per_image", "batched"):
        cfg = load_config("cifar-cnn", [
            ("data.name", "cifar10"), ("data.root", str(root)), ("data.loader", loader),
            ("data.workers", s.workers if loader == "per_image" else 0),
            ("train.batch_size", s.speed_batch), ("train.epochs", 2), ("train.warmup_epochs", 0),
            ("train.log_every", s.cifar_steps), ("train.amp", "bf16"), ("train.device", str(device)),
            ("method", {"name": "vanilla"}), ("teacher", {}), ("student", {**s.map_student, "input_size": [3, 32, 32]}),
            ("run.out_dir", str(ctx.folder("cifar"))), ("run.name", loader),
        ])
        with PeakMemory(device) as peak:
            summary = fit(cfg, overwrite=True, progress=False, tensorboard=False, log=quiet)
        second = [r["images_per_s"] for r in read_metrics(ctx.work / "cifar" / loader / "metrics.jsonl")
                  if r["kind"] == "train" and r["epoch"] == 2]
        row = {"loader": loader, "data_path": summary["data_path"], "workers": cfg.data.workers,
               "images_per_s": statistics.median(second), "growth_mib": peak.peak / 2**20}
        if device.type == "cuda":
            row["peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        details["rows"].append(row)
        release_memory(device)
    return all(r["images_per_s"] > 0 and r["data_path"] == r["loader"] for r in details["rows"])
