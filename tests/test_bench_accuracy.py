"""Smoke test of bench/accuracy.py in its smallest mode (--smoke): every pair and method runs and is reported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "accuracy.py"
DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

PAIRS = ["cnn->vit", "vit->cnn", "cnn->mlp"]
METHODS = ["vanilla", "kd", "dkd", "dist", "fitnet", "ofa", "rsd"]


@pytest.mark.skipif(not DATA.is_file(), reason="needs Fashion-MNIST: apt-get install dataset-fashion-mnist")
def test_accuracy_bench_smoke_reports_every_pair_and_method(tmp_path):
    out = tmp_path / "acc"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    result = json.loads((out / "accuracy.json").read_text())
    rows = result["rows"]
    assert [(r["pair"], r["method"]) for r in rows] == [
        (pair, m) for pair in PAIRS
        for m in [f"teacher ({'vit_tiny' if pair == 'vit->cnn' else 'test_resnet'})", *METHODS]
    ]
    sources = {r["method"]: r["teacher"] for r in rows if r["pair"] == "cnn->vit"}
    assert sources["vanilla"] == "none" and sources["fitnet"] == sources["rsd"] == "live"
    assert {sources[m] for m in ("kd", "dkd", "dist", "ofa")} == {"cache"}
    assert all(r["seeds"] == [0] and 0.0 <= r["final_top1"] <= 100.0 for r in rows)

    table = (out / "accuracy.md").read_text()
    for pair in PAIRS:
        assert f"| {pair} |" in table
    for pair in ("cnn-to-vit", "vit-to-cnn", "cnn-to-mlp"):
        report = out / "report" / pair
        assert (report / "curves.png").stat().st_size > 0
        text = (report / "report.md").read_text()
        assert text.count("| fashion-mnist |") == 1 + len(METHODS)  # the teacher's run, then one per method
