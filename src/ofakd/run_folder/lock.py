"""One writer per folder: an exclusive lock on a file inside it, held for a run's (or recording's) life.

    lock = FolderLock(Path("runs/x/run.lock"), "run folder runs/x").acquire()   # FolderLocked if held
    ...                                                                        # only we write runs/x
    lock.release()

The lock is ``fcntl.flock`` on the lock file. The kernel releases it when the process ends, however it
ends (SIGKILL, the OOM killer), so a crashed run never leaves a folder locked; a lock file left behind
then names a process that holds nothing, and the next writer takes it. Processes forked while a lock
is held (DataLoader workers) close their copy of it at once, so the lock ends with the process that
took it. The file names its holder (PID, host, start time) for the error a second writer gets.

Where ``flock`` is unsupported (some network and parallel file systems answer ENOLCK or EOPNOTSUPP), or
where ``OFAKD_LOCK=lease`` asks for it (a shared file system whose flock only works within one machine),
the lock is a *lease*: the file is created exclusively (O_EXCL) and a thread rewrites its heartbeat every
``lease / 6`` seconds. A lease is stale once its heartbeat is older than ``OFAKD_LEASE_SECONDS`` (default
60) or, on the same host, once its process is gone; a stale lease is taken over. A holder that finds its
lease taken (it was stalled longer than the lease) stops at its next save (:meth:`FolderLock.ensure_held`).
Leases assume the machines' clocks agree to within a few seconds, and every machine must use the same
kind of lock on one file system.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path

from ..errors import OfakdError
from .no_links import open_no_follow

try:
    import fcntl
except ImportError:  # Windows: leases only
    fcntl = None

LEASE_SECONDS = 60.0
"""A lease whose heartbeat is older than this is stale (``OFAKD_LEASE_SECONDS`` overrides it)."""
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}
"""What ``flock`` answers on a file system that does not support it."""
_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES}


_HELD: weakref.WeakSet[FolderLock] = weakref.WeakSet()
"""The locks this process holds (a forked child lets go of its copies)."""


def _let_go_in_child() -> None:
    for lock in list(_HELD):
        lock._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_let_go_in_child)


class FolderLocked(OfakdError):
    """Another process writes the folder (or this one lost its lease); exit status 2."""


class FolderLock:
    """An exclusive lock on ``path`` (a file in the folder it guards); ``what`` names the folder in messages.

    ``mode``: "flock", "lease", or None for ``OFAKD_LOCK`` (default: flock, falling back to a lease where the
    file system does not support flock). ``remove_folders``: on release, remove these folders (deepest first)
    while they are empty: the ones made to hold the lock (:func:`missing_folders`), so a run that stopped
    before writing anything leaves no trace.
    """

    def __init__(self, path: str | Path, what: str, *, mode: str | None = None, remove_folders: Sequence[Path] = ()):
        self.path = Path(path)
        self.what = what
        self.mode = mode or os.environ.get("OFAKD_LOCK") or "auto"
        if self.mode not in ("auto", "flock", "lease"):
            raise OfakdError(f"OFAKD_LOCK={self.mode!r}: use flock or lease (or leave it unset)")
        self.lease_seconds = float(os.environ.get("OFAKD_LEASE_SECONDS") or LEASE_SECONDS)
        self.remove_folders = list(remove_folders)
        self.token = uuid.uuid4().hex
        self.held_as: str | None = None
        """"flock" or "lease" while held, else None."""
        self.lost: dict | None = None
        """The holder that took over this process's lease, if that happened."""
        self._fd: int | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # ---- taking and giving back ---------------------------------------------------------
    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderLocked` naming the holder."""
        if self.mode != "lease" and fcntl is not None and self._acquire_flock():
            self.held_as = "flock"
        elif self.mode == "flock":
            raise FolderLocked(f"{self.path}: the file system does not support flock; set OFAKD_LOCK=lease")
        else:
            self._acquire_lease()
            self.held_as = "lease"
        _HELD.add(self)
        return self

    def release(self) -> None:
        """Give the lock back and remove the lock file (and the empty ``remove_folders``)."""
        if self.held_as is None:
            return
        _HELD.discard(self)
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.held_as == "flock" or self._still_ours():
            with contextlib.suppress(OSError):
                self.path.unlink()  # (flock: while still locked, so a waiter sees the file is gone and retries)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.held_as = None
        for folder in self.remove_folders:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break

    def _forget(self) -> None:
        """In a forked child: close the inherited descriptor and hold nothing (the parent keeps the lock)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self.held_as, self._heartbeat = None, None, None

    def ensure_held(self) -> None:
        """Raise :class:`FolderLocked` when another process took this process's lease over."""
        if self.lost is not None:
            raise FolderLocked(
                f"{self.what}: this process lost its lock (its lease went stale while it was stalled) and "
                f"{_describe(self.lost)} took it over; stopping before writing anything more"
            )

    def wait(self, seconds: float, poll: float = 0.05) -> FolderLock:
        """Take the lock, waiting up to ``seconds`` for its holder to give it back (for a short critical section
        that several processes pass through in turn); :class:`FolderLocked` when it is still held then."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.acquire()
            except FolderLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(poll)

    def __enter__(self) -> FolderLock:
        return self if self.held_as is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # ---- flock --------------------------------------------------------------------------
    def _acquire_flock(self) -> bool:
        """Lock with flock; False when the file system does not support it."""
        for _ in range(100):  # another process may remove the file between our open and our lock: open again
            fd = _open(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in _UNSUPPORTED and os.fstat(fd).st_size == 0:
                    with contextlib.suppress(OSError):
                        self.path.unlink()  # the empty file just created: a lease is made with O_EXCL
                os.close(fd)
                if err.errno in _UNSUPPORTED:
                    return False
                if err.errno in _BUSY:
                    raise FolderLocked(self._held_message(_read_holder(self.path))) from None
                raise
            if _same_file(fd, self.path):
                self._fd = fd
                _write_holder(fd, self._holder("flock"))
                return True
            os.close(fd)
        raise FolderLocked(f"{self.what}: its lock file {self.path} keeps changing; is another process starting?")

    # ---- lease --------------------------------------------------------------------------
    def _acquire_lease(self) -> None:
        for _ in range(3):
            try:
                fd = _open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                holder = _read_holder(self.path)
                if not self._stale(holder):
                    raise FolderLocked(self._held_message(holder)) from None
                _remove_stale(self.path)
                continue
            try:
                _write_holder(fd, self._holder("lease"))
            finally:
                os.close(fd)
            self._heartbeat = threading.Thread(target=self._beat, name="ofakd-lease", daemon=True)
            self._heartbeat.start()
            return
        raise FolderLocked(self._held_message(_read_holder(self.path)))

    def _stale(self, holder: dict | None) -> bool:
        if holder is None:  # unreadable: treat as stale once the file itself is old
            with contextlib.suppress(OSError):
                return time.time() - self.path.stat().st_mtime > self.lease_seconds
            return True
        if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
            return True
        return time.time() - float(holder.get("heartbeat") or 0) > self.lease_seconds

    def _beat(self) -> None:
        """Rewrite the heartbeat every lease/6 seconds while the lease is ours."""
        while not self._stop.wait(self.lease_seconds / 6):
            holder = _read_holder(self.path)
            if holder is None or holder.get("token") != self.token:
                self.lost = holder or {}
                return
            with contextlib.suppress(OSError):
                fd = _open(self.path, os.O_RDWR)
                try:
                    _write_holder(fd, {**holder, "heartbeat": time.time()})
                finally:
                    os.close(fd)

    def _still_ours(self) -> bool:
        holder = _read_holder(self.path)
        return holder is not None and holder.get("token") == self.token

    # ---- who --------------------------------------------------------------------------------
    def _holder(self, mode: str) -> dict:
        now = time.time()
        return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "heartbeat": now, "mode": mode, "token": self.token}

    def _held_message(self, holder: dict | None) -> str:
        text = (f"{self.what} is being written by {_describe(holder)}; one process writes it at a time: wait "
                "for that one to finish, or stop it")
        if holder is not None and holder.get("mode") == "lease":
            age = max(0.0, time.time() - float(holder.get("heartbeat") or 0))
            text += (f" (a lease, last heartbeat {age:.0f}s ago; if that process is gone it expires "
                     f"{max(0.0, self.lease_seconds - age):.0f}s from now)")
        return text


def missing_folders(folder: str | Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing, folder = [], Path(folder)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _describe(holder: dict | None) -> str:
    if not holder or "pid" not in holder:
        return "another process (its lock file names no holder)"
    return f"pid {holder['pid']} on host {holder.get('host', '?')} (since {holder.get('since', '?')})"


def _open(path: Path, flags: int) -> int:
    """Open the lock file (never through a symbolic link: :class:`~ofakd.run_folder.no_links.LinkRefused`); its
    folder is made again when another holder removed it on release meanwhile."""
    for _ in range(3):
        try:
            return open_no_follow(path, flags)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
    return open_no_follow(path, flags)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _write_holder(fd: int, holder: dict) -> None:
    data = (json.dumps(holder) + "\n").encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    with contextlib.suppress(OSError):
        os.fsync(fd)


def _read_holder(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_stale(path: Path) -> None:
    """Move a stale lease aside, then delete it (two processes breaking it at once: one rename wins)."""
    aside = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, aside)
        aside.unlink()
