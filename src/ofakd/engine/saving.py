"""What a run saves: ``last.pt`` (everything to resume, verified, never with NaN/inf weights), ``best.safetensors``
(the best epoch's student and its recipe), and the one error a failed write stops the run with.

:class:`Saving` works on the :class:`~ofakd.engine.trainer.Trainer` it is given (``run``): the objects whose state
``last.pt`` holds, its run folder and lock, and the guard that names the last good checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..config.load import dump_config
from ..models.info import nonfinite_tensors
from ..run_folder import (
    WRITE_ERRNOS,
    CheckpointWriteError,
    StudentMetadata,
    describe_checkpoint,
    save_state,
    save_weights,
    write_error,
    write_text,
)
from .loop import EpochResult
from .numerics import FIX, NonFiniteError
from .seeding import capture_rng, loader_generators

if TYPE_CHECKING:
    from .trainer import Trainer


class Saving:
    """The run's checkpoints: :meth:`last` (and :meth:`inside` an epoch), :meth:`best`."""

    def __init__(self, run: Trainer) -> None:
        self.run = run

    def checkpoint(self, partial: EpochResult | None = None) -> dict:
        """Everything to resume; ``partial``: the epoch under way (a checkpoint inside an epoch)."""
        run = self.run
        return {
            "format": 1,
            "epoch": run.state.epoch,
            "step": run.state.step + (partial.steps if partial is not None else 0),
            "epoch_step": partial.steps if partial is not None else 0,
            "partial": {k: v for k, v in vars(partial).items() if k != "stopped"} if partial is not None else None,
            "skipped_steps": run.numerics.skipped,
            "distiller": run.setup.distiller.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.precision.state_dict(),
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "rng": capture_rng(loader_generators(run.setup.bundle.train_loader)),
            "state": run.state.to_dict(),
            "config": run.cfg.to_dict(),
            "fingerprint": run.setup.bundle.fingerprint,
            "teacher_sha256": teacher_sha256(run.setup.teacher),
            "world_size": run.dist.world_size,
        }

    def last(self, partial: EpochResult | None = None) -> None:
        """Write last.pt (verified; the one it replaces kept as last.prev.pt). Weights with a NaN/inf are never
        saved: that stops the run naming the last good checkpoint."""
        run = self.run
        bad = nonfinite_tensors(run.setup.distiller.state_dict().items())
        if bad:
            raise NonFiniteError(
                f"the weights hold NaN/inf ({bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}) at step "
                f"{run.state.step + (partial.steps if partial else 0)}; they were not saved. Last good checkpoint: "
                f"{run.numerics.last_good}. Fix: {FIX}"
            )
        ckpt = self.checkpoint(partial)
        run.lock.ensure_held()
        save_state(run.folder.last, ckpt, keep_previous=True)
        run.numerics.last_good = describe_checkpoint(run.folder.last, ckpt)
        if run.resumed.config_outdated:  # config.yaml follows the checkpoint's recipe, never runs ahead of it
            write_text(run.folder.config, dump_config(run.cfg))
            run.resumed.config_outdated = False

    def inside(self, step: int, result: EpochResult) -> None:
        """A periodic last.pt inside an epoch (train.checkpoint_every): every process gathers what it keeps for
        itself, the main process writes."""
        self.run.setup.distiller.before_checkpoint()
        if self.run.dist.is_main:
            self.last(result)

    def best(self, source: str, epoch: int, evals: dict) -> None:
        """``best.safetensors``: the student (``source`` "model") or its EMA ("ema") that scored ``evals`` at
        ``epoch``, with what rebuilds it."""
        run = self.run
        model = run.ema.module if source == "ema" else run.setup.student
        spec = run.setup.student_spec
        save_weights(run.folder.best, model, StudentMetadata(
            model=run.cfg.student.name,
            kwargs=run.cfg.student.kwargs,
            num_classes=run.setup.bundle.num_classes,
            input_size=list(spec.input_size),
            mean=list(spec.mean),
            std=list(spec.std),
            class_names=run.setup.bundle.class_names,
            data=run.cfg.data.model_dump(mode="json"),
            source=source,
            epoch=epoch,
            top1=evals["ema_top1" if source == "ema" else "top1"],
        ))

    @contextlib.contextmanager
    def write_errors(self) -> Iterator[None]:
        """A failed write (a checkpoint, or metrics.jsonl / TensorBoard on a full disk) stops the run with one
        CheckpointWriteError that says how to continue."""
        run = self.run
        resume = f"then continue with --resume {run.folder.path} (last good checkpoint: {{}})"
        try:
            yield
        except CheckpointWriteError as err:
            raise CheckpointWriteError(f"{err}; {resume.format(run.numerics.last_good)}") from err
        except OSError as err:  # a log file (metrics.jsonl, TensorBoard) on a full disk
            if err.errno not in WRITE_ERRNOS:
                raise
            bad = write_error(err, err.filename or run.folder.metrics)
            raise CheckpointWriteError(f"{bad}; {resume.format(run.numerics.last_good)}") from err


def teacher_sha256(teacher) -> str | None:
    """The identity of the run's teacher weights (a source's optional ``weights_sha256()``; None without a teacher
    or for a source that does not tell): recorded in last.pt, compared on resume and across torchrun processes."""
    identify = getattr(teacher, "weights_sha256", None)
    return identify() if callable(identify) else None
