"""Compute threads that fit the machine as it is: the CPUs this process may use, and waiting threads that sleep.

torch starts one OpenMP thread per core it sees, and OpenMP threads that wait at a barrier spin for a
while before they sleep. On a machine shared with other busy processes (a CI runner, a cluster node
whose cgroup quota is smaller than its core count), a spinning waiter takes the core its straggling
sibling needs, and a training step can get ten times slower. So:

* :func:`quiet_waiting_threads` sets ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once) when
  the user has not set it. The OpenMP runtime reads it once, when torch loads, so ``ofakd/__init__.py``
  calls this first thing; it does nothing once torch is loaded.
* :func:`default_threads`: the compute-thread count of a run, ``train.threads`` unset: the user's
  ``OMP_NUM_THREADS`` when set, else the usable CPUs (:func:`usable_cpus`: affinity mask and cgroup
  CPU quota) minus the data-loader worker processes, at least 1.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")


def quiet_waiting_threads() -> bool:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set, before torch (and its OpenMP runtime) loads. True if set here."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def _ancestors(path: str) -> list[str]:
    """``a/b`` -> ``["a/b", "a", ""]``: a cgroup and the cgroups above it (whose limits apply too)."""
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota(quota: str | None, period: str | None) -> float | None:
    """CPUs allowed by ``quota``/``period`` microseconds; None for no limit ("max" or -1) or unreadable."""
    try:
        q, p = float(quota), float(period)
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> float | None:
    """The CPUs a cgroup CPU quota allows this process (the tightest along its cgroup path), or None.

    cgroup v2: ``cpu.max`` holds ``QUOTA PERIOD`` (``max`` for none); v1: ``cpu.cfs_quota_us`` (-1 for
    none) over ``cpu.cfs_period_us`` in the ``cpu`` controller's hierarchy."""
    text = _read(membership)
    if text is None:
        return None
    limits = []
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: one unified hierarchy
            for rel in _ancestors(path):
                words = (_read(root / rel / "cpu.max") or "").split()
                limits.append(_quota(*words[:2]) if len(words) >= 2 else None)
        elif "cpu" in controllers.split(","):
            for mount in {controllers, "cpu", "cpu,cpuacct"}:
                for rel in _ancestors(path):
                    folder = root / mount / rel
                    limits.append(_quota(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")))
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def usable_cpus(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (rounded down, at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, membership)
    if limit is not None:
        cpus = min(cpus, max(int(math.floor(limit)), 1))
    return max(cpus, 1)


def default_threads(workers: int = 0) -> int:
    """Compute threads for a run with ``workers`` data-loader processes: ``OMP_NUM_THREADS`` when the user
    set it, else :func:`usable_cpus` minus the workers (each keeps a CPU busy decoding), at least 1."""
    try:
        chosen = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        chosen = 0
    if chosen > 0:
        return chosen
    return max(usable_cpus() - max(int(workers), 0), 1)


def apply_threads(requested: int | None, workers: int = 0) -> int:
    """Set torch's intra-op threads to ``requested`` (``train.threads``) or :func:`default_threads`; return it."""
    import torch

    threads = requested or default_threads(workers)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
