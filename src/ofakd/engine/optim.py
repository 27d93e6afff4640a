"""Optimizer and learning-rate schedule from timm, over the distiller's trainable parameters, and the
schedule of a run resumed on another number of processes (:class:`ShiftedScheduler`)."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2, get_optimizer_info
from timm.scheduler import create_scheduler_v2
from torch import nn

from ..config.schema import TrainConfig
from ..errors import ConfigError


def param_groups(distiller: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups of ``distiller.trainable_parameters()``: with weight decay, and without it for
    biases, norm weights (1-d tensors) and the student's ``no_weight_decay()`` names (timm convention)."""
    trainable = {id(p) for p in distiller.trainable_parameters()}
    student = getattr(distiller, "student", None)
    skip = set()
    if student is not None and hasattr(student, "no_weight_decay"):
        skip = {f"student.{name}" for name in student.no_weight_decay()}
    decay, no_decay, seen = [], [], set()
    for name, param in distiller.named_parameters():
        if id(param) not in trainable or id(param) in seen:
            continue
        seen.add(id(param))
        (no_decay if param.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(param)
    extra = [p for p in distiller.trainable_parameters() if id(p) not in seen]
    decay.extend(extra)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(cfg: TrainConfig, distiller: nn.Module) -> torch.optim.Optimizer:
    """``timm.optim.create_optimizer_v2`` (sgd = Nesterov SGD as in timm, adamw, lamb, ...) with cfg's
    lr, weight decay and momentum (used by the momentum optimizers; a momentum other than the default given to an
    optimizer that takes none is an error: it would silently do nothing)."""
    default = TrainConfig.model_fields["momentum"].default
    if cfg.momentum != default and not get_optimizer_info(cfg.optimizer).has_momentum:
        raise ConfigError(f"train.momentum {cfg.momentum} does nothing for {cfg.optimizer}, which takes no momentum "
                          "(an Adam-style optimizer's betas play that role): remove train.momentum, or use an "
                          "SGD-style optimizer (sgd, momentum, rmsprop, lars)")
    return create_optimizer_v2(
        param_groups(distiller, cfg.weight_decay),
        opt=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
    )


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """``timm.scheduler.create_scheduler_v2``: cosine or step, with linear warm-up from warmup_lr.

    Stepped per epoch (``scheduler.step(epoch)``) or, with ``sched_on_updates``, per optimizer step
    (``scheduler.step_update(num_updates)``).
    """
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=cfg.scheduler,
        num_epochs=cfg.epochs,
        decay_epochs=cfg.decay_epochs,
        decay_rate=cfg.decay_rate,
        min_lr=cfg.min_lr,
        warmup_lr=cfg.warmup_lr,
        warmup_epochs=cfg.warmup_epochs,
        step_on_epochs=not cfg.sched_on_updates,
        updates_per_epoch=steps_per_epoch,
    )
    return scheduler


def schedule_warnings(cfg: TrainConfig) -> list[str]:
    """What in the schedule a person would not expect: a warm-up as long as the run or longer (the lr then never
    reaches ``train.lr``)."""
    if cfg.warmup_epochs >= cfg.epochs:
        return [f"warning: train.warmup_epochs {cfg.warmup_epochs} >= train.epochs {cfg.epochs}: the whole run is "
                f"warm-up, from train.warmup_lr {cfg.warmup_lr:g}, and the lr never reaches train.lr {cfg.lr:g}; set "
                f"--warmup-epochs below {cfg.epochs} (e.g. 0 for a short run)"]
    return []


class ShiftedScheduler:
    """A timm scheduler whose per-step updates are moved by ``offset`` steps.

    A run resumed on another number of processes has another number of steps per epoch: its
    per-step (``train.sched_on_updates``) schedule continues from ``epoch x new steps per epoch``,
    not from the optimizer steps taken so far (which count the old, shorter or longer, epochs).
    """

    def __init__(self, scheduler, offset: int) -> None:
        self.scheduler = scheduler
        self.offset = int(offset)

    def step(self, epoch: int, metric=None) -> None:
        self.scheduler.step(epoch, metric)

    def step_update(self, num_updates: int, metric=None) -> None:
        self.scheduler.step_update(num_updates + self.offset, metric)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)

    def __getattr__(self, name):
        return getattr(self.scheduler, name)
