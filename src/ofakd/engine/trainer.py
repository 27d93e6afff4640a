"""A whole run: build, (resume,) train epoch by epoch, evaluate, checkpoint, summarise. The :class:`Trainer`
orchestrates; each concern has a module of its own: :mod:`~ofakd.engine.setup` (what the run trains),
:mod:`~ofakd.engine.resume` (continuing from ``last.pt``), :mod:`~ofakd.engine.saving` (``last.pt``,
``best.safetensors``), :mod:`~ofakd.engine.run_summary` (its log line and ``summary.json``).

``fit(cfg)`` writes ``<out_dir>/<name>/``: ``config.yaml``, ``metrics.jsonl``, TensorBoard
events, ``last.pt`` (everything to resume), ``best.safetensors`` (the student's best weights)
and ``summary.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..config.load import dump_config
from ..config.schema import RunConfig
from ..data import seed_everything
from ..device import pick_device
from ..errors import ConfigError
from ..run_folder import default_name, sanitize_name, write_json, write_text
from ..threads import apply_threads
from .amp import Precision
from .ddp import prepare_modules, training_module
from .evaluate import evaluate
from .folder_claim import claim_run_folder
from .launch import rank_device
from .loop import StepContext, train_one_epoch
from .metrics_log import MetricsLog, truncate_after
from .numerics import NonFiniteGuard
from .optim import build_optimizer, build_scheduler, schedule_warnings
from .preemption import Interrupted, StopRequest
from .processes import SINGLE_PROCESS, DistContext
from .progress import EpochProgress, epoch_line
from .rank_agreement import check_ranks_agree
from .resume import Resume
from .run_summary import run_line, summary
from .saving import Saving
from .seeding import epoch_seed
from .setup import Setup, SetupSource, build_setup
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
    source: SetupSource | None = None,
    on_epoch_end: EpochEnd | None = None,
) -> dict:
    """Train per ``cfg`` (or continue the run folder ``resume``) and return the summary dict. ``source``: where
    :func:`build_setup` takes the student, teacher, data and distiller from (None: ``cfg``; :func:`ofakd.fit`
    gives its own). ``on_epoch_end(epoch, evals)``: see :data:`EpochEnd`."""
    return Trainer(cfg, resume=resume, overwrite=overwrite, stop_after_epochs=stop_after_epochs, dist=dist,
                   progress=progress, tensorboard=tensorboard, log=log, source=source, on_epoch_end=on_epoch_end).fit()


class Trainer:
    """One run, from its config to its summary: :meth:`fit` builds it (:meth:`_prepare`: the run folder, the
    setup, the optimizer and schedule, a resume), then trains, evaluates and saves epoch by epoch
    (:meth:`_run_epoch`). Its objects (``cfg``, ``setup``, ``optimizer``, ``scheduler``, ``precision``, ``ema``,
    ``state``, ``numerics``, ``folder``) are what :class:`~ofakd.engine.resume.Resume`,
    :class:`~ofakd.engine.saving.Saving` and :mod:`~ofakd.engine.run_summary` read."""

    def __init__(self, cfg: RunConfig, *, resume=None, overwrite=False, stop_after_epochs=None,
                 dist: DistContext = SINGLE_PROCESS, progress=True, tensorboard=True, log=print,
                 source: SetupSource | None = None, on_epoch_end: EpochEnd | None = None) -> None:
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
        self.source = source
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
        self.setup: Setup = build_setup(cfg, self.device, self.dist, self.source)
        check_ranks_agree(self.dist, cfg, self.setup.bundle.fingerprint, self.setup.teacher)  # before any DDP step
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
        self.resumed = Resume(self)
        self.saving = Saving(self)
        self.stop = StopRequest()
        if self.resume is not None:
            self.resumed.load()
            inside = self.resumed.point is not None
            if self.dist.is_main:
                truncate_after(self.folder.metrics, self.state.epoch, self.resumed.steps_now() if inside else None)
        else:
            if self.dist.is_main:
                self.folder.make()
                write_text(self.folder.config, dump_config(cfg))
            self._score_teacher()
        for warning in schedule_warnings(cfg.train):
            self.log(warning)
        self.module = training_module(distiller, dist=self.dist, device=self.device, compile=cfg.train.compile)
        """What the loop runs the forward through (DDP and/or torch.compile around the distiller)."""
        self._setup_seconds = time.time() - started

    def _score_teacher(self) -> None:
        """A new run scores its teacher on the validation split once (``train.eval_teacher``; a cache cannot)."""
        cfg, teacher = self.cfg, self.setup.teacher
        scorer = teacher.scorer() if teacher is not None else None  # None: a cache (training views only)
        built = self.source is None  # a teacher built from the config (not one given in Python)
        if scorer is not None and built and cfg.teacher.random_init:
            self.log(f"note: teacher {cfg.teacher.name} is randomly initialised, as teacher.random_init asks")
        if scorer is not None and cfg.train.eval_teacher:
            self.state.teacher_eval = evaluate(scorer, self.setup.bundle.val_loader, device=self.device,
                                               dist=self.dist).scores()
            self.log(f"teacher {cfg.teacher.name}: val top1 {self.state.teacher_eval['top1']:.2f} "
                     f"top5 {self.state.teacher_eval['top5']:.2f}")

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
            purge_step=self.resumed.steps_now() + 1 if self.resume is not None else None,
        )
        self.log(run_line(self))
        if self.setup.bundle.path.note:
            self.log(f"note: {self.setup.bundle.path.note}")
        ctx = self._step_context()
        self._session_start = time.time() - self._setup_seconds
        self.stop.install()  # SIGTERM/SIGINT: a recovery checkpoint at the next step boundary, then exit 75
        try:
            with self.saving.write_errors():
                for epoch in range(self.state.epoch, self.cfg.train.epochs):
                    if self.stop_after_epochs is not None and epoch >= self.stop_after_epochs:
                        self.log(f"stopping after epoch {epoch} as asked; continue with --resume {self.folder.path}")
                        break
                    self._run_epoch(ctx, epoch, metrics)
        finally:
            self.stop.restore()
            metrics.close()
        result = summary(self)
        if main:
            write_json(self.folder.summary, result)
        return result

    def _step_context(self) -> StepContext:
        cfg, setup = self.cfg, self.setup
        return StepContext(
            distiller=setup.distiller, optimizer=self.optimizer, scheduler=self.scheduler, precision=self.precision,
            device=self.device, num_classes=setup.bundle.num_classes,
            smoothing=cfg.augment.smoothing, clip_grad=cfg.train.clip_grad, ema=self.ema,
            log_every=cfg.train.log_every, numerics=self.numerics,
            checkpoint_every=cfg.train.checkpoint_every, save=self.saving.inside, stop_requested=lambda: self.stop.requested,
            module=self.module, dist=self.dist, channels_last=cfg.train.channels_last,
        )

    def _run_epoch(self, ctx: StepContext, epoch: int, metrics: MetricsLog) -> None:
        """Train epoch ``epoch`` (0-based), evaluate, checkpoint, log; raise Interrupted on a signal."""
        cfg, setup, state, main = self.cfg, self.setup, self.state, self.dist.is_main
        epoch_start = time.time()
        seed_everything(epoch_seed(cfg.data_seed, epoch, self.dist.rank))
        # a cached teacher replays a recorded epoch: the views drawn are that epoch's
        setup.bundle.train_sampler.set_epoch(setup.distiller.data_epoch(epoch))
        done = self.resumed.inside(epoch)
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
                self.saving.last(result)
            raise self._interrupted()
        self.scheduler.step(epoch + 1)
        state.step += result.steps
        state.train_seconds += result.seconds
        state.train_images += result.images
        evals = self._evaluate()
        improved = state.consider(epoch + 1, evals)
        if improved and main:
            self.saving.best(improved, epoch + 1, evals)
        state.final, state.epoch = evals, epoch + 1
        now = time.time()
        state.wall_time_s += now - self._session_start
        self._session_start = now
        setup.distiller.before_checkpoint()
        if main:
            metrics.eval(epoch=epoch + 1, step=state.step, results=evals)
            self.saving.last()
            write_json(self.folder.summary, summary(self))
        counted = max(result.steps - result.skipped, 1)
        self.log(epoch_line(epoch + 1, cfg.train.epochs, loss=result.mean_loss, lr=result.last_lr,
                            images_per_s=result.images_per_s, seconds=now - epoch_start, evals=evals,
                            best_top1=state.best.top1, terms={k: v / counted for k, v in result.loss_sums.items()}))
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch + 1, dict(evals))
        if epoch + 1 < cfg.train.epochs and self._stop_requested():  # a signal during evaluation: last.pt is saved
            raise self._interrupted()

    def _on_record(self, record: dict, metrics: MetricsLog, bar: EpochProgress) -> None:
        """A train record (every train.log_every steps): metrics.jsonl and TensorBoard, and the console."""
        if self.dist.is_main:
            metrics.train(**{k: v for k, v in record.items() if k != "kind"})
            bar.record(record)

    def _stop_requested(self) -> bool:
        """A signal arrived (on any process: all of them stop at the same step)."""
        stop = self.stop.requested
        if self.dist.distributed:
            flag = torch.tensor([float(stop)], device=self.device)
            stop = bool(self.dist.sum(flag).item() > 0)
        return stop

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
