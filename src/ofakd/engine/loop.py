"""One training epoch: batches through the distiller, backward, optimizer step, EMA, schedule, logs.

Per step::

    logits, losses = distiller(images, targets[, sample_indices=idx])
    loss = sum(losses.values())
    backward (+ clip), optimizer step, distiller.on_step_end(), EMA update, scheduler.step_update

No step waits on the device: each one writes its loss terms and gradient norm into device-side
records (:mod:`.step_records`) that the loop reads in one go every ``log_every`` steps, at
checkpoints (``checkpoint_every``) and at the end of the epoch: one host sync there, and with
several processes one all-reduce. At a read the non-finite guard (:mod:`.numerics`) looks at every
step read (stopping the run at the first bad one, or counting skipped steps), the train record is
logged and the epoch's loss sums grow. With ``train.nonfinite: skip`` the guard's verdict is needed
before each optimizer step (a host sync per step, and with several processes a one-number
all-reduce so that all of them decide alike), and a skipped step's buffers are put back.

A stop request (preemption, ``stop_requested``) ends the epoch at a step boundary: with one process at
the step it arrives, with several at the next read, where the processes agree on it.

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
from .numerics import BufferSnapshot, NonFiniteGuard, step_is_finite
from .processes import SINGLE_PROCESS, DistContext
from .step_records import StepRecord, StepRecords


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
    checkpoint_every: int | None = None
    """Also read the step records every N steps and call ``save`` there (not at an epoch's last step)."""
    save: Callable[[int, EpochResult], None] | None = None
    """Called with (global step, this epoch so far) every ``checkpoint_every`` steps: a periodic last.pt."""
    stop_requested: Callable[[], bool] | None = None
    """This process's stop flag (a signal arrived); True ends the epoch at a step boundary (see above)."""
    module: torch.nn.Module | None = None
    """What runs the forward: the distiller in DistributedDataParallel and/or torch.compile (``ddp``); None:
    the distiller itself."""
    dist: DistContext = SINGLE_PROCESS
    """The processes: the step records are averaged over them (every process logs and checks the same numbers)."""
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
    """The epoch stopped part-way (a stop request): ``steps`` batches of it are done."""

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
    on_step: Callable[[float | None, float, float], None] | None = None,
    done: EpochResult | None = None,
) -> EpochResult:
    """Train ``ctx.distiller`` for one pass over ``loader``. ``epoch`` counts from 1 (for logs);
    ``start_step`` is the number of optimizer steps before this epoch. ``on_log`` receives the
    train records (every ``log_every`` steps and the last one), ``on_step(loss, lr, images/s)`` every step
    (``loss``: the latest one read from the device, None before the first read).
    ``done``: the part of this epoch trained before a resume (``loader`` then starts after its
    ``done.steps`` batches, see ``ViewSampler.skip_next``); the result carries on from it."""
    run = EpochRun(ctx, epoch=epoch, step=start_step, done=done)
    result, steps_total = run.result, len(loader)
    start = time.perf_counter()
    window_images, window_start = 0, start
    for batch in loader:
        window_images += run.train_step(batch)
        last = result.steps == steps_total
        log = run.step % ctx.log_every == 0 or last
        checkpoint = bool(ctx.checkpoint_every) and run.step % ctx.checkpoint_every == 0 and not last
        stop = ctx.stop_requested is not None and ctx.stop_requested()
        if log or checkpoint or run.verdict_due or (stop and not ctx.dist.distributed):
            stop = run.read(stop)  # the guard may raise here (non-finite step, train.nonfinite: stop)
        elif ctx.dist.distributed:
            stop = False  # the processes agree on a stop at the next read only
        now = time.perf_counter()
        images_per_s = window_images / max(now - window_start, 1e-9)
        if on_step is not None:
            on_step(run.latest.total if run.latest else None, result.last_lr, images_per_s)
        if log:
            on_log(run.log_record(images_per_s))
            window_images, window_start = 0, now
        if stop:
            result.stopped = True
            break
        if checkpoint and ctx.save is not None:
            ctx.save(run.step, result)
    result.seconds += time.perf_counter() - start
    return result


class EpochRun:
    """The state of one epoch under way: its result, the step records not read yet and the guard."""

    def __init__(self, ctx: StepContext, *, epoch: int, step: int, done: EpochResult | None) -> None:
        self.ctx, self.epoch = ctx, epoch
        ctx.distiller.train()
        self.forward = ctx.module if ctx.module is not None else ctx.distiller
        self.needs_indices = bool(getattr(ctx.distiller, "needs_sample_indices", False))
        self.params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
        self.result = done if done is not None else EpochResult()
        self.result.stopped = False
        self.step = step + self.result.steps  # (a resumed epoch: its first result.steps are done)
        self.guard = ctx.numerics if ctx.numerics is not None else NonFiniteGuard()
        self.records = StepRecords(ctx.device, capacity=ctx.log_every + 1)
        self.latest: StepRecord | None = None
        self.snapshot = BufferSnapshot(ctx.distiller) if self.guard.decides_each_step else None
        self.verdict_due = False
        """The last step was skipped (nonfinite: skip): read now, so the guard warns or stops at that step."""

    def inputs(self, batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
        ctx = self.ctx
        images = batch[0].to(ctx.device, non_blocking=True)
        if ctx.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch[1].to(ctx.device, non_blocking=True)
        if ctx.smoothing > 0 and targets.ndim == 1:  # soft rows already: the loader's mixup folded it in
            targets = soft_targets(targets, ctx.num_classes, ctx.smoothing)
        kwargs = {}
        if self.needs_indices:
            kwargs["sample_indices"] = batch[2].to(ctx.device, non_blocking=True) if len(batch) > 2 else None
        return images, targets, kwargs

    def train_step(self, batch) -> int:
        """One optimizer step (or a skipped one); returns the images it trained on, over all processes."""
        ctx = self.ctx
        images, targets, kwargs = self.inputs(batch)
        if self.snapshot is not None:
            self.snapshot.save()
        with ctx.precision.autocast():
            _, losses = self.forward(images, targets, **kwargs)
            loss = sum(losses.values())
        ctx.optimizer.zero_grad(set_to_none=True)
        verdict: list[bool] = []
        gate = None
        if self.guard.decides_each_step:
            def gate(norm: torch.Tensor | None) -> bool:  # the host sync of nonfinite: skip
                verdict.append(self.finite_everywhere(loss, norm))
                return verdict[-1]

        norm = ctx.precision.step(loss, ctx.optimizer, self.params, ctx.clip_grad, gate=gate)
        self.step += 1
        self.records.add(self.step, loss, losses, norm)
        taken = all(verdict)
        if taken:
            ctx.distiller.on_step_end()
            if ctx.ema is not None:
                ctx.ema.update(ctx.distiller.student, step=self.step)
        elif self.snapshot is not None:
            self.snapshot.restore()
        self.verdict_due = not taken
        ctx.scheduler.step_update(num_updates=self.step)
        self.result.steps += 1
        self.result.last_lr = float(ctx.optimizer.param_groups[0]["lr"])
        self.result.images += images.shape[0] * ctx.dist.world_size  # the global batch: images/s of the job
        return images.shape[0] * ctx.dist.world_size

    def finite_everywhere(self, loss: torch.Tensor, norm: torch.Tensor | None) -> bool:
        """The verdict of ``train.nonfinite: skip`` on this step, on the host: the loss and gradient norm are finite
        on every process (with several, a one-number all-reduce, so that all of them take or skip it alike)."""
        finite = step_is_finite(loss, norm)
        if self.ctx.dist.distributed:
            finite = self.ctx.dist.sum((~finite).float().reshape(1)) == 0
        return bool(finite)

    def read(self, stop: bool) -> bool:
        """Read the step records (one host sync): the guard sees each step, the loss sums grow. Returns whether
        any process asked to stop."""
        records, stop = self.records.read(self.ctx.dist, stop)
        for record in records:
            if self.guard.check(record, epoch=self.epoch):  # raises to stop the run
                self.result.loss_sum += record.total
                for name, value in record.losses.items():
                    self.result.loss_sums[name] = self.result.loss_sums.get(name, 0.0) + value
            else:
                self.result.skipped += 1
            self.latest = record
        return stop

    def log_record(self, images_per_s: float) -> dict:
        latest = self.latest
        return {"kind": "train", "epoch": self.epoch, "step": self.step, "lr": self.result.last_lr,
                "loss": latest.total, "images_per_s": images_per_s, "losses": dict(latest.losses)}
