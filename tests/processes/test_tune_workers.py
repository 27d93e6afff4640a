"""``ofakd tune`` in several processes: two workers share one study's budget with no trial lost or run twice, and
a killed worker's trial is failed by its heartbeat while the study goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from ofakd.tuning.study import counts, open_storage
from tests.tuning_runs import save_tiny_teacher, tiny_flags


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"))


def _worker(teacher_file, out, budget: int, *extra: str, epochs: int = 2) -> subprocess.Popen:
    """``ofakd tune`` of kd in a process of its own (no final run)."""
    argv = [sys.executable, "-m", "ofakd", "tune", *tiny_flags(teacher_file, epochs), "--budget", str(budget),
            "--out", str(out), "--methods", "kd", "--holdout", "32", *extra, "--final-seeds"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _trials(out) -> list[optuna.trial.FrozenTrial]:
    """The trials of the study in ``out`` (none while it is being made)."""
    if not (out / "study.db").is_file():
        return []
    try:
        storage = open_storage(f"sqlite:///{out / 'study.db'}", heartbeat_s=1)
        return optuna.load_study(study_name=out.name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # the first worker has not made the study yet
        return []


@pytest.mark.slow
def test_two_workers_finish_the_budget_between_them_with_no_trial_lost_or_run_twice(teacher_file, tmp_path):
    out = tmp_path / "shared"
    workers = [_worker(teacher_file, out, 6, "--heartbeat", "2") for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    trials = _trials(out)
    ran = [t for t in trials if counts(t)]
    assert len(ran) == 6 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ran)
    assert all("surplus" in t.user_attrs and "run_dir" not in t.user_attrs for t in trials if not counts(t))
    assert len({t.user_attrs["worker"] for t in ran}) == 2  # both worked
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == [f"trial-{t.number:04d}" for t in ran]  # a run folder per counted trial, no other
    for t in ran:  # each trained once: its log holds each of its epochs once
        evals = [json.loads(line) for line in (out / "trials" / f"trial-{t.number:04d}" / "metrics.jsonl").open()]
        assert [e["epoch"] for e in evals if e["kind"] == "eval"] == list(range(1, t.user_attrs["epochs"] + 1))


@pytest.mark.slow
def test_a_killed_workers_trial_is_marked_failed_and_the_study_goes_on(teacher_file, tmp_path):
    out = tmp_path / "killed"
    flags = ("--heartbeat", "1", "--pruner", "none")
    first = _worker(teacher_file, out, 3, *flags, epochs=6)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            if any(t.state == TrialState.RUNNING and "run_dir" in t.user_attrs for t in _trials(out)):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the first worker never started a trial: {first.communicate()[0] if first.poll() else ''}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = _worker(teacher_file, out, 3, *flags, epochs=6)
    log = second.communicate(timeout=600)[0]
    assert second.returncode == 0, log
    trials = _trials(out)
    assert trials[0].state == TrialState.FAIL and "error" not in trials[0].user_attrs  # failed by the heartbeat
    assert [t.state for t in trials[1:] if counts(t)] == [TrialState.COMPLETE] * 3  # the budget, all run by the second
    assert {t.user_attrs["worker"] for t in trials[1:]} != {trials[0].user_attrs["worker"]}
