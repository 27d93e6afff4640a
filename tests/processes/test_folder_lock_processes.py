"""``FolderLock`` held by another process: a flock ends with its process (killed, a forked child still running)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from ofakd.run_folder.lock import FolderLock, FolderLocked

HOLDER = """
import os, sys, time
from ofakd.run_folder.lock import FolderLock
lock = FolderLock(sys.argv[1], "x", mode="flock").acquire()
if os.fork() == 0:  # a child forked while the lock is held, as a DataLoader worker is: it outlives its parent
    os.write(1, b"child running\\n")  # after the fork hooks, so its copy is closed by now (one write: whole lines)
    time.sleep(600)
    os._exit(0)
os.write(1, b"held\\n")
time.sleep(600)
"""


def test_flock_ends_with_its_process(tmp_path):
    """A SIGKILLed holder leaves its lock file behind, naming it; the lock itself is free at once, although a
    child the holder forked while holding it still runs."""
    path = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert {holder.stdout.readline().strip() for _ in range(2)} == {"held", "child running"}
        with pytest.raises(FolderLocked, match=f"pid {holder.pid}"):
            FolderLock(path, "x", mode="flock").acquire()
        holder.kill()
        holder.wait()
        assert json.loads(path.read_text())["pid"] == holder.pid
        with FolderLock(path, "x", mode="flock") as lock:
            assert lock.held_as == "flock"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the forked child too
