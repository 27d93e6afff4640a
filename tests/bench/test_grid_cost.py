"""What the converged grid costs, computed from the wall times its records carry (bench/grid_cost.py)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest

from tests import REPO

BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
from converged import ABLATION, SIZES, SUCCESSORS, VARIANTS, record_folder, student_cell  # noqa: E402,I001
from grid_cost import grid_cost  # noqa: E402
from records import Store, digest  # noqa: E402

sys.path.remove(str(BENCH))

SIZE = SIZES["converged-smoke"]  # one pair (cnn->vit), seeds 0 and 1, low 128 images x 1 epoch, full 256 x 1
LOW, FULL = SIZE.regimes
PAIR = SIZE.pairs[0]
BY_KEY = {v.key: v for v in (*VARIANTS, *ABLATION, *SUCCESSORS)}


def record(store: Store, regime, variant: str, seed: int, wall: float, *, cell: dict | None = None) -> None:
    cell = cell or student_cell(SIZE, regime, PAIR, BY_KEY[variant], seed)
    path = store.run_path(regime.key, record_folder(PAIR, variant), variant, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cell_digest": digest(cell), "test_top1": 50.0, "wall_time_s": wall}))


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path)
    record(store, LOW, "kd", 0, 100.0)
    record(store, LOW, "kd", 1, 300.0)
    record(store, LOW, "ofa", 0, 60.0)
    return store


def parts(store: Store, **kwargs) -> dict[str, dict]:
    return {p["part"]: p for p in grid_cost(store, SIZE, **kwargs)["parts"]}


def test_recorded_runs_are_summed_and_a_missing_run_costs_its_variants_median(store):
    low = parts(store)["regime `low`"]
    assert (low["recorded"], low["runs"]) == (3, len(VARIANTS) * 2)
    assert low["measured_h"] == pytest.approx(460 / 3600)
    # ofa s1: ofa's median (60); the 7 variants without a record (14 runs): the part's median run (100)
    assert low["left_h"] == pytest.approx((60 + 14 * 100) / 3600)


def test_a_regime_without_records_scales_the_low_regimes_runs_by_image_epochs(store):
    full = parts(store)["regime `full`"]
    scale = (256 * 1) / (128 * 1)
    assert (full["recorded"], full["measured_h"]) == (0, 0)
    expected = 2 * 200 * scale + 2 * 60 * scale + (len(VARIANTS) - 2) * 2 * 100 * scale
    assert full["left_h"] == pytest.approx(expected / 3600)


def test_ablation_variants_cost_ofas_run_and_successors_their_step_factor(store):
    found = parts(store, ablation=True, successors=True)
    assert found["ablation"]["left_h"] == pytest.approx(len(ABLATION) * 2 * 60 / 3600)
    assert found["successors"]["left_h"] == pytest.approx(2 * 60 * 8.0 / 3600)  # PAT: 8 OFA steps


def test_a_record_of_another_cell_is_not_counted(store):
    record(store, LOW, "dist", 0, 1e6, cell={"another": "grid"})
    low = parts(store)["regime `low`"]
    assert low["recorded"] == 3
    assert low["measured_h"] == pytest.approx(460 / 3600)


def test_the_fastest_pace_takes_each_kinds_fastest_recorded_run(store):
    low = parts(store)["regime `low`"]
    # ofa s1: ofa's fastest (60); the 14 runs of variants without a record: the part's fastest run (60)
    assert low["left_fastest_h"] == pytest.approx((60 + 14 * 60) / 3600)


def test_a_missing_run_costs_its_own_pairs_then_its_teachers_runs_before_the_variants_median(tmp_path):
    """PAT runs the teacher with autograd: its cost follows the teacher, not the method's median over pairs."""
    size = replace(SIZE, pairs=("cnn->vit", "vit->cnn", "cnn->mlp", "vit->mlp"), seeds=(0, 1))
    store = Store(tmp_path)
    walls = {("cnn->vit", 0): 1000.0, ("vit->cnn", 0): 100.0, ("vit->cnn", 1): 120.0}
    for (pair, seed), wall in walls.items():
        path = store.run_path(LOW.key, record_folder(pair, "pat"), "pat", seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        cell = student_cell(size, LOW, pair, BY_KEY["pat"], seed)
        path.write_text(json.dumps({"cell_digest": digest(cell), "test_top1": 50.0, "wall_time_s": wall}))
    found = {p["part"]: p for p in grid_cost(store, size, successors=True)["parts"]}["successors"]
    # cnn->vit s1: its pair's 1000; cnn->mlp s0, s1: the CNN teacher's 1000; vit->mlp s0, s1: the ViT teacher's 110
    assert found["left_h"] == pytest.approx((1000 + 2 * 1000 + 2 * 110) / 3600)
    assert found["left_fastest_h"] == pytest.approx((1000 + 2 * 1000 + 2 * 100) / 3600)
