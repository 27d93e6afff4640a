"""bench/overhead.py and bench/loader.py in their smallest modes: the bare loop computes the same loss as the
engine's distiller, every case is measured and printed (timings are never asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


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
