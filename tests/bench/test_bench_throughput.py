"""Smoke test of bench/throughput.py in its smallest mode: every variant is measured and printed."""

import importlib.util
import sys

import torch

from tests import REPO

BENCH = REPO / "bench" / "throughput.py"


def test_throughput_bench_quick_mode_measures_every_variant(capsys):
    spec = importlib.util.spec_from_file_location("bench_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        rows = bench.main(["--quick", "--steps", "1", "--rounds", "1", "--threads", "1", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    variants = [r for r in rows if "variant" in r]
    assert [r["variant"] for r in variants[:6]] == [
        "student only", "KD", "OFA live", "OFA cache", "OFA floor", "teacher forward"
    ]
    assert len(variants) == 12
    assert all(r["images_per_s"] > 0 and r["step_s"] > 0 and r["gflops_per_s"] > 0 for r in variants)
    assert [r["ratio"] for r in variants if r["variant"] == "student only"] == [1.0, 1.0]
    by_name = {(r["pair"], r["variant"]): r["flops_ratio"] for r in variants}
    for pair in {r["pair"] for r in variants}:
        # the live teacher's forward and the branches are real arithmetic; a cache read is none
        assert by_name[pair, "OFA live"] > by_name[pair, "KD"] > 1.0
        assert by_name[pair, "KD"] > by_name[pair, "teacher forward"] > 0
        assert by_name[pair, "OFA live"] > by_name[pair, "OFA cache"] == by_name[pair, "OFA floor"] > 1.0
    extras = [r for r in rows if "branch_params_x" in r]
    assert len(extras) == 2 and all(r["branch_params_x"] > 0 and r["branch_flops_x"] > 0 for r in extras)
    out = capsys.readouterr().out
    assert "OFA cache" in out and "× student-only" in out
