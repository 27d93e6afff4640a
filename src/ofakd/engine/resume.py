"""Continuing a run from its ``last.pt``: the run's state put back exactly, a schedule re-planned for more epochs or
another number of processes, and an epoch resumed at the step it was saved in.

:class:`Resume` works on the :class:`~ofakd.engine.trainer.Trainer` it is given (``run``): its config, setup,
optimizer, scheduler, precision, EMA, state and run folder.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ..config.load import validate
from ..config.schema import RESUME_SAFE_KEYS, edited_keys, lookup, resume_changes
from ..errors import ConfigError
from ..run_folder import RunRecord, describe_checkpoint
from .ddp import world_size_change
from .loop import EpochResult
from .optim import ShiftedScheduler, build_scheduler
from .saving import teacher_sha256
from .seeding import loader_generators, restore_rng
from .state import RunState

if TYPE_CHECKING:
    from .trainer import Trainer


class Resume:
    """Where a resumed run stands: :meth:`load` its checkpoint, then :meth:`inside` each epoch start."""

    def __init__(self, run: Trainer) -> None:
        self.run = run
        self.point: tuple[int, EpochResult, dict] | None = None
        """(steps done, their EpochResult, generator states) of a checkpoint saved inside an epoch."""
        self.config_outdated = False
        """config.yaml is to be rewritten with the run's config after the next checkpoint (train.epochs changed)."""

    def steps_now(self) -> int:
        """Optimizer steps taken, the part of an epoch resumed from a checkpoint included."""
        return self.run.state.step + (self.point[1].steps if self.point is not None else 0)

    def load(self) -> None:
        """Put the run back as ``last.pt`` (or, damaged, the one it replaced) saved it; a config that differs from
        the run's beyond what a resume may change is an error."""
        run = self.run
        ckpt, used = RunRecord(run.folder).resume_state(log=run.log)
        saved = ckpt.get("config")
        saved = validate(saved).to_dict() if saved else {}  # (method options written out, as config.yaml now has)
        self._check_recorded_config(saved, used.name)
        changed = resume_changes(saved, run.cfg.to_dict())
        if changed:
            raise ConfigError(
                f"--resume {run.folder.path}: the config differs from the run's at {changed[0]!r}; a resumed run "
                f"keeps its recipe (only {', '.join(RESUME_SAFE_KEYS)} may change, and train.epochs to train on). "
                "Start a new run to change it."
            )
        recorded, now = ckpt.get("teacher_sha256"), teacher_sha256(run.setup.teacher)
        if recorded is not None and now is not None and recorded != now:
            raise ConfigError(
                f"--resume {run.folder.path}: the teacher's weights differ from the ones the run trained with "
                f"(sha256 {recorded[:12]}... in {used.name}, {now[:12]}... now); a resumed run keeps its teacher: give "
                "it the same weights (was its checkpoint file replaced?), or start a new run"
            )
        run.setup.distiller.load_state_dict(ckpt["distiller"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        saved_epochs = (saved.get("train") or {}).get("epochs", run.cfg.train.epochs)
        if saved_epochs == run.cfg.train.epochs:
            run.scheduler.load_state_dict(ckpt["scheduler"])
        run.precision.load_state_dict(ckpt["scaler"])
        if run.ema is not None and ckpt.get("ema") is not None:
            run.ema.load_state_dict(ckpt["ema"])
        restore_rng(ckpt["rng"], loader_generators(run.setup.bundle.train_loader))
        run.state = RunState.from_dict(ckpt["state"])
        run.numerics.skipped = int(ckpt.get("skipped_steps") or 0)
        run.numerics.last_good = describe_checkpoint(used, ckpt)
        if ckpt.get("epoch_step"):
            self.point = (int(ckpt["epoch_step"]), EpochResult(**ckpt["partial"]), ckpt["rng"])
        self._world_size(ckpt)
        if ckpt.get("fingerprint") != run.setup.bundle.fingerprint:
            warnings.warn(
                f"the data differ from when the run started ({ckpt.get('fingerprint')} -> "
                f"{run.setup.bundle.fingerprint}); the resumed run is not an exact continuation",
                stacklevel=2,
            )
        where = f"{ckpt['epoch_step']} steps into epoch {run.state.epoch + 1}" if ckpt.get("epoch_step") else (
            f"after epoch {run.state.epoch}")
        run.log(f"resuming {run.folder.path} {where} (step {ckpt['step']})")
        if saved_epochs != run.cfg.train.epochs:
            self._replan_schedule(saved_epochs)

    def _check_recorded_config(self, saved: dict, checkpoint: str) -> None:
        """config.yaml is a record of the run, not an input: an edit of it that would take effect on this resume (a
        value that differs from the recipe the checkpoint records, not overridden on the command line) is an
        error naming the key and both values."""
        run = self.run
        if not saved or not run.dist.is_main or not run.folder.config.is_file():
            return
        on_disk = validate(RunRecord(run.folder).config()).to_dict()
        edited = edited_keys(saved, on_disk, run.cfg.to_dict())
        if edited:
            key = edited[0]
            raise ConfigError(
                f"--resume {run.folder.path}: {run.folder.config.name} differs from the recipe {checkpoint} records at "
                f"{key!r} ({lookup(saved, key)!r} in {checkpoint}, {lookup(on_disk, key)!r} in "
                f"{run.folder.config.name}); config.yaml records the run and is not read as a change: restore it, or "
                f"give the change on the command line (--{key} VALUE: only train.epochs and "
                f"{', '.join(RESUME_SAFE_KEYS)} may change)"
            )

    def _replan_schedule(self, saved_epochs: int) -> None:
        """A resumed run given another ``train.epochs``: the lr schedule is the one a run planned for the new total
        would have, from the step reached on (a cosine re-planned over the new total: the lr of a finished run goes
        back up to where the longer cosine is at that epoch, then decays to min_lr at the new end)."""
        run = self.run
        done = run.state.epoch
        if run.cfg.train.epochs < done:
            raise ConfigError(f"--resume {run.folder.path}: the run has trained {done} epochs; --epochs must be at "
                              f"least {done} (more to train on)")
        if run.cfg.train.sched_on_updates:
            run.scheduler.step_update(num_updates=self.steps_now())
        else:
            run.scheduler.step(done)
        self.config_outdated = run.dist.is_main  # config.yaml says the new total once a checkpoint does
        run.log(f"train.epochs {saved_epochs} -> {run.cfg.train.epochs}: the lr schedule is re-planned over "
                f"{run.cfg.train.epochs} epochs from epoch {done} on (lr now {run.optimizer.param_groups[0]['lr']:.3g})")

    def _world_size(self, ckpt: dict) -> None:
        """A run saved on another number of processes: keep train.batch_size (per process), warn that the global
        batch changed, continue a per-step schedule from the epoch reached, restart a part-done epoch."""
        run = self.run
        changed = world_size_change(ckpt.get("world_size"), run.dist.world_size, run.cfg.train.batch_size, run.log)
        if changed and self.point is not None:
            run.log(f"warning: last.pt was saved {self.point[0]} steps into epoch {run.state.epoch + 1} on "
                    f"another number of processes; that epoch starts again from its first batch")
            self.point = None
        steps_per_epoch = len(run.setup.bundle.train_loader)
        offset = run.state.epoch * steps_per_epoch - run.state.step  # 0 unless the world size ever changed
        if run.cfg.train.sched_on_updates and offset:
            # the saved per-step schedule counts the old epochs' steps: rebuild it for today's steps per epoch
            # and continue it from the epoch reached (the lr of the next step set now)
            run.scheduler = ShiftedScheduler(build_scheduler(run.cfg.train, run.optimizer, steps_per_epoch), offset)
            run.scheduler.step_update(num_updates=self.steps_now())

    def inside(self, epoch: int) -> EpochResult | None:
        """At the start of ``epoch``: when the run resumes inside it, skip the batches already trained (their
        views are keyed by position, so the rest are the uninterrupted run's), put back every generator
        state as it was at that step, and return that part's EpochResult; else None."""
        if self.point is None or epoch != self.run.state.epoch:
            return None
        steps, done, rng = self.point
        self.point = None
        loader = self.run.setup.bundle.train_loader
        loader.sampler.skip_next(steps * loader.batch_size)
        restore_rng(rng, loader_generators(loader))  # dropout / drop-path continue as uninterrupted
        return done
