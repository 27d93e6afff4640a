"""The converged grid's job list: which jobs it holds and in what order they start (bench/converged.py)."""

from __future__ import annotations

import json
import sys

from tests import REPO

BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
from converged import SIZES, all_jobs, run_dir  # noqa: E402,I001
from records import Store  # noqa: E402

sys.path.remove(str(BENCH))

SIZE = SIZES["converged-smoke"]


def test_a_cka_job_starts_before_any_training_run_once_its_student_is_finished(tmp_path):
    out, store = tmp_path / "out", Store(tmp_path / "store")
    regime = next(r for r in SIZE.regimes if r.key in SIZE.cka_regimes)
    pair = SIZE.cka_pairs[0]
    trained = run_dir(out, regime.key, pair, "kd", 0)
    trained.mkdir(parents=True)
    (trained / "summary.json").write_text(json.dumps({"complete": True}))

    jobs = all_jobs(out, SIZE, "cpu", store)
    training = [j for j in jobs if not j.id.startswith(("cka ", "teacher ", "cache "))]
    cka = {j.id: j for j in jobs if j.id.startswith("cka ")}
    ready = cka[f"cka {regime.key} {pair} kd s0"]

    assert training and ready.priority > max(j.priority for j in training)
    # the CKA of a student still to train waits for it, whatever its priority
    waiting = cka[f"cka {regime.key} {pair} ofa s0"]
    assert f"{regime.key} {pair} ofa s0" in waiting.needs
