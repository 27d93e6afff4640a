"""A worker: runs trials of the study until the budget is spent, then waits for the other workers' last trials.

Any number of workers (processes on one machine, or machines sharing the storage) run this loop on one study;
:mod:`~ofakd.tuning.study` says how the budget is shared. A trial that fails by its own error (a NaN loss, a method
that cannot serve the pair) is kept as failed and the worker goes on; three in a row stop it, naming the last.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from ..errors import OfakdError
from .study import BUDGET_KEY, ERROR_ATTR, SURPLUS_ATTR, counts, fail_stale_trials
from .trial import SurplusTrial, TrialFailed, TrialRunner

FAILURES_IN_A_ROW = 3
"""A worker stops once this many of its trials in a row failed by their own error (the recipe is likely wrong)."""


class TrialsKeepFailing(OfakdError):
    """Every recent trial of this worker failed by its own error."""


def run_worker(study: optuna.Study, storage: optuna.storages.BaseStorage, runner: TrialRunner, *,
               poll_s: float = 5.0, log: Callable[[str], None] = print) -> None:
    """Run trials until the study holds its budget of them (read anew each time: a worker may raise it) and none
    is running any more."""
    failures, waiting_for = 0, None
    while True:
        fail_stale_trials(study, storage)
        budget = int(study.user_attrs[BUDGET_KEY])
        trials = study.get_trials(deepcopy=False)
        if sum(1 for t in trials if counts(t)) < budget:
            waiting_for = None
            state, last_error = _one_trial(study, runner)
            if state == TrialState.FAIL:
                failures += 1
                if failures >= FAILURES_IN_A_ROW:
                    raise TrialsKeepFailing(f"{failures} trials in a row failed (the recipe or the search space is "
                                            f"likely wrong); the last: {last_error}")
            elif state is not None:
                failures = 0
            continue
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        if not running:
            return
        if running != waiting_for:
            log(f"the budget of {budget} trials is taken; waiting for trial(s) {', '.join(map(str, running))} "
                "of other workers")
            waiting_for = running
        time.sleep(poll_s)


def _one_trial(study: optuna.Study, runner: TrialRunner) -> tuple[TrialState | None, str]:
    """Run one trial: its final state (None for a surplus trial, which never ran) and its error, if any."""
    finished: list[optuna.trial.FrozenTrial] = []
    study.optimize(runner, n_trials=1, catch=(TrialFailed, SurplusTrial), gc_after_trial=True,
                   callbacks=[lambda _study, trial: finished.append(trial)])
    trial = finished[0]
    if SURPLUS_ATTR in trial.user_attrs:
        return None, ""
    error = trial.user_attrs.get(ERROR_ATTR, "")
    if trial.state == TrialState.FAIL:
        runner.log(f"trial {trial.number} failed: {error}")
    return trial.state, error
