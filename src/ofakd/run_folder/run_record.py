"""A run folder read back: :class:`RunRecord`, the one reader of what a run leaves on disk.

    record = RunRecord.at("runs/NAME")
    record.config()                      # config.yaml as a mapping (sections: data, student, train, ...)
    record.summary()                     # summary.json
    record.metrics()                     # metrics.jsonl: its train records and its eval records
    record.student_metadata()            # best.safetensors' StudentMetadata (model, classes, epoch, top-1, ...)
    record.best_weights()                # best.safetensors' tensors, their content hash checked
    record.checkpoint()                  # last.pt, loaded with weights_only=True, its CRCs checked
    record.student_weights(record.checkpoint(), ema=False)   # the student (or its EMA) inside it

Evaluation, export, the report, a resumed run, the command line's run references (``--resume``,
``--teacher-run``) and the tuning's final runs read a run folder through it; what a run writes, and how, is
in the other modules of :mod:`ofakd.run_folder`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, OfakdError, StudentSourceError, UnfinishedRunError
from ..yaml_files import parse_yaml, read_yaml_text
from .best_weights import StudentMetadata, WeightsDamaged, read_student_metadata, read_weights
from .checkpoint import EMA_PREFIX, STUDENT_PREFIX, load_resume_state, load_state, strip_prefix
from .layout import BEST, CONFIG, LAST, METRICS, SUMMARY, RunFolder

TEACHER_KEYS = ("name", "kwargs", "input_size", "mean", "std")
"""What a run's ``student:`` section gives the ``teacher:`` section of a run distilling from it."""


@dataclass(frozen=True)
class RunRecord:
    """What the run folder ``folder`` holds, each file read when asked for."""

    folder: RunFolder

    @classmethod
    def at(cls, path: str | Path) -> RunRecord:
        return cls(RunFolder(Path(path)))

    @property
    def path(self) -> Path:
        return self.folder.path

    # ---- config.yaml, summary.json, metrics.jsonl -------------------------------------------------
    @property
    def has_config(self) -> bool:
        return self.folder.config.is_file()

    def config(self) -> dict[str, Any]:
        """``config.yaml``: the run's whole config, a mapping of sections (a one-line ConfigError when it cannot
        be read as one)."""
        path = self.folder.config
        raw = parse_yaml(read_yaml_text(path), str(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config: {path} must hold a mapping of sections (data, train, ...)")
        return raw

    def checked_config(self) -> dict[str, Any]:
        """``config.yaml``, its ``data`` and ``student`` sections checked against the copy ``best.safetensors`` keeps
        in its (hashed) metadata: config.yaml records the run and is not read as a change, so an edit of what the
        weights were trained and scored on is an error naming the key (flags choose other values explicitly)."""
        raw = self.config()
        if not self.has_best:
            return raw
        meta = self.student_metadata()
        recorded = {"data": meta.data or {}, "student": {"name": meta.model, "kwargs": meta.kwargs,
                                                          "input_size": meta.input_size}}
        for section, values in recorded.items():
            on_disk = raw.get(section) if isinstance(raw.get(section), dict) else {}
            for key, value in values.items():
                if value is not None and key in on_disk and on_disk[key] != value:
                    raise ConfigError(
                        f"{self.folder.config} differs from the recipe {BEST} records at {section}.{key} ({value!r} "
                        f"there, {on_disk[key]!r} in {CONFIG}); {CONFIG} records the run and is not read as a change: "
                        f"restore it, or give another value on the command line (--{section}.{key} VALUE)"
                    )
        return raw

    def section(self, name: str) -> dict[str, Any]:
        """One section of ``config.yaml`` (``{}`` when it has none)."""
        value = self.config().get(name)
        return value if isinstance(value, dict) else {}

    @property
    def has_summary(self) -> bool:
        return self.folder.summary.is_file()

    def summary(self) -> dict[str, Any]:
        """``summary.json``; an error when the run has none (it has not finished an epoch) or it is damaged."""
        path = self.folder.summary
        if not path.is_file():
            raise OfakdError(f"{self.path} has no {SUMMARY}: pass the folder of a finished run (or a folder of runs)")
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError (bytes that are not text)
            raise OfakdError(f"{path} is not valid JSON text ({err}); was the run interrupted while writing it?") from None
        if not isinstance(summary, dict):
            raise OfakdError(f"{path} must hold a JSON object")
        return summary

    def checked_summary(self) -> dict[str, Any]:
        """``summary.json`` with its best top-1 and epoch checked against ``best.safetensors``' (hashed) metadata: when
        they differ (an edited or damaged summary), a warning names the file and the weights' values are used."""
        summary = self.summary()
        if not self.has_best:
            return summary
        meta = self.student_metadata()
        kept = {"best_top1": meta.top1, "best_epoch": meta.epoch}
        differ = [key for key, value in kept.items() if value is not None and summary.get(key) != value]
        if differ:
            shown = ", ".join(f"{key} {summary.get(key)!r} (best.safetensors: {kept[key]!r})" for key in differ)
            warnings.warn(f"{self.folder.summary} differs from {BEST} at {shown}: the summary was edited or damaged; "
                          f"reporting {BEST}'s values", stacklevel=2)
            summary = {**summary, **{key: kept[key] for key in differ}}
        return summary

    def summary_if_any(self) -> dict[str, Any]:
        """``summary.json`` when there is a readable one, else ``{}``."""
        try:
            return self.summary()
        except (OfakdError, OSError):
            return {}

    @property
    def complete(self) -> bool:
        """The run trained every epoch it was configured for (its summary says so)."""
        return bool(self.summary_if_any().get("complete"))

    def metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (see :func:`read_metrics`)."""
        return read_metrics(self.folder.metrics)

    # ---- best.safetensors ---------------------------------------------------------------------------
    @property
    def has_best(self) -> bool:
        return self.folder.best.is_file()

    def student_metadata(self) -> StudentMetadata:
        """What ``best.safetensors`` records about its student (:class:`StudentMetadata`)."""
        return student_metadata(self.folder.best)

    def best_weights(self) -> dict[str, torch.Tensor]:
        """The tensors of ``best.safetensors``, its content hash checked."""
        return weights_file(self.folder.best)

    # ---- last.pt --------------------------------------------------------------------------------------
    @property
    def has_checkpoint(self) -> bool:
        return self.folder.last.is_file()

    def checkpoint(self) -> dict[str, Any]:
        """``last.pt``: everything a run needs to resume (an error when no epoch has completed yet)."""
        if not self.has_checkpoint:
            raise UnfinishedRunError(
                f"run folder {self.path} has no finished checkpoint ({LAST} is missing: no epoch has completed); "
                "wait for its first epoch to end, or start the run again"
            )
        return load_state(self.folder.last)

    def resume_state(self, log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
        """The checkpoint a resumed run continues from and the file it came from: ``last.pt``, or the one it
        replaced when ``last.pt`` is damaged (said through ``log``)."""
        return load_resume_state(self.folder.last, log=log)

    def student_weights(self, checkpoint: dict[str, Any], *, ema: bool) -> dict[str, torch.Tensor]:
        """The student's weights in this run's ``checkpoint`` (its EMA's with ``ema``)."""
        return checkpoint_student(checkpoint, ema=ema, where=self.folder.last)

    # ---- the run as a teacher -------------------------------------------------------------------------
    def teacher_section(self) -> dict[str, Any]:
        """The ``teacher:`` section of a run distilling from the model this run trained (``ofakd train``): its
        name, kwargs, input size and normalisation, and ``best.safetensors`` as its checkpoint."""
        if not self.has_config or not self.has_best:
            raise ConfigError(
                f"--teacher-run {str(self.path)!r}: expected config.yaml and {BEST} there "
                "(the folder of a finished `ofakd train` run)"
            )
        student = self.config().get("student") or {}
        section = {key: value for key, value in student.items() if key in TEACHER_KEYS}
        section["checkpoint"] = str(self.folder.best)
        return section


def runs_below(path: str | Path) -> tuple[list[Path], list[Path]]:
    """The run folders at or below ``path``, sorted: (those with a ``summary.json``, those with a ``metrics.jsonl``
    and no ``summary.json``: runs that have not finished an epoch)."""
    path = Path(path)
    if (path / SUMMARY).is_file():
        return [path], []
    finished = sorted(p.parent for p in path.rglob(SUMMARY))
    unfinished = sorted(p.parent for p in path.rglob(METRICS) if not (p.parent / SUMMARY).is_file())
    return finished, unfinished


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (``[]`` when there is none). A last line cut short (a run killed while
    writing it) is skipped; any other line that is not a JSON record (not text, not JSON, not an object) is skipped
    with one warning naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    out, bad = [], []
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            record = None
        if isinstance(record, dict):
            out.append(record)
        elif number < len(lines):  # (the last piece has no newline after it: a write cut short, not damage)
            bad.append(number)
    if bad:
        warnings.warn(f"{path}: {len(bad)} line(s) are not JSON records (line {bad[0]} first), so they were "
                      "skipped: the file was edited or damaged", stacklevel=2)
    return out


def student_metadata(path: str | Path) -> StudentMetadata:
    """The :class:`StudentMetadata` of an ofakd ``.safetensors`` file; a file that cannot be read is a
    StudentSourceError naming it."""
    try:
        return read_student_metadata(path)
    except Exception as err:  # safetensors raises several types for a bad file
        raise StudentSourceError(f"{path} is not a readable safetensors file ({err}); re-run or re-export it") from None


def weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an ofakd ``.safetensors`` file, its content hash checked (:class:`WeightsDamaged`)."""
    try:
        return read_weights(path)
    except WeightsDamaged:
        raise
    except Exception as err:  # safetensors raises several types for a bad file
        raise StudentSourceError(f"{path} is not a readable safetensors file ({err}); re-run or re-export it") from None


def checkpoint_student(checkpoint: dict[str, Any], *, ema: bool, where: str | Path) -> dict[str, torch.Tensor]:
    """The student's weights inside a ``last.pt`` (``where``, for messages): the distiller's ``student.*`` or, with
    ``ema``, the EMA model's ``module.*``; a StudentSourceError when the checkpoint holds none."""
    if ema:
        state, prefix = checkpoint.get("ema"), EMA_PREFIX
        if not isinstance(state, dict):
            raise StudentSourceError(f"{where} holds no EMA weights; pass --no-ema")
    else:
        state, prefix = checkpoint.get("distiller"), STUDENT_PREFIX
        if not isinstance(state, dict):
            raise StudentSourceError(f"{where} holds no 'distiller' state; it is not an ofakd last.pt")
    out = strip_prefix(state, prefix)
    if not out:
        raise StudentSourceError(f"{where}: no '{prefix}*' tensors; it is not an ofakd last.pt")
    return out
