"""bench/gpu_check.py: its CPU smoke run reports every check with the values it compared (and a tolerance those
values miss fails the check); the runner reports a failed, raising or slow check and goes on to the next."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests import REPO

BENCH = REPO / "bench"
CHECKS = ["precision_ofa_map", "precision_ofa_token", "precision_kd", "cache_equals_live",
          "resume_equals_uninterrupted", "torchrun_nccl", "speed_deit_t_to_resnet18", "speed_resnet50_to_deit_t",
          "speed_cifar_loaders"]


def gpu_check(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--device", "cpu", "--smoke", "--out", str(out),
                           *args], capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu-check")
    done = gpu_check(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.mark.slow
def test_the_smoke_run_passes_every_check(smoke):
    report, _ = smoke
    checks = by_name(report)
    assert list(checks) == CHECKS
    assert {name: c["status"] for name, c in checks.items()} == dict.fromkeys(CHECKS, "pass")
    env = report["environment"]
    assert env["mode"] == "smoke" and env["device"] == "cpu" and env["torch"] == torch.__version__
    assert env["device_name"] and env["driver"] is None and env["ofakd"]
    assert report["counts"] == {"pass": len(CHECKS), "fail": 0, "error": 0, "timeout": 0, "skipped": 0}


@pytest.mark.slow
def test_each_precision_is_compared_step_by_step_with_float32(smoke):
    report, table = smoke
    checks = by_name(report)
    for name, compiled in (("precision_ofa_map", "bf16 compiled, channels-last"), ("precision_ofa_token", "bf16 compiled"),
                           ("precision_kd", "fp16 compiled + GradScaler")):
        rows = {v["variant"]: v for v in checks[name]["details"]["variants"]}
        assert list(rows) == ["fp32 eager", "fp32 channels-last", "bf16 eager", "fp16 eager + GradScaler", compiled]
        reference = rows["fp32 eager"]["losses"]
        assert len(reference) == 3 and all(math.isfinite(x) for x in reference)  # smoke: 3 steps
        for variant in rows.values():
            if variant["precision"] == "fp16":  # ofakd refuses fp16 autocast off CUDA
                assert variant["status"] == "skipped" and "CUDA" in variant["reason"]
            elif variant["variant"] != "fp32 eager":
                worst = max(abs(a - r) / abs(r) for a, r in zip(variant["losses"], reference))
                assert variant["reference_losses"] == reference and variant["max_rel_diff"] == pytest.approx(worst)
                assert variant["rtol"] == report["loss_rtol"][variant["precision"]] and worst <= variant["rtol"]
                assert variant["status"] == "pass"
        assert {v.get("data_path") for v in rows.values()} == {"batched", None}  # the digits in memory; fp16 not run
        assert rows["bf16 eager"]["max_rel_diff"] > 0  # bf16 rounds differently: the comparison is of real values
        assert f"| {name} | bf16 eager | pass |" in table
        # dynamo traced the OFA training forwards (eager backend); KD compiles under fp16, which needs a GPU
        assert rows[compiled]["compile"] and rows[compiled]["status"] == ("skipped" if name == "precision_kd" else "pass")


@pytest.mark.slow
def test_a_cached_teacher_and_a_resume_inside_an_epoch_end_bit_for_bit_equal_on_a_cpu(smoke):
    report, table = smoke
    checks = by_name(report)
    for name, compared in (("cache_equals_live", "live vs cached"),
                           ("resume_equals_uninterrupted", "uninterrupted vs crashed-resumed")):
        d = checks[name]["details"]
        assert (d["compared"], d["max_abs_diff"], d["atol"], d["bitwise_equal"]) == (compared, 0.0, 0.0, True)
        assert d["repeat_max_abs_diff"] == 0.0
        assert f"| {name} | {compared} | per_image | 0 | 0 | yes | 0 |" in table
        assert d["data_path"] == "per_image"  # a Dataset given to ofakd.fit
    resume = checks["resume_equals_uninterrupted"]["details"]
    assert resume["resumed_from_step"] == 4 and resume["resumed_inside_epoch"]  # 3 steps an epoch: 1 into epoch 2


@pytest.mark.slow
def test_torchrun_runs_ofakd_distill_in_a_process_group_of_its_own(smoke):
    report, _ = smoke
    d = by_name(report)["torchrun_nccl"]["details"]
    assert (d["backend"], d["expected_backend"], d["world_size"], d["all_reduce"]) == ("gloo", "gloo", 1, 1.0)
    assert d["cli_exit_code"] == 0 and d["run_complete"] and d["losses_finite"] and d["run_device"] == "cpu"
    assert d["data_path"] == "batched"  # the bundled digits, held in memory


@pytest.mark.slow
def test_the_speed_table_has_every_variant_of_both_pairs(smoke):
    report, table = smoke
    checks = by_name(report)
    for name, label in (("speed_deit_t_to_resnet18", "DeiT-T -> ResNet18"), ("speed_resnet50_to_deit_t", "ResNet50 -> DeiT-T")):
        d = checks[name]["details"]
        assert (d["pair"], d["size"], d["batch"], d["amp"]) == (label, 32, 8, "bf16")
        assert [(r["variant"], r["channels_last"]) for r in d["rows"]] == [
            (v, layout) for layout in (False, True) for v in ("student only", "OFA live teacher", "OFA cached teacher")]
        assert all(r["images_per_s"] > 0 and r["step_s"] > 0 for r in d["rows"])
        assert [r["x_student_only"] for r in d["rows"] if r["variant"] == "student only"] == [1.0, 1.0]
        assert all(r["images_per_s"] == pytest.approx(8 / r["step_s"]) for r in d["rows"])
        assert sum("teacher_forward_images_per_s" in r for r in d["rows"]) == 2
        recording = d["recording"]
        assert recording["images"] == 16 and recording["images_per_s"] > 0 and recording["workers"] == 0
        assert f"| {label} | {d['recipe']} | channels-last | OFA cached teacher |" in table


@pytest.mark.slow
def test_cifar_size_data_runs_end_to_end_on_both_data_paths(smoke):
    report, table = smoke
    d = by_name(report)["speed_cifar_loaders"]["details"]
    assert [(r["loader"], r["data_path"], r["workers"]) for r in d["rows"]] == [("per_image", "per_image", 0),
                                                                               ("batched", "batched", 0)]
    assert all(r["images_per_s"] > 0 for r in d["rows"]) and d["steps_per_epoch"] == 3
    assert "| batched | 0 |" in table


@pytest.mark.slow
def test_a_tolerance_the_losses_miss_fails_the_check_and_the_run(tmp_path):
    done = gpu_check(tmp_path, "--only", "precision_kd", "--tolerance", "bf16=1e-9")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [c["name"] for c in report["checks"]] == ["precision_kd"] and report["loss_rtol"]["bf16"] == 1e-9
    check = report["checks"][0]
    rows = {v["variant"]: v for v in check["details"]["variants"]}
    assert check["status"] == "fail" and rows["bf16 eager"]["status"] == "fail"
    assert rows["bf16 eager"]["max_rel_diff"] > rows["bf16 eager"]["rtol"] == 1e-9
    assert rows["fp32 channels-last"]["status"] == "pass"  # the others are judged as before
    assert "| precision_kd | fail |" in (tmp_path / "gpu_check.md").read_text()


# ----------------------------------------------------------------------------- the runner


@pytest.fixture
def runner():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check
        from gpu_check_context import SMOKE, Context, Skip
    finally:
        sys.path.remove(str(BENCH))
    return gpu_check, Context(device=torch.device("cpu"), sizes=SMOKE, work=Path("."), smoke=True), Skip


def test_the_runner_reports_each_failure_and_goes_on(runner):
    gpu_check, ctx, skip = runner

    def fails(ctx, details):
        details["compared"] = [1.0, 2.0]
        return False

    def raises(ctx, details):
        raise ValueError("a broken path")

    def skips(ctx, details):
        raise skip("needs a GPU")

    def slow(ctx, details):
        details["started"] = True
        while True:
            time.sleep(0.01)

    def passes(ctx, details):
        details["left_s"] = ctx.seconds_left()
        return True

    checks = [gpu_check.Check(name, name, run, budget) for name, run, budget in (
        ("fails", fails, 1), ("raises", raises, 1), ("skips", skips, 1), ("passes", passes, 1), ("slow", slow, 0.5))]
    lines: list[str] = []
    written: list[list[str]] = []  # the report is written after each check: a killed run keeps what ran
    results = gpu_check.run_checks(checks, ctx, total_s=600, smoke=False, log=lines.append,
                                   after_each=lambda so_far: written.append([r["status"] for r in so_far]))
    got = {r["name"]: r for r in results}
    assert [r["status"] for r in results] == ["fail", "error", "skipped", "pass", "timeout"]
    assert written == [[r["status"] for r in results][:n] for n in range(1, 6)]
    assert got["fails"]["details"] == {"compared": [1.0, 2.0]}
    assert got["raises"]["reason"] == "ValueError: a broken path" and "raise ValueError" in got["raises"]["traceback"]
    assert got["skips"]["reason"] == "needs a GPU"
    assert 0 < got["passes"]["details"]["left_s"] <= 1
    assert got["slow"]["details"] == {"started": True}  # what it did before its time ran out
    assert got["slow"]["reason"].startswith("ran past its 0.5s budget") and 0.5 <= got["slow"]["seconds"] < 5
    assert lines[4].startswith("slow: timeout") and len(lines) == 5
    # the total caps each budget, and a check is not started with less than 5 s (or its own budget) left
    capped = gpu_check.run_checks([gpu_check.Check("passes", "", passes, 60)], ctx, total_s=8, smoke=False, log=print)
    assert capped[0]["status"] == "pass" and capped[0]["budget_s"] <= 8 and capped[0]["details"]["left_s"] <= 8
    late = gpu_check.run_checks([gpu_check.Check("late", "", passes, 60)], ctx, total_s=4, smoke=False, log=print)
    assert (late[0]["status"], late[0]["reason"], late[0]["details"]) == ("skipped", "no time left of the 4s total", {})


def test_the_budgets_fit_eight_minutes_with_start_up(runner):
    gpu_check, _, _ = runner
    assert [c.name for c in gpu_check.CHECKS] == CHECKS
    assert sum(c.budget_s for c in gpu_check.CHECKS) <= gpu_check.GPU_TOTAL_S <= 450  # imports, the report: 30 s
