"""Finished runs read back from their folders (``summary.json``, ``config.yaml``, ``metrics.jsonl``), grouped by
configuration: runs whose resolved configs agree on everything but the seed are seeds of one configuration."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.schema import RESUME_SAFE_KEYS
from ..errors import OfakdError
from ..run_folder import SUMMARY, RunRecord, runs_below

GROUP_KEYS = ("method", "teacher", "student", "dataset")
"""The summary keys every report names (a run without config.yaml is grouped by these and its method options)."""

NOT_CONFIGURATION = ("train.seed", "train.data_seed", "train.eval_teacher", *RESUME_SAFE_KEYS)
"""Config keys that do not make another configuration: the seeds (what a configuration's runs vary), and keys
that change nothing computed (paths, workers, logging, device). The ``run`` section (names, folders) neither."""


@dataclass
class Run:
    """One finished run: its summary and its logged train steps and evaluations."""

    path: Path
    summary: dict
    train: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    config: dict | None = None
    """The run's ``config.yaml`` as read (None when the folder has none)."""

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.path.name)

    @property
    def seed(self):
        return self.summary.get("seed")

    @property
    def settings(self) -> dict[str, Any]:
        """What makes the run's configuration, as dotted keys (``method.eps``: ``[1.5]``): its config.yaml less
        :data:`NOT_CONFIGURATION`, the ``run`` section and, when the method used no teacher, the ``teacher``
        section. A run without config.yaml: its summary's method, teacher, student, data set, method options."""
        if self.config is None:
            named = zip(("method.name", "teacher.name", "student.name", "data.name"), GROUP_KEYS)
            options = self.summary.get("method_options") or {}
            return {**{key: self.summary.get(k) for key, k in named}, **flatten(options, "method.")}
        skip = ("run.", "teacher.") if self.summary.get("teacher") is None else ("run.",)
        return {key: value for key, value in flatten(self.config).items()
                if key not in NOT_CONFIGURATION and not key.startswith(skip)}

    @property
    def key(self) -> tuple:
        """Equal for runs of one configuration (seeds), different otherwise."""
        return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in self.settings.items()))

    def epoch_train_loss(self) -> tuple[list[float], list[float]]:
        """(epochs, mean training loss of the steps logged in each epoch)."""
        sums: dict[float, list[float]] = {}
        for entry in self.train:
            loss, epoch = entry.get("loss"), entry.get("epoch")
            if _number(loss) and _number(epoch):
                sums.setdefault(epoch, []).append(float(loss))
        epochs = sorted(sums)
        return epochs, [sum(sums[e]) / len(sums[e]) for e in epochs]

    def eval_curve(self, key: str) -> tuple[list[float], list[float]]:
        """(epochs, value of ``key`` at each evaluation), e.g. ``key="top1"``."""
        points = [
            (e["epoch"], float(e[key])) for e in self.evals if _number(e.get("epoch")) and _number(e.get(key))
        ]
        points.sort(key=lambda p: p[0])
        return [p[0] for p in points], [p[1] for p in points]


@dataclass
class RunGroup:
    """Runs of one configuration (alike in everything but the seed), e.g. several seeds."""

    key: tuple
    runs: list[Run]

    @property
    def config(self) -> dict:
        """The summary keys every report names: ``{"method": ..., "teacher": ..., "student": ..., "dataset": ...}``."""
        return {k: self.runs[0].summary.get(k) for k in GROUP_KEYS}

    @property
    def settings(self) -> dict[str, Any]:
        """The configuration its runs share (see :attr:`Run.settings`)."""
        return self.runs[0].settings

    @property
    def seeds(self) -> list:
        return [run.seed for run in self.runs]

    def values(self, name: str) -> list[float]:
        """The numeric values of summary key ``name`` across the runs (missing ones left out)."""
        return [float(run.summary[name]) for run in self.runs if _number(run.summary.get(name))]


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (lists and other values stay whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_keys(groups: Sequence[RunGroup]) -> list[str]:
    """The setting keys whose values differ between groups (compared among the groups that have the key: an
    option of one method is not a difference from another method), in first-seen order."""
    keys: dict[str, set[str]] = {}
    for group in groups:
        for key, value in group.settings.items():
            keys.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return [key for key, values in keys.items() if len(values) > 1]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_run(path: str | Path) -> Run:
    """Read a finished run folder; a missing or broken ``summary.json`` is an :class:`OfakdError`."""
    record = RunRecord.at(path)
    summary = record.checked_summary()
    records = record.metrics()
    config = record.config() if record.has_config else None
    return Run(path=record.path, summary=summary, train=[r for r in records if r.get("kind") == "train"],
               evals=[r for r in records if r.get("kind") == "eval"], config=config)


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Runs in ``paths``: each a run folder, or a folder whose sub-folders (any depth) are runs.

    Inside a parent folder, unfinished runs (no ``summary.json``, or one the engine marks
    ``"complete": false`` while it trains) are skipped with a warning; a run given twice is read once.
    """
    runs: list[Run] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise OfakdError(f"run folder {path} does not exist")
        if not path.is_dir():
            raise OfakdError(f"{path} is not a folder: pass run folders (each with a {SUMMARY})")
        candidates, unfinished = runs_below(path)
        if not candidates:
            raise OfakdError(f"{path} has no {SUMMARY} in it or below it: pass folders of finished runs")
        for folder in unfinished:
            warnings.warn(f"skipping {folder}: no {SUMMARY} (run not finished)", stacklevel=2)
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            run = load_run(candidate)
            if run.summary.get("complete") is False and len(candidates) > 1:
                warnings.warn(f"skipping {candidate}: the run has not finished (complete: false)", stacklevel=2)
                continue
            runs.append(run)
    return runs


def group_runs(runs: Iterable[Run]) -> list[RunGroup]:
    """Group runs by configuration (:attr:`Run.key`: everything but the seed), in order of first appearance."""
    groups: dict[tuple, RunGroup] = {}
    for run in runs:
        groups.setdefault(run.key, RunGroup(run.key, [])).runs.append(run)
    for group in groups.values():
        group.runs.sort(key=_seed_order)
    return list(groups.values())


def _seed_order(run: Run) -> tuple:
    seed = run.seed
    return (not _number(seed), seed if _number(seed) else 0, str(seed), run.name)
