"""``FolderLock``: one writer per folder, with flock and with the lease used where flock is unsupported.

Real processes fight over a run folder in tests/processes/ (test_reliability, test_folder_lock_processes); these
tests take the lock's cases one by one inside one process (flock locks belong to an open file, so two locks of one
process still exclude each other).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ofakd.run_folder import lock as lock_module
from ofakd.run_folder.lock import FolderLock, FolderLocked


def lease_file(path, **holder) -> None:
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "then", "heartbeat": time.time(),
                                "mode": "lease", "token": "theirs", **holder}))


@pytest.mark.parametrize("mode", ["flock", "lease"])
def test_a_second_lock_is_refused_naming_the_holder(tmp_path, mode):
    path = tmp_path / "run.lock"
    with FolderLock(path, "run folder x", mode=mode) as first:
        assert first.held_as == mode and json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(FolderLocked, match=f"run folder x is being written by pid {os.getpid()} on host "
                                               f"{socket.gethostname()}"):
            FolderLock(path, "run folder x", mode=mode).acquire()
    assert not path.exists()  # released: the file is gone, and the next writer takes the lock
    with FolderLock(path, "run folder x", mode=mode):
        pass


def test_a_file_system_without_flock_gets_a_lease(tmp_path, monkeypatch):
    def unsupported(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", unsupported)
    with FolderLock(tmp_path / "run.lock", "x") as lock:
        assert lock.held_as == "lease" and json.loads((tmp_path / "run.lock").read_text())["mode"] == "lease"
    with pytest.raises(FolderLocked, match="does not support flock; set OFAKD_LOCK=lease"):
        FolderLock(tmp_path / "run.lock", "x", mode="flock").acquire()


def test_a_fresh_lease_elsewhere_is_refused_and_a_stale_one_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("OFAKD_LEASE_SECONDS", "60")
    path = tmp_path / "run.lock"
    lease_file(path, heartbeat=time.time() - 5)
    with pytest.raises(FolderLocked, match=r"pid 1 on host elsewhere .*last heartbeat 5s ago; .* expires 55s from now"):
        FolderLock(path, "x", mode="lease").acquire()
    lease_file(path, heartbeat=time.time() - 61)  # its holder stopped beating a minute ago
    with FolderLock(path, "x", mode="lease") as lock:
        assert json.loads(path.read_text())["token"] == lock.token


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    path = tmp_path / "run.lock"
    lease_file(path, pid=int(dead), host=socket.gethostname())
    with FolderLock(path, "x", mode="lease") as lock:
        assert lock.held_as == "lease"


def test_the_heartbeat_keeps_a_lease_and_a_stalled_holder_loses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OFAKD_LEASE_SECONDS", "0.6")  # a heartbeat every 0.1 s
    path = tmp_path / "run.lock"
    holder = FolderLock(path, "run folder x", mode="lease").acquire()
    stamp = json.loads(path.read_text())["heartbeat"]
    time.sleep(1.2)
    assert json.loads(path.read_text())["heartbeat"] > stamp
    lease = json.loads(path.read_text())
    path.write_text(json.dumps({**lease, "host": "elsewhere"}))  # (so only the heartbeat's age decides)
    with pytest.raises(FolderLocked, match="being written by pid"):
        FolderLock(path, "x", mode="lease").acquire()

    holder._stop.set()  # the holder stalls: no heartbeat
    holder._heartbeat.join()
    time.sleep(0.8)
    other = FolderLock(path, "x", mode="lease").acquire()
    holder._stop.clear()
    holder._beat()  # the holder wakes up: its next beat finds the lease taken
    with pytest.raises(FolderLocked, match="lost its lock .* took it over; stopping"):
        holder.ensure_held()
    holder.release()
    assert json.loads(path.read_text())["token"] == other.token  # the holder did not remove the new lease
    other.release()


def test_release_removes_the_folders_made_for_the_lock_while_empty(tmp_path):
    from ofakd.run_folder.lock import missing_folders

    folder = tmp_path / "runs" / "run"
    made = missing_folders(folder)
    assert made == [folder, tmp_path / "runs"]
    folder.mkdir(parents=True)
    FolderLock(folder / "run.lock", "x", remove_folders=made).acquire().release()
    assert sorted(os.listdir(tmp_path)) == []  # a run that wrote nothing leaves nothing
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("kept")
    FolderLock(folder / "run.lock", "x", remove_folders=made).acquire().release()
    assert sorted(os.listdir(folder)) == ["config.yaml"]


@pytest.mark.parametrize("mode", ["flock", "lease"])
def test_a_lock_whose_folder_another_holder_removed_makes_it_again(tmp_path, mode):
    """Two recorders share ``locks/``: the first to finish removes it while empty, as the second comes to lock."""
    folder = tmp_path / "cache" / "locks"
    first = FolderLock(folder / "rank_0000.lock", "x", mode=mode, remove_folders=[folder]).acquire()
    first.release()
    assert not folder.exists()
    with FolderLock(folder / "rank_0001.lock", "x", mode=mode) as second:
        assert second.held_as == mode and (folder / "rank_0001.lock").is_file()


@pytest.mark.parametrize("mode", ["flock", "lease"])
def test_wait_takes_the_lock_once_its_holder_gives_it_back_and_else_names_the_holder(tmp_path, mode):
    import threading

    path = tmp_path / "setup.lock"
    holder = FolderLock(path, "cache x (setup)", mode=mode).acquire()
    with pytest.raises(FolderLocked, match="cache x \\(setup\\) is being written by pid"):
        FolderLock(path, "cache x (setup)", mode=mode).wait(0.2)
    threading.Timer(0.3, holder.release).start()
    waiter = FolderLock(path, "cache x (setup)", mode=mode)
    with waiter.wait(30) as held:  # entering a lock wait() took does not take it twice
        assert held is waiter and held.held_as == mode and holder.held_as is None
    assert not path.exists()
