"""The Optuna study a tuning lives in: its storage, sampler and pruner, its settings, and the budget.

Storage (``--storage``): by default SQLite in the tune folder (``sqlite:///TUNE/study.db``); an RDB URL
(``postgresql://...``, ``mysql+pymysql://...``, ``sqlite:///...``) for workers on several machines; or the path of a
journal file (Optuna's ``JournalStorage``) on a file system the workers share. With an RDB storage every worker keeps
a heartbeat on its trial, so the trial of a killed worker is marked failed (after ``2 x heartbeat``) and another
worker takes its place in the budget; Optuna's journal storage has no heartbeat, so there a killed worker's trial
stays running until the study ends.

The budget counts trials that run or ran: complete, pruned, running, and failed by an error of their own. A trial
whose worker died (failed by the heartbeat) is not counted, nor is a trial made beyond the budget when workers
asked at once (failed at once, its ``surplus`` attribute set, never run): of the trials asked, the first ``budget`` by
number run, whatever the number of workers, so no trial is lost and none runs twice.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import ConfigError
from ..run_folder.no_links import refuse_link

SETTINGS_KEY = "ofakd"
"""The study's user attribute holding the settings it was made with (every worker must bring the same)."""
BUDGET_KEY = "budget"
ERROR_ATTR, SURPLUS_ATTR = "error", "surplus"
PRUNERS = ("hyperband", "halving", "median", "none")
STORAGE_ATTEMPTS = 5
"""Tries to open an RDB storage (workers starting at once race to make its tables)."""
SAMPLERS = ("tpe", "random")


def storage_url(storage: str | None, folder: Path) -> str:
    """The storage a tuning in ``folder`` uses: SQLite there by default (never through a symbolic link placed
    there), else ``storage`` as given."""
    if storage is not None:
        return str(storage)
    refuse_link(folder / "study.db")
    return f"sqlite:///{(folder / 'study.db').absolute()}"


def open_storage(url: str, heartbeat_s: int) -> optuna.storages.BaseStorage:
    """An RDB storage (``scheme://...``, with a heartbeat of ``heartbeat_s`` seconds), or a journal file."""
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    from sqlalchemy.exc import IntegrityError, OperationalError

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # wait out another writer's lock
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # (heartbeat_interval is one)
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s,
                                                  grace_period=2 * heartbeat_s)
        except (IntegrityError, OperationalError):  # workers starting at once: one makes the tables, the others retry
            attempt += 1
            if attempt == STORAGE_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """Optuna's TPE (``constant_liar``: parallel workers do not all try the same point) or random sampler."""
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler {name}: choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """Early stopping on the per-epoch holdout top-1: Hyperband or successive halving over 1..``epochs`` epochs
    (reduction factor 3), the median rule, or none."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner {name}: choose one of {', '.join(PRUNERS)}")


def open_study(storage, name: str, settings: dict[str, Any], *, sampler: str, pruner: str, seed: int,
               epochs: int) -> tuple[optuna.Study, bool]:
    """(the study, whether this call made it). A new study records ``settings``; an existing one must have been
    made with the same (a worker joining it, or a tuning resumed). The worker that makes the study samples with
    ``seed``; one that joins draws its own stream (two workers with one seed would try the same points)."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=make_sampler(sampler, seed), pruner=make_pruner(pruner, epochs))
        study.set_user_attr(SETTINGS_KEY, settings)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    joined_seed = (seed * 1_000_003 + os.getpid()) % 2**31
    study = optuna.load_study(storage=storage, study_name=name, sampler=make_sampler(sampler, joined_seed),
                              pruner=make_pruner(pruner, epochs))
    recorded = study.user_attrs.get(SETTINGS_KEY)
    if recorded is None:  # made by a worker that has not written its settings yet, or not by ofakd
        recorded = settings
        study.set_user_attr(SETTINGS_KEY, settings)
    difference = first_difference(recorded, settings)
    if difference is not None:
        key, was, now = difference
        raise ConfigError(f"study {name!r} was made with {key} = {was!r}, this worker has {now!r}: run every worker "
                          "(and a resumed tuning) with the same settings, or start another study (--study NAME or "
                          "another --out)")
    return study, False


def first_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key where two JSON-like trees differ, with both values; None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if a == b else (prefix.rstrip(".") or "settings", a, b)


def set_budget(study: optuna.Study, budget: int | None) -> int:
    """The study's budget (trials), set to ``budget`` when given: the last worker to give one decides."""
    if budget is not None:
        if budget < 1:
            raise ConfigError(f"--budget must be >= 1 trial, got {budget}")
        if study.user_attrs.get(BUDGET_KEY) != budget:
            study.set_user_attr(BUDGET_KEY, budget)
        return budget
    recorded = study.user_attrs.get(BUDGET_KEY)
    if recorded is None:
        raise ConfigError("--budget N is needed to start a tuning (N trials)")
    return int(recorded)


def counts(trial: FrozenTrial) -> bool:
    """Whether ``trial`` takes a place in the budget (see the module docstring)."""
    if trial.state == TrialState.FAIL:
        return ERROR_ATTR in trial.user_attrs
    return True


def places_before(trials: list[FrozenTrial], number: int) -> int:
    """Budget places taken by the trials asked before trial ``number``."""
    return sum(1 for t in trials if t.number < number and counts(t))


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Mark failed the running trials whose worker stopped beating (an RDB ``storage``; journal files have no
    heartbeat)."""
    if isinstance(storage, optuna.storages.RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def worker_name() -> str:
    """``host:pid`` of this worker (kept with each trial it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"
