"""bench/tune.py: the tuning benchmark in its smoke size, its refusal without the converged teachers, its table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO

BENCH = REPO / "bench"
DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_data = pytest.mark.skipif(not DATA.is_file(), reason="needs Fashion-MNIST: apt-get install dataset-fashion-mnist")


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "tune.py"), *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@needs_data
def test_tune_bench_smoke_tunes_both_pairs_and_runs_the_final_seeds(tmp_path):
    out = tmp_path / "tune"
    proc = _bench("--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / "tune.json").read_text())
    assert list(result["pairs"]) == ["cnn->mlp", "vit->cnn"] and result["seeds"] == [0, 1]
    for pair, row in result["pairs"].items():
        folder = out / pair.replace("->", "-to-")
        assert row["best"]["method"] in ("kd", "dkd", "dist", "ofa", "ofa+dist")
        tests = [json.loads((folder / "final" / f"s{seed}" / "test.json").read_text()) for seed in (0, 1)]
        assert row["test_top1"] == [t["top1"] for t in tests] and all(t["count"] == 128 for t in tests)
        cost = row["cost"]
        assert cost["trials"] == 3 and 3 <= cost["trial_epochs"] <= 6 and cost["final_epochs"] == 4
        assert result["fixed"][pair] is None  # the smoke store holds no converged student yet
        assert (folder / "best.yaml").is_file() and (folder / "report.md").is_file()
    table = (out / "tune.md").read_text()
    assert "| cnn->mlp |" in table and "| vit->cnn |" in table and "| — | — |" in table


def test_tune_bench_full_size_stops_clearly_without_the_converged_teachers(tmp_path):
    proc = _bench("--out", str(tmp_path / "out"), "--results", str(tmp_path / "empty-store"))
    assert proc.returncode == 1
    assert "teacher(s) cnn, vit are not in" in proc.stderr and "python bench/accuracy.py --converged" in proc.stderr


def test_tune_bench_table_sets_the_tuned_runs_beside_the_best_fixed_cell():
    sys.path.insert(0, str(BENCH))
    try:
        from tune import best_fixed, render
    finally:
        sys.path.remove(str(BENCH))
    cells = {"cnn->mlp|kd": {"variant": "kd", "mean": 80.0, "std": 0.5, "top1": [79.5, 80.0, 80.5]},
             "cnn->mlp|dist": {"variant": "dist", "mean": 81.0, "std": 0.5, "top1": [80.5, 81.0, 81.5]},
             "cnn->mlp|ofa": {"variant": "ofa", "mean": None, "std": None, "top1": []},
             "vit->cnn|kd": {"variant": "kd", "mean": 90.0, "std": None, "top1": [90.0]}}
    converged = {"regimes": {"low": {"cells": cells}}}
    assert best_fixed(converged, "cnn->mlp")["variant"] == "dist" and best_fixed(converged, "cnn->vit") is None
    result = {"size": "full", "budget": 30, "holdout": 500, "train_images": 5000, "seeds": [0, 1, 2],
              "pairs": {"cnn->mlp": {"best": {"method": "ofa", "lr": 0.003}, "test_top1": [82.0, 82.5, 83.0],
                                     "mean": 82.5, "std": 0.5, "epochs": 30,
                                     "cost": {"trial_epochs": 510, "final_epochs": 90}}},
              "fixed": {"cnn->mlp": {"variant": "dist", "mean": 81.0, "std": 0.5,
                                     "test": {"diff": 1.5, "p": 0.02}}}}
    assert "| cnn->mlp | ofa, lr 0.003 | 82.50 ± 0.50 | dist: 81.00 ± 0.50 | +1.50 (p 0.020) | 510 + 90 (20.0 runs) |" \
        in render(result)


def test_report_only_sets_recorded_tuned_runs_beside_the_store_as_it_is_now_without_training(tmp_path):
    committed = json.loads((REPO / "bench" / "results" / "tune" / "tune.json").read_text())
    stale = {**committed, "fixed": {pair: {"variant": "stale", "mean": 0.0, "std": None, "top1": [0.0]}
                                    for pair in committed["pairs"]}}
    source, out = tmp_path / "tune.json", tmp_path / "out"
    source.write_text(json.dumps(stale))
    proc = _bench("--report-only", str(source), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["tune.json", "tune.md"]  # no study, no run: nothing trained

    sys.path.insert(0, str(BENCH))
    try:
        from converged import SIZES
        from converged_report import collect
        from records import RESULTS, Store
        from tune import best_fixed
    finally:
        sys.path.remove(str(BENCH))
    converged = collect(Store(RESULTS), SIZES["converged"])
    result = json.loads((out / "tune.json").read_text())
    assert result["pairs"] == committed["pairs"]
    for pair, row in result["pairs"].items():
        fixed, expected = result["fixed"][pair], best_fixed(converged, pair)
        assert fixed["variant"] == expected["variant"] and fixed["mean"] == pytest.approx(expected["mean"])
        if fixed["test"] is not None:
            assert fixed["test"]["diff"] == pytest.approx(row["mean"] - expected["mean"])


def test_report_only_names_an_unreadable_result_and_the_committed_one(tmp_path):
    proc = _bench("--report-only", str(tmp_path / "missing.json"))
    assert proc.returncode == 1
    assert "missing.json" in proc.stderr and "bench/results/tune/tune.json" in proc.stderr


def test_report_only_refuses_a_json_that_is_not_a_tune_result(tmp_path):
    other = tmp_path / "record.json"
    other.write_text(json.dumps({"kind": "student", "test_top1": 80.0}))
    proc = _bench("--report-only", str(other))
    assert proc.returncode == 1
    assert "record.json is not a tuning benchmark's tune.json" in proc.stderr
