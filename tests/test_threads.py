"""Compute threads that fit the machine: affinity and cgroup CPU quotas (v1 and v2, read from files the tests
write), the user's OMP_NUM_THREADS and train.threads first, and the OpenMP wait policy set before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ofakd import threads
from ofakd.config import load_config


def cgroup_tree(tmp_path, membership: str, files: dict[str, str]):
    """A fake ``/sys/fs/cgroup`` under tmp_path/cg and a ``/proc/self/cgroup`` saying ``membership``."""
    root = tmp_path / "cg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    (tmp_path / "membership").write_text(membership + "\n")
    return root, tmp_path / "membership"


def test_cgroup_v2_quota_is_the_tightest_along_the_path(tmp_path):
    root, membership = cgroup_tree(tmp_path, "0::/job/step", {
        "cpu.max": "max 100000", "job/cpu.max": "150000 100000", "job/step/cpu.max": "300000 100000",
    })
    assert threads.cgroup_cpu_limit(root, membership) == 1.5
    assert threads.usable_cpus(root, membership) == 1  # rounded down: 2 threads on 1.5 CPUs get throttled


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    root, membership = cgroup_tree(tmp_path, "4:memory:/m\n3:cpu,cpuacct:/slurm/job7", {
        "cpu,cpuacct/slurm/job7/cpu.cfs_quota_us": "200000", "cpu,cpuacct/slurm/job7/cpu.cfs_period_us": "100000",
        "cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000",
    })
    assert threads.cgroup_cpu_limit(root, membership) == 2.0
    unlimited, membership = cgroup_tree(tmp_path / "none", "0::/", {"cpu.max": "max 100000"})
    assert threads.cgroup_cpu_limit(unlimited, membership) is None
    assert threads.cgroup_cpu_limit(tmp_path / "absent", tmp_path / "absent-membership") is None
    assert threads.usable_cpus(unlimited, membership) == len(os.sched_getaffinity(0))


def test_default_threads_follow_omp_num_threads_then_cpus_minus_workers(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads(workers=8) == 3  # the user's choice
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "usable_cpus", lambda *a: 8)
    assert threads.default_threads(workers=0) == 8
    assert threads.default_threads(workers=6) == 2
    assert threads.default_threads(workers=12) == 1


def test_train_threads_sets_torch_threads(tmp_path, monkeypatch):
    from ofakd.engine import fit

    monkeypatch.setattr(threads, "usable_cpus", lambda *a: 1)
    before = torch.get_num_threads()
    lines = []
    try:
        fit(load_config("demo", [
            ("data.train_subset", 16), ("data.val_subset", 8), ("train.batch_size", 8), ("train.epochs", 1),
            ("train.warmup_epochs", 0), ("method", {"name": "vanilla"}), ("teacher", {}), ("train.threads", 2),
            ("student", {"name": "test_byobnet", "input_size": [3, 16, 16]}),
            ("run.out_dir", str(tmp_path)), ("run.name", "run"),
        ]), progress=False, tensorboard=False, log=lines.append)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert any("device cpu (2 CPU threads)" in line for line in lines), lines
    with pytest.raises(Exception, match="threads"):
        load_config("demo", [("train.threads", 0)])


def test_quiet_waiting_threads_only_before_torch_and_never_over_the_user(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert not threads.quiet_waiting_threads()  # torch is loaded in this process: too late to matter
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delitem(sys.modules, "torch")  # as before torch loads
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert not threads.quiet_waiting_threads() and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert threads.quiet_waiting_threads() and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_importing_ofakd_sets_the_wait_policy_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    show = "import os, ofakd, torch; print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads() > 0)"
    done = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["PASSIVE", "True"]  # set by `import ofakd`, before torch (and OpenMP) loaded
