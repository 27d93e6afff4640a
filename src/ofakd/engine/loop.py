"""One training epoch: batches through the distiller, backward, optimizer step, EMA, schedule, logs.

Per step::

    logits, losses = distiller(images, targets[, sample_indices=idx])
    loss = sum(losses.values())
    backward (+ clip), optimizer step, distiller.on_step_end(), EMA update, scheduler.step_update

Targets become soft rows through timm ``Mixup`` (applied in the data loader, label smoothing folded
in) or, without mixup, through label smoothing here; every distiller accepts soft target rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from timm.data.mixup import one_hot

from ..errors import OfakdError
from .precision import Precision


@dataclass
class StepContext:
    """What one epoch needs besides the batches."""

    distiller: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    precision: Precision
    device: torch.device
    num_classes: int
    mixup: Callable | None = None
    smoothing: float = 0.0
    clip_grad: float | None = None
    ema: object | None = None
    log_every: int = 50
    teacher_logits: Callable | None = None
    """Optional ``(batch) -> teacher logits`` reader (a teacher cache's ``EpochReader``); None runs the teacher."""


@dataclass
class EpochResult:
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    loss_sum: float = 0.0
    last_lr: float = 0.0
    loss_sums: dict[str, float] = field(default_factory=dict)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.steps, 1)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def soft_targets(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label-smoothed rows: ``1 - s + s/K`` on the target, ``s/K`` elsewhere (timm's convention)."""
    off = smoothing / num_classes
    return one_hot(targets, num_classes, on_value=1.0 - smoothing + off, off_value=off)


def train_one_epoch(
    ctx: StepContext,
    loader,
    *,
    epoch: int,
    start_step: int,
    on_log: Callable[[dict], None],
    on_step: Callable[[float, float, float], None] | None = None,
) -> EpochResult:
    """Train ``ctx.distiller`` for one pass over ``loader``. ``epoch`` counts from 1 (for logs);
    ``start_step`` is the number of optimizer steps before this epoch. ``on_log`` receives the
    train records (every ``log_every`` steps and the last one), ``on_step(loss, lr, images/s)`` every step."""
    distiller = ctx.distiller
    distiller.train()
    needs_indices = bool(getattr(distiller, "needs_sample_indices", False))
    params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
    result = EpochResult()
    steps_total = len(loader)
    start = time.perf_counter()
    window_images, window_start = 0, start
    step = start_step
    for batch_index, batch in enumerate(loader):
        images = batch[0].to(ctx.device, non_blocking=True)
        targets = batch[1].to(ctx.device, non_blocking=True)
        indices = batch[2].to(ctx.device, non_blocking=True) if len(batch) > 2 else None
        if ctx.mixup is not None:
            images, targets = ctx.mixup(images, targets)
        elif ctx.smoothing > 0 and targets.ndim == 1:  # soft rows already: the loader's mixup folded it in
            targets = soft_targets(targets, ctx.num_classes, ctx.smoothing)
        kwargs = {}
        if needs_indices:
            kwargs["sample_indices"] = indices
        if ctx.teacher_logits is not None:
            kwargs["teacher_logits"] = ctx.teacher_logits(batch)
        with ctx.precision.autocast():
            _, losses = distiller(images, targets, **kwargs)
            loss = sum(losses.values())
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise OfakdError(
                f"loss is {loss_value} at epoch {epoch}, step {step + 1} ({parts}); lower train.lr, set "
                "train.clip_grad, or use train.amp none. The last good checkpoint is last.pt"
            )
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.precision.step(loss, ctx.optimizer, params, ctx.clip_grad)
        distiller.on_step_end()
        step += 1
        if ctx.ema is not None:
            ctx.ema.update(distiller.student, step=step)
        ctx.scheduler.step_update(num_updates=step)

        lr = float(ctx.optimizer.param_groups[0]["lr"])
        result.steps += 1
        result.images += images.shape[0]
        result.loss_sum += loss_value
        result.last_lr = lr
        for name, value in losses.items():
            result.loss_sums[name] = result.loss_sums.get(name, 0.0) + float(value.detach())
        window_images += images.shape[0]
        now = time.perf_counter()
        images_per_s = window_images / max(now - window_start, 1e-9)
        if on_step is not None:
            on_step(loss_value, lr, images_per_s)
        if step % ctx.log_every == 0 or batch_index == steps_total - 1:
            on_log({
                "kind": "train", "epoch": epoch, "step": step, "lr": lr, "loss": loss_value,
                "images_per_s": images_per_s, "losses": {k: float(v.detach()) for k, v in losses.items()},
            })
            window_images, window_start = 0, now
    result.seconds = time.perf_counter() - start
    return result
