"""``ofakd.tune``: which method, which options and which lr for *this* pair on *this* data (``ofakd tune``).

    result = ofakd.tune("demo", teacher_run="runs/digits-teacher", budget=30, out="tune/digits")
    result.best            # {"trial": 17, "method": "dist", "options": {...}, "lr": 0.0031, "holdout_top1": 91.2}
    result.best_yaml       # tune/digits/best.yaml: `ofakd distill --config tune/digits/best.yaml`
    result.finals          # the summaries of its final runs (test top-1: "final_top1")

Protocol: trials train on the training images less a holdout (``holdout``: a count or fraction, drawn with
``holdout_seed``) and are scored on it; the test split (the recipe's validation split) is read only by the best
configuration's final runs (``final_seeds``). Logit-only methods replay the teacher from a cache recorded once over
the trials' views; feature methods run it live. Several workers — this call in several processes, or on machines
sharing ``storage`` — share one study and its budget; calling it again resumes the study.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.record import record_cache
from ..config.load import load_config
from ..config.schema import RESUME_SAFE_KEYS, RunConfig
from ..errors import ConfigError
from ..run_folder import RunRecord
from ..run_folder.lock import FolderLock, FolderLocked
from . import folder as names
from .space import SearchSpace, spec_values
from .study import open_storage, open_study, set_budget, storage_url, worker_name
from .trial import TrialPlan, TrialRunner, teacher_source, trial_config
from .worker import run_worker

DEFAULT_HOLDOUT = 0.1
"""The share of the training images a tuning holds out to score its trials on."""
RECORD_WAIT_S = 7 * 24 * 3600.0
"""How long a worker waits for another to finish recording the teacher cache."""


@dataclass
class TuneResult:
    folder: Path
    best: dict[str, Any] | None = None
    """The best trial: ``trial``, ``method``, ``options``, ``lr``, ``holdout_top1`` (None if another worker wrote it)."""
    best_yaml: Path | None = None
    finals: list[dict] = field(default_factory=list)
    """The summaries of the final runs (``final_top1``: test top-1 at their last epoch)."""
    report: Path | None = None


def tune(
    config: str | Path | RunConfig | None = None,
    *,
    budget: int | None = None,
    out: str | Path = "tune",
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    teacher_run: str | Path | None = None,
    methods: Sequence[str] | None = None,
    space: Mapping[str, Any] | None = None,
    holdout: int | float = DEFAULT_HOLDOUT,
    holdout_seed: int = 0,
    sampler: str = "tpe",
    pruner: str = "hyperband",
    storage: str | None = None,
    study: str | None = None,
    teacher_cache: str | Path | None = None,
    final_seeds: Sequence[int] | None = None,
    seed: int | None = None,
    heartbeat_s: int = 60,
    log: Callable[[str], None] = print,
) -> TuneResult:
    """Search methods, their key options and the lr for ``config`` (a recipe name or path plus ``overrides``, or a
    RunConfig) with ``budget`` trials of Optuna (``sampler`` tpe|random, ``pruner`` hyperband|halving|median|none),
    in the tune folder ``out``; then write ``best.yaml``, train it once per seed of ``final_seeds`` (default: the
    recipe's seed; ``[]``: none) and write the report. ``methods``: the methods searched (default kd, dkd, dist,
    ofa, ofa+dist; ``"default"`` stands for them); ``space``: ``{KEY: SPEC}`` narrowing it (see
    :mod:`ofakd.tuning.space`). ``storage``: an RDB URL or a journal file (default SQLite in ``out``); ``study``: its
    name there (default: the folder's name). ``teacher_cache``: a cache already recorded over the trials' views."""
    base = _base_config(config, overrides, teacher_run)
    folder = Path(out)
    search = SearchSpace.build(methods or ["default"], lr=base.train.lr, narrow=dict(space or {}))
    cache = Path(teacher_cache) if teacher_cache is not None else folder / names.TEACHER_CACHE
    plan = TrialPlan(holdout=holdout, holdout_seed=holdout_seed, epochs=base.train.epochs,
                     trials_dir=folder / names.TRIALS, cache=cache)
    _check_trials(base, plan, search)  # bad input stops here, before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    url, name = storage_url(storage, folder), study or folder.resolve().name
    names.write_tune_json(folder, url, name)
    storage_obj = open_storage(url, heartbeat_s)
    settings = _settings(base, plan, search, sampler, pruner)
    the_study, _ = open_study(storage_obj, name, settings, sampler=sampler, pruner=pruner,
                              seed=base.train.seed if seed is None else seed, epochs=plan.epochs)
    total = set_budget(the_study, budget)
    log(f"tuning {', '.join(search.methods)} for {base.teacher.name or '-'} -> {base.student.name} on "
        f"{base.data.name}: study {name!r} in {url}, budget {total} trials, worker {worker_name()}")
    if teacher_cache is None and any(teacher_source(m, cache) == "cache" for m in search.methods):
        _record_cache(the_study, base, plan, search, folder, log)
    run_worker(the_study, storage_obj, TrialRunner(base, search, plan, log), poll_s=min(5.0, heartbeat_s), log=log)
    try:
        with FolderLock(folder / "final.lock", f"tune folder {folder} (best.yaml and final runs)"):
            return _finish(the_study, base, folder, final_seeds, log)
    except FolderLocked:
        log("another worker writes best.yaml, runs the final runs and the report")
        return TuneResult(folder)


def _base_config(config, overrides, teacher_run) -> RunConfig:
    """The recipe the tuning starts from (its ``data.holdout`` is the tuning's to set)."""
    if isinstance(config, RunConfig):
        base = config
    else:
        queued = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        if teacher_run is not None:
            queued.insert(0, ("teacher", RunRecord.at(teacher_run).teacher_section()))
        base = load_config(config, queued)
    if base.data.holdout is not None:
        raise ConfigError("data.holdout is what ofakd tune sets for its trials (--holdout): leave it null in the "
                          "recipe, whose validation split is the tuning's test split")
    return base


def _check_trials(base: RunConfig, plan: TrialPlan, search: SearchSpace) -> None:
    """Every method's trial config validates at both ends of the lr range (bad settings stop here, not in trial 7)."""
    lrs = spec_values(search.lr)
    for method in search.methods:
        if teacher_source(method, None) != "none" and not base.teacher.name:
            raise ConfigError(f"method {method} needs the teacher: pass --teacher-run RUN_DIR, or --teacher NAME "
                              "--teacher-checkpoint PATH")
        for lr in lrs:
            try:
                trial_config(base, plan, method, {}, lr, "check")
            except ConfigError as err:
                raise ConfigError(f"a trial of {method} at lr {lr:g}: {err}") from None


def _settings(base: RunConfig, plan: TrialPlan, search: SearchSpace, sampler: str, pruner: str) -> dict[str, Any]:
    """What every worker of one study must share: the recipe (less paths and what changes nothing computed; the
    teacher's weights by their sha256), the space, the holdout, the sampler and the pruner."""
    from ..analysis.runs import flatten
    from ..run_folder.digest import file_sha256

    recipe = {k: v for k, v in flatten(base.to_dict()).items()
              if k not in RESUME_SAFE_KEYS and not k.startswith("run.") and k not in ("teacher.cache",)}
    checkpoint = recipe.pop("teacher.checkpoint", None)
    recipe["teacher.checkpoint_sha256"] = file_sha256(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
    return {"format": 1, "recipe": recipe, "space": search.describe(), "holdout": plan.holdout,
            "holdout_seed": plan.holdout_seed, "epochs": plan.epochs, "sampler": sampler, "pruner": pruner}


def _record_cache(study, base: RunConfig, plan: TrialPlan, search: SearchSpace, folder: Path,
                  log: Callable[[str], None]) -> None:
    """Record the teacher's logits over the trials' views once (a second worker waits, then finds them there)."""
    method = next(m for m in search.methods if teacher_source(m, plan.cache) == "cache")
    cfg = trial_config(base, plan, method, {}, base.train.lr, "cache")
    with FolderLock(folder / "teacher-cache.lock", f"teacher cache {plan.cache}").wait(RECORD_WAIT_S, poll=1.0):
        started = time.monotonic()
        cache = record_cache(cfg, plan.cache, log=log)
        if "teacher_cache" not in study.user_attrs:
            study.set_user_attr("teacher_cache", {"seconds": round(time.monotonic() - started, 3),
                                                  "epochs": cache.epochs, "views": cache.epochs * cache.steps_per_epoch
                                                  * cache.batch_size, "worker": worker_name()})


def _finish(study, base: RunConfig, folder: Path, final_seeds, log) -> TuneResult:
    """best.yaml, the final runs and the report, from the study as it ended."""
    from optuna.trial import TrialState

    from .final import best_config, final_runs, write_best
    from .study_report import write_tune_report

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"no trial of study {study.study_name!r} completed (see the trials' errors in the log, or "
                          f"`ofakd report {folder}`); nothing to write")
    best = max(complete, key=lambda t: (t.value, -t.number))
    cfg = best_config(base, best)
    header = [f"ofakd tune: the best of {len(study.trials)} trials of study {study.study_name!r} (trial {best.number},",
              f"holdout top-1 {best.value:.2f}): `ofakd distill --config {folder / names.BEST_YAML}`"]
    best_yaml = write_best(folder / names.BEST_YAML, cfg, best, header)
    log(f"best: trial {best.number} {cfg.method.name} lr {cfg.train.lr:.3g} holdout top-1 {best.value:.2f}; "
        f"wrote {best_yaml}")
    seeds = [base.train.seed] if final_seeds is None else list(final_seeds)
    finals = final_runs(cfg, seeds, folder / names.FINAL, log=log)
    study.set_user_attr("final", [{k: s.get(k) for k in ("seed", "final_top1", "best_top1", "val_images",
                                                          "epochs_done", "wall_time_s", "name")} for s in finals])
    report = write_tune_report(folder, folder)
    log(f"wrote {report.markdown}")
    return TuneResult(folder, best={"trial": best.number, "method": cfg.method.name,
                                    "options": best.user_attrs.get("options", {}), "lr": cfg.train.lr,
                                    "holdout_top1": best.value},
                      best_yaml=best_yaml, finals=finals, report=report.markdown)
