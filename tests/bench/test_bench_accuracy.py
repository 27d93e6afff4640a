"""Smoke tests of bench/accuracy.py in its smallest modes: every expected cell is run and reported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO

BENCH = REPO / "bench" / "accuracy.py"
DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

PAIRS = ["cnn->vit", "vit->cnn", "cnn->mlp"]
METHODS = ["vanilla", "kd", "dkd", "dist", "fitnet", "ofa", "rsd"]
needs_data = pytest.mark.skipif(not DATA.is_file(), reason="needs Fashion-MNIST: apt-get install dataset-fashion-mnist")


def _bench(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@needs_data
def test_accuracy_bench_smoke_reports_every_pair_and_method(tmp_path):
    out = tmp_path / "acc"
    _bench("--smoke", "--out", str(out))

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


@needs_data
def test_converged_bench_smoke_fills_every_cell_with_tests_and_cka(tmp_path):
    sys.path.insert(0, str(BENCH.parent))
    try:
        from converged import SIZES, VARIANT_KEYS, uses_cache
    finally:
        sys.path.remove(str(BENCH.parent))
    size = SIZES["converged-smoke"]
    out = tmp_path / "conv"
    _bench("--converged", "--smoke", "--successors", "--out", str(out))

    data = json.loads((out / "converged.json").read_text())
    pat = data["successors"]["cells"]["cnn->vit|pat"]  # PAT beside KD, DIST and OFA in the low regime
    assert pat["seeds"] == list(size.seeds) and all(0.0 <= v <= 100.0 for v in pat["top1"])
    assert set(data["successors"]["tests"]) == {f"cnn->vit|pat vs {r}" for r in ("kd", "dist", "ofa", "ofa-w1")}
    assert list(data["regimes"]) == [r.key for r in size.regimes]
    for key, regime in data["regimes"].items():
        for pair in size.pairs:
            for variant in VARIANT_KEYS:  # every cell: every seed's final top-1 on the test images
                cell = regime["cells"][f"{pair}|{variant}"]
                assert cell["seeds"] == list(size.seeds), (key, pair, variant)
                assert all(0.0 <= v <= 100.0 for v in cell["top1"]) and cell["std"] is not None
            tests = regime["tests"][pair]
            assert set(tests) == {"ofa vs kd", "ofa vs dist", "ofa-w1 vs kd", "ofa+dist vs kd", "ofa+dist vs dist",
                                  "best vs runner-up"}
            for name, test in tests.items():
                a, b = name.split(" vs ") if name != "best vs runner-up" else (test["best"], test["runner_up"])
                spread = regime["cells"][f"{pair}|{a}"]["std"] + regime["cells"][f"{pair}|{b}"]["std"]
                if spread > 0:  # Welch's t is defined: it was computed
                    assert 0.0 <= test["p"] <= 1.0 and test["df"] > 0, (key, pair, name, test)
            assert pair in regime["plateau"]
    # logit-only methods (and the ofa+dist combination) were served by the teacher-output cache
    assert uses_cache("ofa+dist") and uses_cache("kd") and not uses_cache("fitnet") and not uses_cache("vanilla")
    config = (out / "runs" / "full" / "cnn-to-vit" / "ofa+dist-s0" / "config.yaml").read_text()
    assert "caches/cnn-full" in config
    assert set(data["cka"]) == {f"{p}|{r}|{v}" for p in size.cka_pairs for r in size.cka_regimes for v in size.cka_variants}
    assert (out / "cka-cnn-to-vit.png").stat().st_size > 0
    table = (out / "converged.md").read_text()
    assert "Welch" in table and "| cnn->vit |" in table and "—" not in table.split("## Regime")[1].split("Welch")[0]

    # every run left a record in the result store (OUT/results for the smoke size), the teacher its weights
    results = out / "results"
    records = sorted(p.relative_to(results).as_posix() for p in (results / "runs").rglob("*.json"))
    assert len(records) == (sum(len(size.seeds) * len(VARIANT_KEYS) for _ in size.regimes) + len(size.seeds)) * len(size.pairs)
    record = json.loads((results / "runs" / "low" / "cnn-to-vit" / "ofa-s1.json").read_text())
    assert record["test_top1"] == data["regimes"]["low"]["cells"]["cnn->vit|ofa"]["top1"][1]
    assert record["data_path"] == "batched" and record["cell"]["data_loader"] == "batched" and record["commit"]
    assert len(record["curve"]) == record["epochs"] and record["seed"] == 1
    assert (results / "teachers" / "cnn" / "best.safetensors").is_file()
    assert "teachers/cnn/best.safetensors" in config  # students distil from the stored teacher

    # resumable from the records alone: without the working folders nothing runs again, and --report-only
    # rebuilds the same tables
    import shutil

    for working in ("runs", "teachers", "caches", "cka"):
        shutil.rmtree(out / working)
    (out / "converged.md").unlink()
    proc = _bench("--converged", "--smoke", "--out", str(out))
    assert "ran 0 job(s)" in proc.stdout
    _bench("--converged", "--smoke", "--out", str(out), "--report-only")
    again = json.loads((out / "converged.json").read_text())
    assert again["regimes"] == data["regimes"] and again["cka"] == data["cka"] and again["teachers"] == data["teachers"]
    # a record whose grid cell changed (here: its digest) no longer counts and its run is due again
    record["cell_digest"] = "0" * 16
    (results / "runs" / "low" / "cnn-to-vit" / "ofa-s1.json").write_text(json.dumps(record))
    _bench("--converged", "--smoke", "--out", str(out), "--report-only")
    stale = json.loads((out / "converged.json").read_text())["regimes"]["low"]["cells"]["cnn->vit|ofa"]
    assert stale["seeds"] == [0]
