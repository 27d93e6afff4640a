"""The converged report's CKA story: per-seed CKA summaries and the Welch/Holm tests that say whether OFA's students
are closer to their teacher than KD's (bench/converged_report.py)."""

from __future__ import annotations

import json
import statistics
import sys

import pytest

from tests import REPO

BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
from converged import SIZES, record_folder  # noqa: E402,I001
from converged_report import cka_significance, cka_summary, render_cka  # noqa: E402
from records import Store  # noqa: E402

sys.path.remove(str(BENCH))

SIZE = SIZES["converged-smoke"]  # CKA: cnn->vit, full regime, seeds 0 and 1
PAIR, REGIME = SIZE.cka_pairs[0], SIZE.cka_regimes[0]
DIAGONALS = {  # per variant, per seed: the diagonal of a 4 x 4 teacher-vs-student CKA matrix
    "scratch": ([0.80, 0.70, 0.60, 0.50], [0.81, 0.71, 0.59, 0.50]),
    "kd": ([0.82, 0.72, 0.61, 0.52], [0.83, 0.72, 0.62, 0.51]),
    "ofa": ([0.90, 0.85, 0.75, 0.70], [0.91, 0.86, 0.74, 0.71]),
    "ofa-w1": ([0.82, 0.71, 0.62, 0.53], [0.84, 0.73, 0.60, 0.50]),
}


def write_cka(store: Store, variant: str, seed: int, diagonal: list[float]) -> None:
    matrix = [[diagonal[i] if i == j else 0.1 for j in range(4)] for i in range(4)]
    path = store.cka_path(REGIME, record_folder(PAIR, variant), variant, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"matrix": matrix, "names_teacher": ["t1", "t2", "t3", "t4"],
                                "names_student": ["s1", "s2", "s3", "s4"]}))


@pytest.fixture
def summary(tmp_path):
    store = Store(tmp_path)
    for variant, seeds in DIAGONALS.items():
        for seed, diagonal in zip(SIZE.seeds, seeds):
            write_cka(store, variant, seed, diagonal)
    return cka_summary(store, SIZE)


def test_the_summary_keeps_each_seeds_mean_diagonal_cka(summary):
    entry = summary[f"{PAIR}|{REGIME}|ofa"]
    assert entry["seeds"] == 2
    assert entry["seed_means"] == pytest.approx([statistics.fmean(d) for d in DIAGONALS["ofa"]])
    assert entry["diagonal"] == pytest.approx([statistics.fmean(s) for s in zip(*DIAGONALS["ofa"])])


def test_ofa_closer_to_the_teacher_than_kd_is_told_apart_and_a_tie_is_not(summary):
    tests = cka_significance(summary)[f"{PAIR}|{REGIME}"]
    means = {v: statistics.fmean(statistics.fmean(d) for d in seeds) for v, seeds in DIAGONALS.items()}

    clear, tie = tests["ofa vs kd"], tests["ofa-w1 vs kd"]
    assert clear["diff"] == pytest.approx(means["ofa"] - means["kd"], abs=1e-4)
    assert clear["p"] < 0.05 and tie["p"] > 0.3
    assert all(t["p_holm"] >= t["p"] for t in tests.values())  # Holm over the five comparisons only raises p


def test_the_report_prints_the_cka_comparisons_with_three_decimals(summary):
    data = {"cka": summary, "cka_tests": cka_significance(summary)}
    row = next(line for line in render_cka(data) if line.startswith("| pair | regime | kd vs scratch")).splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:2] == [PAIR, REGIME]
    ofa_vs_kd = cells[3]
    assert ofa_vs_kd.startswith("+0.134 (p ") and "Holm" in ofa_vs_kd and ofa_vs_kd.endswith("* †")
