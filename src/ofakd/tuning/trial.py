"""One trial: the configuration Optuna suggests, trained as a normal run scored on the holdout, pruned per epoch.

A trial's run folder is ``TUNE/trials/trial-NNNN`` (config.yaml, metrics.jsonl, summary.json, best.safetensors):
the recipe with the suggested method, options and lr, ``data.holdout`` set (it validates on held-out training
images, never on the test split) and, for a method that needs the teacher's logits only, the tuning's teacher
cache. Its score is the holdout top-1 of its last epoch; every epoch's holdout top-1 goes to the pruner.
What it cost (epochs, seconds, whether the teacher ran live) is kept with the trial in the study.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ..config.load import merge, validate
from ..config.schema import RunConfig
from ..distill import get_method
from ..engine import fit
from ..engine.preemption import Interrupted
from .space import SearchSpace
from .study import BUDGET_KEY, ERROR_ATTR, SURPLUS_ATTR, places_before, worker_name


class TrialFailed(Exception):
    """A trial stopped by an error of its own (kept with it as its ``error`` attribute); the study goes on."""


class SurplusTrial(Exception):
    """A trial asked beyond the budget while workers asked at once: failed at once, never run."""


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a tuning shares besides the recipe."""

    holdout: int | float
    holdout_seed: int
    epochs: int
    trials_dir: Path
    cache: Path | None
    """The teacher-output cache logit-only methods replay (recorded over the training images less the holdout)."""


def teacher_source(method: str, cache: Path | None) -> str:
    """Where a trial of ``method`` gets its teacher: ``cache`` (logits replayed), ``live`` (features), ``none``."""
    cls = get_method(method)
    if not cls.needs_teacher:
        return "none"
    return "live" if cls.needs_teacher_features or cache is None else "cache"


def trial_config(base: RunConfig, plan: TrialPlan, method: str, options: dict[str, Any], lr: float,
                 name: str) -> RunConfig:
    """The recipe ``base`` as a trial of ``method`` with ``options`` and ``lr``: on the training images less the
    holdout, validated on the holdout, for ``plan.epochs`` epochs, in ``plan.trials_dir/name``. The recipe's own
    options for its method stay where the trial does not set them."""
    raw = base.to_dict()
    recipe = raw["method"] if raw["method"]["name"] == method else {"name": method}
    raw["method"] = merge(recipe, nest(options))
    raw["data"].update(holdout=plan.holdout, holdout_seed=plan.holdout_seed, val_subset=None)
    raw["train"].update(lr=lr, epochs=plan.epochs, eval_teacher=False)
    source = teacher_source(method, plan.cache)
    raw["teacher"]["cache"] = str(plan.cache) if source == "cache" else None
    raw["teacher"]["cache_cycle"] = False
    raw["run"] = {"out_dir": str(plan.trials_dir), "name": name}
    return validate(raw)


def nest(options: dict[str, Any]) -> dict[str, Any]:
    """``{"ofa.eps": [1.2]}`` -> ``{"ofa": {"eps": [1.2]}}`` (a combination's part options), others as they are."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        part, dot, option = key.partition(".")
        if dot:
            out.setdefault(part, {})[option] = value
        else:
            out[key] = value
    return out


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"


@dataclass
class TrialRunner:
    """Optuna's objective: run trial after trial of one worker (``study.optimize(runner, n_trials=1, ...)``)."""

    base: RunConfig
    space: SearchSpace
    plan: TrialPlan
    log: Callable[[str], None] = print

    def __call__(self, trial: optuna.Trial) -> float:
        budget = int(trial.study.user_attrs[BUDGET_KEY])
        if places_before(trial.study.get_trials(deepcopy=False), trial.number) >= budget:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"trial {trial.number} is beyond the budget of {budget}")
        method, options, lr = self.space.suggest(trial)
        source = teacher_source(method, self.plan.cache)
        for key, value in (("worker", worker_name()), ("method", method), ("lr", lr), ("options", options),
                           ("teacher", source)):
            trial.set_user_attr(key, value)
        label = f"trial {trial.number}"
        self.log(f"{label}: {method} lr {lr:.3g} {_options_text(options)}(teacher {source})")
        try:
            cfg = trial_config(self.base, self.plan, method, options, lr, trial_name(trial.number))
        except Exception as err:
            trial.set_user_attr(ERROR_ATTR, _one_line(err))
            raise TrialFailed(f"{label}: {_one_line(err)}") from err
        trial.set_user_attr("run_dir", str(Path(cfg.run.out_dir) / cfg.run.name))
        return self._train(trial, cfg, label)

    def _train(self, trial: optuna.Trial, cfg: RunConfig, label: str) -> float:
        top1: list[float] = []

        def on_epoch_end(epoch: int, evals: dict[str, float]) -> None:
            top1.append(evals["top1"])
            trial.set_user_attr("top1", top1)
            trial.report(evals["top1"], epoch)
            if epoch < cfg.train.epochs and trial.should_prune():
                raise optuna.TrialPruned(f"{label}: pruned after epoch {epoch} (holdout top-1 {evals['top1']:.2f})")

        started = time.monotonic()
        try:
            summary = fit(cfg, overwrite=True, progress=False, tensorboard=False, on_epoch_end=on_epoch_end,
                          log=lambda line: self.log(f"{label}: {line}"))
        except (optuna.TrialPruned, Interrupted, KeyboardInterrupt):
            raise
        except Exception as err:  # NaN loss, out of memory, a method that cannot serve the pair, ...
            trial.set_user_attr(ERROR_ATTR, _one_line(err))
            raise TrialFailed(f"{label}: {_one_line(err)}") from err
        finally:
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            trial.set_user_attr("epochs", len(top1))
        trial.set_user_attr("images", {"train": summary["train_images"], "holdout": summary["val_images"]})
        self.log(f"{label}: holdout top-1 {summary['final_top1']:.2f} after {len(top1)} epochs")
        return float(summary["final_top1"])


def _options_text(options: dict[str, Any]) -> str:
    return "".join(f"{key} {value:.3g} " if isinstance(value, float) else f"{key} {value} "
                   for key, value in options.items())


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
