"""What a run says about itself: its first log line and ``summary.json`` (rewritten after every epoch), read from
the :class:`~ofakd.engine.trainer.Trainer` it is given (``run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .. import __version__
from ..models import count_parameters

if TYPE_CHECKING:
    from .trainer import Trainer


def run_line(run: Trainer) -> str:
    """The run's first log line: folder, method and models, data, device, threads, precision, processes."""
    cfg, setup = run.cfg, run.setup
    note = setup.teacher.run_note() if setup.teacher is not None else ""
    threads = f"{run.threads} CPU thread{'s' if run.threads != 1 else ''}"
    return (
        f"run {run.folder.path}: {cfg.method.name} {cfg.teacher.name or '-'} -> {cfg.student.name} on "
        f"{cfg.data.name} ({len(setup.bundle.train_loader.dataset)} train / {len(setup.bundle.val_loader.dataset)} "
        f"val images, {setup.bundle.path.name.replace('_', '-')} data path), device {run.device} ({threads}), "
        f"amp {run.precision.mode}"
        + (f", {note}" if note else "")
        + (f", {run.dist.world_size} processes ({run.dist.backend}), global batch "
           f"{cfg.train.batch_size * run.dist.world_size}" if run.dist.distributed else "")
    )


def summary(run: Trainer) -> dict:
    """``summary.json``: what the run is and what it reached so far (``complete`` once every epoch is done)."""
    cfg, setup, state = run.cfg, run.setup, run.state
    uses_teacher = bool(setup.distiller.needs_teacher)  # live or from a teacher cache
    final = state.final
    out = {
        "name": run.folder.path.name,
        "method": cfg.method.name,
        "teacher": cfg.teacher.name if uses_teacher else None,
        "student": cfg.student.name,
        "dataset": cfg.data.name,
        "seed": cfg.train.seed,
        "data_seed": cfg.data_seed,
        "epochs": cfg.train.epochs,
        "best_top1": state.best.top1 if state.best.epoch else None,
        "best_top5": state.best.top5 if state.best.epoch else None,
        "best_epoch": state.best.epoch or None,
        "final_top1": final.get("top1"),
        "final_top5": final.get("top5"),
        "student_params": count_parameters(setup.student),
        "branch_params": count_parameters(setup.distiller.branches),
        "wall_time_s": round(state.wall_time_s, 3),
        "images_per_s": round(state.images_per_s, 2),
        "ema": run.ema is not None,
        # extras
        "best_from": state.best.source if state.best.epoch else None,
        "epochs_done": state.epoch,
        "complete": state.epoch >= cfg.train.epochs,
        "steps": state.step,
        "skipped_steps": run.numerics.skipped,
        "final_ema_top1": final.get("ema_top1"),
        "final_ema_top5": final.get("ema_top5"),
        "teacher_top1": state.teacher_eval["top1"] if state.teacher_eval else None,
        "teacher_top5": state.teacher_eval["top5"] if state.teacher_eval else None,
        "teacher_checkpoint": cfg.teacher.checkpoint if uses_teacher else None,
        "method_options": cfg.method.options,
        "num_classes": setup.bundle.num_classes,
        "train_images": len(setup.bundle.train_loader.dataset),
        "val_images": len(setup.bundle.val_loader.dataset),
        "fingerprint": setup.bundle.fingerprint,
        "data_path": setup.bundle.path.name,
        "device": str(run.device),
        "amp": run.precision.mode,
        "world_size": run.dist.world_size,
        "global_batch": cfg.train.batch_size * run.dist.world_size,
        "ofakd_version": __version__,
        "torch_version": torch.__version__,
    }
    return out
