"""A whole run: build, (resume,) train epoch by epoch, evaluate, checkpoint, summarise.

``fit(cfg)`` writes ``<out_dir>/<name>/``: ``config.yaml``, ``metrics.jsonl``, TensorBoard
events, ``last.pt`` (everything to resume), ``best.safetensors`` (the student's best weights)
and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .. import __version__
from ..config.load import dump_config, validate
from ..config.schema import RESUME_SAFE_KEYS, RunConfig, resume_changes
from ..data import seed_everything
from ..device import pick_device
from ..errors import ConfigError
from ..models import count_parameters
from ..run_folder import (
    WRITE_ERRNOS,
    CheckpointWriteError,
    RunRecord,
    StudentMetadata,
    default_name,
    describe_checkpoint,
    sanitize_name,
    save_state,
    save_weights,
    write_error,
    write_json,
    write_text,
)
from ..threads import apply_threads
from .amp import Precision
from .ddp import prepare_modules, training_module, world_size_change
from .evaluate import evaluate
from .folder_claim import claim_run_folder
from .launch import rank_device
from .loop import EpochResult, StepContext, train_one_epoch
from .metrics_log import MetricsLog, truncate_after
from .numerics import FIX, NonFiniteError, NonFiniteGuard, nonfinite_tensors
from .optim import ShiftedScheduler, build_optimizer, build_scheduler, schedule_warnings
from .preemption import Interrupted, StopRequest
from .processes import SINGLE_PROCESS, DistContext
from .progress import EpochProgress, epoch_line
from .seeding import capture_rng, epoch_seed, loader_generators, restore_rng
from .setup import Setup, SetupBuilder, build_setup
from .state import RunState


def run_name(cfg: RunConfig) -> str:
    """``run.name`` or the default ``method-teacher-student-dataset-sSEED``."""
    if cfg.run.name:
        return cfg.run.name
    teacher = cfg.teacher.name if cfg.method.resolved.needs_teacher else None
    return default_name(cfg.method.name, teacher, cfg.student.name or "model", cfg.data.name, cfg.train.seed)


def run_folder_hint(cfg: RunConfig, resume: str | Path | None = None) -> str:
    """The run folder a ``fit(cfg, resume=resume)`` uses, for messages (``--resume`` it)."""
    if resume is not None:
        return str(resume)
    return str(Path(cfg.run.out_dir) / sanitize_name(run_name(cfg)))


EpochEnd = Callable[[int, dict[str, float]], None]
"""Called by every process after each finished epoch with the epoch (from 1) and its validation metrics (``top1``,
``top5``, ``loss``; ``ema_*`` with an EMA), once ``last.pt`` and ``summary.json`` hold that epoch. An exception it
raises stops the run there and leaves ``fit`` (the run folder stays resumable), e.g. a search pruning a trial."""


def fit(
    cfg: RunConfig,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    stop_after_epochs: int | None = None,
    dist: DistContext = SINGLE_PROCESS,
    progress: bool = True,
    tensorboard: bool = True,
    log: Callable[[str], None] = print,
    setup: SetupBuilder | None = None,
    on_epoch_end: EpochEnd | None = None,
) -> dict:
    """Train per ``cfg`` (or continue the run folder ``resume``) and return the summary dict. ``setup`` builds
    the distiller and data on the device (None: :func:`build_setup`, from ``cfg``; :func:`ofakd.fit` gives its
    own). ``on_epoch_end(epoch, evals)``: see :data:`EpochEnd`."""
    return Trainer(cfg, resume=resume, overwrite=overwrite, stop_after_epochs=stop_after_epochs, dist=dist,
                   progress=progress, tensorboard=tensorboard, log=log, setup=setup, on_epoch_end=on_epoch_end).fit()



class Trainer:
    def __init__(self, cfg: RunConfig, *, resume=None, overwrite=False, stop_after_epochs=None,
                 dist: DistContext = SINGLE_PROCESS, progress=True, tensorboard=True, log=print,
                 setup: SetupBuilder | None = None, on_epoch_end: EpochEnd | None = None) -> None:
        if stop_after_epochs is not None and stop_after_epochs < 0:
            raise ConfigError(f"--stop-after-epochs must be >= 0, got {stop_after_epochs}")
        if resume is not None and overwrite:
            raise ConfigError(f"--resume continues {resume} and --overwrite would delete it: pass one of them")
        self.cfg = cfg
        self.resume = resume
        self.overwrite = overwrite
        self.stop_after_epochs = stop_after_epochs
        self.dist = dist
        self.progress = progress
        self.tensorboard = tensorboard
        self.log = log if dist.is_main else (lambda _msg: None)
        self.build_setup = setup
        self.on_epoch_end = on_epoch_end
        self.lock = None

    # ---- setup -----------------------------------------------------------------
    def _prepare(self) -> None:
        cfg = self.cfg
        started = time.time()
        if self.resume is None:
            name = run_name(cfg)
            cfg = self.cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"name": name})})
        self.device = rank_device(cfg.train.device, self.dist.local_rank) if self.dist.distributed else (
            pick_device(cfg.train.device))
        self.folder, self.lock = claim_run_folder(cfg.run.out_dir, cfg.run.name, resume=self.resume,  # one writer
                                                  overwrite=self.overwrite, dist=self.dist, device=self.device)
        self.precision = Precision(cfg.train.amp, self.device)
        self.threads = apply_threads(cfg.train.threads, cfg.data.workers)
        seed_everything(cfg.train.seed)  # the same on every process: the same initial weights
        self.setup: Setup = (self.build_setup or build_setup)(cfg, self.device, self.dist)
        distiller = self.setup.distiller
        prepare_modules(distiller, dist=self.dist, device=self.device, sync_bn=cfg.train.sync_bn,
                        channels_last=cfg.train.channels_last, log=self.log)
        steps_per_epoch = len(self.setup.bundle.train_loader)
        self.optimizer = build_optimizer(cfg.train, distiller)
        self.scheduler = build_scheduler(cfg.train, self.optimizer, steps_per_epoch)
        self.ema = None
        if cfg.train.ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.setup.student, decay=cfg.train.ema_decay)
        self.state = RunState()
        self.numerics = NonFiniteGuard(cfg.train.nonfinite, cfg.train.max_skipped_steps, log=self.log)
        self.resume_point: tuple[int, EpochResult, dict] | None = None
        """(steps done, their EpochResult, generator states) of a checkpoint saved inside an epoch."""
        self.stop = StopRequest()
        if self.resume is not None:
            self._load_checkpoint()
            inside = self.resume_point is not None
            if self.dist.is_main:
                truncate_after(self.folder.metrics, self.state.epoch, self._step_now() if inside else None)
        else:
            if self.dist.is_main:
                self.folder.make()
                write_text(self.folder.config, dump_config(cfg))
            teacher = self.setup.teacher
            scorer = teacher.scorer() if teacher is not None else None  # None: a cache (training views only)
            built = self.build_setup is None  # a teacher built from the config (not one given in Python)
            if scorer is not None and built and cfg.teacher.random_init:
                self.log(f"note: teacher {cfg.teacher.name} is randomly initialised, as teacher.random_init asks")
            if scorer is not None and cfg.train.eval_teacher:
                self.state.teacher_eval = evaluate(
                    scorer, self.setup.bundle.val_loader, device=self.device, dist=self.dist
                ).scores()
                self.log(f"teacher {cfg.teacher.name}: val top1 {self.state.teacher_eval['top1']:.2f} "
                         f"top5 {self.state.teacher_eval['top5']:.2f}")
        for warning in schedule_warnings(cfg.train):
            self.log(warning)
        self.module = training_module(distiller, dist=self.dist, device=self.device, compile=cfg.train.compile)
        """What the loop runs the forward through (DDP and/or torch.compile around the distiller)."""
        self._setup_seconds = time.time() - started

    def _step_now(self) -> int:
        """Optimizer steps taken, the part of an epoch resumed from a checkpoint included."""
        return self.state.step + (self.resume_point[1].steps if self.resume_point is not None else 0)

    def _checkpoint(self, partial: EpochResult | None = None) -> dict:
        """Everything to resume; ``partial``: the epoch under way (a checkpoint inside an epoch)."""
        return {
            "format": 1,
            "epoch": self.state.epoch,
            "step": self.state.step + (partial.steps if partial is not None else 0),
            "epoch_step": partial.steps if partial is not None else 0,
            "partial": {k: v for k, v in vars(partial).items() if k != "stopped"} if partial is not None else None,
            "skipped_steps": self.numerics.skipped,
            "distiller": self.setup.distiller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": capture_rng(loader_generators(self.setup.bundle.train_loader)),
            "state": self.state.to_dict(),
            "config": self.cfg.to_dict(),
            "fingerprint": self.setup.bundle.fingerprint,
            "world_size": self.dist.world_size,
        }

    def _load_checkpoint(self) -> None:
        ckpt, used = RunRecord(self.folder).resume_state(log=self.log)
        saved = ckpt.get("config")
        saved = validate(saved).to_dict() if saved else {}  # (method options written out, as config.yaml now has)
        changed = resume_changes(saved, self.cfg.to_dict())
        if changed:
            raise ConfigError(
                f"--resume {self.folder.path}: the config differs from the run's at {changed[0]!r}; a resumed run "
                f"keeps its recipe (only {', '.join(RESUME_SAFE_KEYS)} may change, and train.epochs to train on). "
                "Start a new run to change it."
            )
        self.setup.distiller.load_state_dict(ckpt["distiller"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        saved_epochs = (saved.get("train") or {}).get("epochs", self.cfg.train.epochs)
        if saved_epochs == self.cfg.train.epochs:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.precision.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        restore_rng(ckpt["rng"], loader_generators(self.setup.bundle.train_loader))
        self.state = RunState.from_dict(ckpt["state"])
        self.numerics.skipped = int(ckpt.get("skipped_steps") or 0)
        self.numerics.last_good = describe_checkpoint(used, ckpt)
        if ckpt.get("epoch_step"):
            self.resume_point = (int(ckpt["epoch_step"]), EpochResult(**ckpt["partial"]), ckpt["rng"])
        self._resume_world_size(ckpt)
        if ckpt.get("fingerprint") != self.setup.bundle.fingerprint:
            warnings.warn(
                f"the data differ from when the run started ({ckpt.get('fingerprint')} -> "
                f"{self.setup.bundle.fingerprint}); the resumed run is not an exact continuation",
                stacklevel=2,
            )
        where = f"{ckpt['epoch_step']} steps into epoch {self.state.epoch + 1}" if ckpt.get("epoch_step") else (
            f"after epoch {self.state.epoch}")
        self.log(f"resuming {self.folder.path} {where} (step {ckpt['step']})")
        if saved_epochs != self.cfg.train.epochs:
            self._replan_schedule(saved_epochs)

    def _replan_schedule(self, saved_epochs: int) -> None:
        """A resumed run given another ``train.epochs``: the lr schedule is the one a run planned for the new total
        would have, from the step reached on (a cosine re-planned over the new total: the lr of a finished run goes
        back up to where the longer cosine is at that epoch, then decays to min_lr at the new end)."""
        done = self.state.epoch
        if self.cfg.train.epochs < done:
            raise ConfigError(f"--resume {self.folder.path}: the run has trained {done} epochs; --epochs must be at "
                              f"least {done} (more to train on)")
        if self.cfg.train.sched_on_updates:
            self.scheduler.step_update(num_updates=self._step_now())
        else:
            self.scheduler.step(done)
        if self.dist.is_main:
            write_text(self.folder.config, dump_config(self.cfg))
        self.log(f"train.epochs {saved_epochs} -> {self.cfg.train.epochs}: the lr schedule is re-planned over "
                 f"{self.cfg.train.epochs} epochs from epoch {done} on (lr now {self.optimizer.param_groups[0]['lr']:.3g})")

    def _resume_world_size(self, ckpt: dict) -> None:
        """A run saved on another number of processes: keep train.batch_size (per process), warn that the global
        batch changed, continue a per-step schedule from the epoch reached, restart a part-done epoch."""
        changed = world_size_change(ckpt.get("world_size"), self.dist.world_size, self.cfg.train.batch_size, self.log)
        if changed and self.resume_point is not None:
            self.log(f"warning: last.pt was saved {self.resume_point[0]} steps into epoch {self.state.epoch + 1} on "
                     f"another number of processes; that epoch starts again from its first batch")
            self.resume_point = None
        steps_per_epoch = len(self.setup.bundle.train_loader)
        offset = self.state.epoch * steps_per_epoch - self.state.step  # 0 unless the world size ever changed
        if self.cfg.train.sched_on_updates and offset:
            # the saved per-step schedule counts the old epochs' steps: rebuild it for today's steps per epoch
            # and continue it from the epoch reached (the lr of the next step set now)
            self.scheduler = ShiftedScheduler(build_scheduler(self.cfg.train, self.optimizer, steps_per_epoch), offset)
            self.scheduler.step_update(num_updates=self._step_now())

    # ---- training --------------------------------------------------------------
    def fit(self) -> dict:
        try:
            return self._fit()
        finally:
            if self.lock is not None:  # the run folder's lock, held from _prepare to here
                self.lock.release()

    def _fit(self) -> dict:
        self._prepare()
        main = self.dist.is_main
        metrics = MetricsLog(
            self.folder.metrics if main else os.devnull,  # only the main process writes files
            tensorboard_dir=self.folder.path if (self.tensorboard and main) else None,
            purge_step=self._step_now() + 1 if self.resume is not None else None,
        )
        self.log(self._run_line())
        if self.setup.bundle.path.note:
            self.log(f"note: {self.setup.bundle.path.note}")
        ctx = self._step_context()
        self._session_start = time.time() - self._setup_seconds
        self.stop.install()  # SIGTERM/SIGINT: a recovery checkpoint at the next step boundary, then exit 75
        try:
            with self._write_errors():
                for epoch in range(self.state.epoch, self.cfg.train.epochs):
                    if self.stop_after_epochs is not None and epoch >= self.stop_after_epochs:
                        self.log(f"stopping after epoch {epoch} as asked; continue with --resume {self.folder.path}")
                        break
                    self._run_epoch(ctx, epoch, metrics)
        finally:
            self.stop.restore()
            metrics.close()
        summary = self.summary()
        if main:
            write_json(self.folder.summary, summary)
        return summary

    def _run_line(self) -> str:
        cfg, setup = self.cfg, self.setup
        note = setup.teacher.run_note() if setup.teacher is not None else ""
        return (
            f"run {self.folder.path}: {cfg.method.name} {cfg.teacher.name or '-'} -> {cfg.student.name} on "
            f"{cfg.data.name} ({len(setup.bundle.train_loader.dataset)} train / {len(setup.bundle.val_loader.dataset)} "
            f"val images, {setup.bundle.path.name.replace('_', '-')} data path), device {self.device} ({self.threads} CPU thread{'s' if self.threads != 1 else ''}), "
            f"amp {self.precision.mode}"
            + (f", {note}" if note else "")
            + (f", {self.dist.world_size} processes ({self.dist.backend}), global batch "
               f"{cfg.train.batch_size * self.dist.world_size}" if self.dist.distributed else "")
        )

    def _step_context(self) -> StepContext:
        cfg, setup = self.cfg, self.setup
        return StepContext(
            distiller=setup.distiller, optimizer=self.optimizer, scheduler=self.scheduler, precision=self.precision,
            device=self.device, num_classes=setup.bundle.num_classes,
            smoothing=cfg.augment.smoothing, clip_grad=cfg.train.clip_grad, ema=self.ema,
            log_every=cfg.train.log_every, numerics=self.numerics,
            checkpoint_every=cfg.train.checkpoint_every, save=self._save_inside, stop_requested=lambda: self.stop.requested,
            module=self.module, dist=self.dist, channels_last=cfg.train.channels_last,
        )

    def _run_epoch(self, ctx: StepContext, epoch: int, metrics: MetricsLog) -> None:
        """Train epoch ``epoch`` (0-based), evaluate, checkpoint, log; raise Interrupted on a signal."""
        cfg, setup, state, main = self.cfg, self.setup, self.state, self.dist.is_main
        epoch_start = time.time()
        seed_everything(epoch_seed(cfg.data_seed, epoch, self.dist.rank))
        # a cached teacher replays a recorded epoch: the views drawn are that epoch's
        setup.bundle.train_sampler.set_epoch(setup.distiller.data_epoch(epoch))
        done = self._resume_inside(epoch)
        setup.distiller.start_epoch(epoch, step=done.steps if done is not None else 0)
        bar = EpochProgress(epoch + 1, cfg.train.epochs, len(setup.bundle.train_loader), start_step=state.step,
                            done=done.steps if done is not None else 0, enabled=self.progress and main, log=self.log)
        try:
            result = train_one_epoch(
                ctx, setup.bundle.train_loader, epoch=epoch + 1, start_step=state.step,
                on_log=lambda r: self._on_record(r, metrics, bar), on_step=bar.step, done=done,
            )
        finally:
            bar.close()
        if result.stopped:  # a signal: save where the epoch stands and stop
            setup.distiller.before_checkpoint()
            if main:
                self._save_last(result)
            raise self._interrupted()
        self.scheduler.step(epoch + 1)
        state.step += result.steps
        state.train_seconds += result.seconds
        state.train_images += result.images
        evals = self._evaluate()
        improved = state.consider(epoch + 1, evals)
        if improved and main:
            self._save_best(improved, epoch + 1, evals)
        state.final, state.epoch = evals, epoch + 1
        now = time.time()
        state.wall_time_s += now - self._session_start
        self._session_start = now
        setup.distiller.before_checkpoint()
        if main:
            metrics.eval(epoch=epoch + 1, step=state.step, results=evals)
            self._save_last()
            write_json(self.folder.summary, self.summary())
        counted = max(result.steps - result.skipped, 1)
        self.log(epoch_line(epoch + 1, cfg.train.epochs, loss=result.mean_loss, lr=result.last_lr,
                            images_per_s=result.images_per_s, seconds=now - epoch_start, evals=evals,
                            best_top1=state.best.top1, terms={k: v / counted for k, v in result.loss_sums.items()}))
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch + 1, dict(evals))
        if epoch + 1 < cfg.train.epochs and self._stop_requested():  # a signal during evaluation: last.pt is saved
            raise self._interrupted()

    @contextlib.contextmanager
    def _write_errors(self) -> Iterator[None]:
        """A failed write (a checkpoint, or metrics.jsonl / TensorBoard on a full disk) stops the run with one
        CheckpointWriteError that says how to continue."""
        resume = f"then continue with --resume {self.folder.path} (last good checkpoint: {{}})"
        try:
            yield
        except CheckpointWriteError as err:
            raise CheckpointWriteError(f"{err}; {resume.format(self.numerics.last_good)}") from err
        except OSError as err:  # a log file (metrics.jsonl, TensorBoard) on a full disk
            if err.errno not in WRITE_ERRNOS:
                raise
            bad = write_error(err, err.filename or self.folder.metrics)
            raise CheckpointWriteError(f"{bad}; {resume.format(self.numerics.last_good)}") from err

    def _on_record(self, record: dict, metrics: MetricsLog, bar: EpochProgress) -> None:
        """A train record (every train.log_every steps): metrics.jsonl and TensorBoard, and the console."""
        if self.dist.is_main:
            metrics.train(**{k: v for k, v in record.items() if k != "kind"})
            bar.record(record)

    # ---- recovery ----------------------------------------------------------------
    def _resume_inside(self, epoch: int) -> EpochResult | None:
        """At the start of ``epoch``: when the run resumes inside it, skip the batches already trained (their
        views are keyed by position, so the rest are the uninterrupted run's), put back every generator
        state as it was at that step, and return that part's EpochResult; else None."""
        if self.resume_point is None or epoch != self.state.epoch:
            return None
        steps, done, rng = self.resume_point
        self.resume_point = None
        loader = self.setup.bundle.train_loader
        loader.sampler.skip_next(steps * loader.batch_size)
        restore_rng(rng, loader_generators(loader))  # dropout / drop-path continue as uninterrupted
        return done

    def _stop_requested(self) -> bool:
        """A signal arrived (on any process: all of them stop at the same step)."""
        stop = self.stop.requested
        if self.dist.distributed:
            flag = torch.tensor([float(stop)], device=self.device)
            stop = bool(self.dist.sum(flag).item() > 0)
        return stop

    def _save_inside(self, step: int, result: EpochResult) -> None:
        """A periodic last.pt inside an epoch (train.checkpoint_every), from the main process."""
        self.setup.distiller.before_checkpoint()
        if self.dist.is_main:
            self._save_last(result)

    def _save_last(self, partial: EpochResult | None = None) -> None:
        """Write last.pt (verified; the one it replaces kept as last.prev.pt). Weights with a NaN/inf are never
        saved: that stops the run naming the last good checkpoint."""
        bad = nonfinite_tensors(self.setup.distiller.state_dict().items())
        if bad:
            raise NonFiniteError(
                f"the weights hold NaN/inf ({bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}) at step "
                f"{self.state.step + (partial.steps if partial else 0)}; they were not saved. Last good checkpoint: "
                f"{self.numerics.last_good}. Fix: {FIX}"
            )
        ckpt = self._checkpoint(partial)
        self.lock.ensure_held()
        save_state(self.folder.last, ckpt, keep_previous=True)
        self.numerics.last_good = describe_checkpoint(self.folder.last, ckpt)

    def _interrupted(self) -> Interrupted:
        return Interrupted(
            f"{self.stop.name} received: saved {self.numerics.last_good}; continue with --resume {self.folder.path}"
        )

    def _evaluate(self) -> dict[str, float]:
        self.dist.broadcast_buffers(self.setup.distiller)  # rank 0's BatchNorm statistics, as saved in last.pt
        if self.ema is not None:
            self.dist.broadcast_buffers(self.ema.module)
        loader = self.setup.bundle.val_loader
        kwargs = dict(device=self.device, precision=self.precision, dist=self.dist)
        evals = evaluate(self.setup.student, loader, **kwargs).scores()
        if self.ema is not None:
            ema = evaluate(self.ema.module, loader, **kwargs).scores()
            evals.update({f"ema_{k}": v for k, v in ema.items()})
        return evals

    def _save_best(self, source: str, epoch: int, evals: dict) -> None:
        model = self.ema.module if source == "ema" else self.setup.student
        spec = self.setup.student_spec
        save_weights(self.folder.best, model, StudentMetadata(
            model=self.cfg.student.name,
            kwargs=self.cfg.student.kwargs,
            num_classes=self.setup.bundle.num_classes,
            input_size=list(spec.input_size),
            mean=list(spec.mean),
            std=list(spec.std),
            class_names=self.setup.bundle.class_names,
            data=self.cfg.data.model_dump(mode="json"),
            source=source,
            epoch=epoch,
            top1=evals["ema_top1" if source == "ema" else "top1"],
        ))

    def summary(self) -> dict:
        cfg, setup, state = self.cfg, self.setup, self.state
        uses_teacher = bool(setup.distiller.needs_teacher)  # live or from a teacher cache
        final = state.final
        out = {
            "name": self.folder.path.name,
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
            "ema": self.ema is not None,
            # extras
            "best_from": state.best.source if state.best.epoch else None,
            "epochs_done": state.epoch,
            "complete": state.epoch >= cfg.train.epochs,
            "steps": state.step,
            "skipped_steps": self.numerics.skipped,
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
            "device": str(self.device),
            "amp": self.precision.mode,
            "world_size": self.dist.world_size,
            "global_batch": cfg.train.batch_size * self.dist.world_size,
            "ofakd_version": __version__,
            "torch_version": torch.__version__,
        }
        return out
