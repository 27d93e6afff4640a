"""One training epoch: batches through the distiller, backward, optimizer step, EMA, schedule, logs.

Per step::

    logits, losses = distiller(images, targets[, sample_indices=idx])
    loss = sum(losses.values())
    backward (+ clip), optimizer step, distiller.on_step_end(), EMA update, scheduler.step_update

A non-finite loss (checked before backward) or gradient norm (before the optimizer step) stops the
run or skips the step (``numerics``); ``after_step`` may end the epoch early (preemption).

Targets become soft rows through timm ``Mixup`` (applied in the data loader, label smoothing folded
in) or, without mixup, through label smoothing here; every distiller accepts soft target rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from timm.data.mixup import one_hot

from .amp import Precision
from .numerics import NonFiniteGuard
from .processes import SINGLE_PROCESS, DistContext


@dataclass
class StepContext:
    """What one epoch needs besides the batches."""

    distiller: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    precision: Precision
    device: torch.device
    num_classes: int
    smoothing: float = 0.0
    clip_grad: float | None = None
    ema: object | None = None
    log_every: int = 50
    numerics: NonFiniteGuard | None = None
    """What a non-finite loss or gradient does (stop or skip, see ``numerics``); None: stop."""
    after_step: Callable[[int, EpochResult], bool] | None = None
    """Called after every step with (global step, this epoch so far): periodic checkpoints; True stops the
    epoch there (a preemption request)."""
    module: torch.nn.Module | None = None
    """What runs the forward: the distiller in DistributedDataParallel and/or torch.compile (``ddp``); None:
    the distiller itself."""
    dist: DistContext = SINGLE_PROCESS
    """The processes: losses are averaged over them (the same logged and checked value on every process)."""
    channels_last: bool = False
    """Feed the images in channels-last memory format."""


@dataclass
class EpochResult:
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    loss_sum: float = 0.0
    last_lr: float = 0.0
    loss_sums: dict[str, float] = field(default_factory=dict)
    skipped: int = 0
    """Steps dropped for a non-finite loss or gradient (counted in ``steps``, not in the loss sums)."""
    stopped: bool = False
    """The epoch stopped part-way (``after_step`` asked): ``steps`` batches of it are done."""

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.steps - self.skipped, 1)

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
    done: EpochResult | None = None,
) -> EpochResult:
    """Train ``ctx.distiller`` for one pass over ``loader``. ``epoch`` counts from 1 (for logs);
    ``start_step`` is the number of optimizer steps before this epoch. ``on_log`` receives the
    train records (every ``log_every`` steps and the last one), ``on_step(loss, lr, images/s)`` every step.
    ``done``: the part of this epoch trained before a resume (``loader`` then starts after its
    ``done.steps`` batches, see ``ViewSampler.skip_next``); the result carries on from it."""
    distiller = ctx.distiller
    distiller.train()
    forward = ctx.module if ctx.module is not None else distiller
    needs_indices = bool(getattr(distiller, "needs_sample_indices", False))
    params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
    result = done if done is not None else EpochResult()
    result.stopped = False
    guard = ctx.numerics if ctx.numerics is not None else NonFiniteGuard()
    steps_total = len(loader)
    start = time.perf_counter()
    window_images, window_start = 0, start
    step = start_step + result.steps  # (a resumed epoch: its first result.steps are done)
    for batch_index, batch in enumerate(loader, start=result.steps):
        images = batch[0].to(ctx.device, non_blocking=True)
        if ctx.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch[1].to(ctx.device, non_blocking=True)
        indices = batch[2].to(ctx.device, non_blocking=True) if len(batch) > 2 else None
        if ctx.smoothing > 0 and targets.ndim == 1:  # soft rows already: the loader's mixup folded it in
            targets = soft_targets(targets, ctx.num_classes, ctx.smoothing)
        kwargs = {}
        if needs_indices:
            kwargs["sample_indices"] = indices
        with ctx.precision.autocast():
            _, losses = forward(images, targets, **kwargs)
            loss = sum(losses.values())
        # the mean over processes (every process logs and checks the same numbers): one sync and collective
        loss_value, *parts = ctx.dist.mean_floats([loss, *losses.values()])
        values = dict(zip(losses, parts))
        ctx.optimizer.zero_grad(set_to_none=True)
        taken = guard.loss_ok(values, loss_value, epoch=epoch, step=step + 1)  # raises or False: no backward
        if taken:
            verdicts: list[bool] = []

            def grads_ok(norm: float, values=values, at=step + 1, verdicts=verdicts) -> bool:
                verdicts.append(guard.grads_ok(norm, values, epoch=epoch, step=at))  # raises, or False: skip
                return verdicts[-1]

            ctx.precision.step(loss, ctx.optimizer, params, ctx.clip_grad, check_finite=grads_ok)
            taken = all(verdicts)
        if taken:
            distiller.on_step_end()
        step += 1
        if taken and ctx.ema is not None:
            ctx.ema.update(distiller.student, step=step)
        ctx.scheduler.step_update(num_updates=step)

        lr = float(ctx.optimizer.param_groups[0]["lr"])
        result.steps += 1
        result.images += images.shape[0] * ctx.dist.world_size  # the global batch: images/s of the whole job
        result.last_lr = lr
        if taken:
            result.loss_sum += loss_value
            for name, value in values.items():
                result.loss_sums[name] = result.loss_sums.get(name, 0.0) + value
        else:
            result.skipped += 1
        window_images += images.shape[0] * ctx.dist.world_size
        now = time.perf_counter()
        images_per_s = window_images / max(now - window_start, 1e-9)
        if on_step is not None:
            on_step(loss_value, lr, images_per_s)
        if step % ctx.log_every == 0 or batch_index == steps_total - 1:
            on_log({
                "kind": "train", "epoch": epoch, "step": step, "lr": lr, "loss": loss_value,
                "images_per_s": images_per_s, "losses": dict(values),
            })
            window_images, window_start = 0, now
        if ctx.after_step is not None and ctx.after_step(step, result):
            result.stopped = True
            break
    result.seconds += time.perf_counter() - start
    return result
