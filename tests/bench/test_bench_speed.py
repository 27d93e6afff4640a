"""bench/overhead.py, bench/loader.py and bench/data_path.py in their smallest modes: the bare loop computes the same
loss as the engine's distiller, every case is measured and printed (timings are never asserted); and the converged
benchmark's statistics (bench/stats.py) against hand-computed values."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from tests import REPO

BENCH = REPO / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_bare_ofa_loop_computes_the_engines_loss(tmp_path):
    overhead = load("overhead")
    case = next(c for c in overhead.CASES if "OFA" in c.name)
    trainer = overhead.build_trainer(case, str(tmp_path), "cpu", steps=1)
    images, targets = next(iter(trainer.setup.bundle.train_loader))
    bare = overhead.BareLoop(trainer)
    _, losses = trainer.setup.distiller(images, overhead.soft_targets(targets, 10, trainer.cfg.augment.smoothing))
    assert set(losses) == {"gt", "kd", "ofa_s1", "ofa_s2", "ofa_s3", "ofa_s4"}
    torch.testing.assert_close(bare.ofa_loss(images, targets), sum(losses.values()))


def test_overhead_bench_measures_and_prints(capsys):
    overhead = load("overhead")
    rows = overhead.main(["--device", "cpu", "--steps", "1", "--rounds", "1", "--cases", "0"])
    assert len(rows) == 1 and rows[0]["ratio"] > 0 and rows[0]["optimizer"] == "AdamW"
    assert rows[0]["cuda_syncs"] is None
    assert "| demo ViT, 32 px, student only | 64 | AdamW |" in capsys.readouterr().out


def test_loader_bench_measures_kept_and_restarted_workers(capsys):
    loader = load("loader")
    rows = loader.main(["--images", "16", "--batch", "8", "--epochs", "2", "--workers", "0", "1", "--step-steps", "0"])
    assert [(r["workers"], r["persistent"]) for r in rows] == [(0, False), (1, False), (1, True)]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "| 1 | yes |" in capsys.readouterr().out


def test_data_path_bench_times_both_paths_of_a_run(tmp_path, capsys):
    data_path = load("data_path")
    rows = data_path.main(["--cases", "vit-p7-d48-L4", "--images", "256", "--batch-size", "32", "--steps", "2",
                           "--rounds", "1", "--out", str(tmp_path)])
    assert [r["case"] for r in rows] == ["vit-p7-d48-L4"]
    row = rows[0]
    assert row["per_image_images_per_s"] > 0 and row["batched_images_per_s"] > 0 and len(row["bare_steps"]) == 3
    bare = row["bare_steps"]  # bare, per-image run, bare, batched run, bare: each run against its neighbours
    assert row["ratio_per_image"] == pytest.approx(row["per_image_images_per_s"] / ((bare[0] + bare[1]) / 2))
    assert row["ratio_batched"] == pytest.approx(row["batched_images_per_s"] / ((bare[1] + bare[2]) / 2))
    runs = tmp_path / "runs"
    summaries = {p: __import__("json").loads((runs / f"vit-p7-d48-L4-{p}" / "summary.json").read_text())
                 for p in ("per_image", "batched")}
    assert {p: s["data_path"] for p, s in summaries.items()} == {"per_image": "per_image", "batched": "batched"}
    assert "| vit-p7-d48-L4 |" in capsys.readouterr().out


def test_holm_adjusts_a_family_of_p_values_by_hand():
    stats = load("stats")
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1, never below an earlier step
    assert stats.holm([]) == []


def test_welch_matches_a_hand_computed_test():
    stats = load("stats")
    result = stats.welch([1.0, 2.0, 3.0], [4.0, 6.0, 8.0])
    # means 2 and 6, variances 1 and 4: t = -4 / sqrt(1/3 + 4/3), df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2)
    assert result["diff"] == -4.0 and result["t"] == pytest.approx(-4 / (5 / 3) ** 0.5)
    assert result["df"] == pytest.approx((5 / 3) ** 2 / ((1 / 9) / 2 + (16 / 9) / 2))
    assert result["p"] == pytest.approx(0.054787, abs=1e-5)  # scipy.stats.ttest_ind(..., equal_var=False)
