"""Atomic, verified file writes, and one-line errors for the writes that fail.

Every file is written to a temporary file in the same folder, flushed and fsynced, optionally
re-read and checked, then ``os.replace``d over the old one: a crash, a full disk or a file-size
limit mid-save leaves the previous file whole. A failed write raises :class:`CheckpointWriteError`
(exit status 74) naming the file, the reason and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .. import finite_json
from ..errors import EXIT_WRITE_FAILED, OfakdError
from .no_links import open_no_follow, refuse_link


class CheckpointWriteError(OfakdError):
    """A file could not be written (disk full, file-size limit, read-only, no permission); the
    file it was to replace is intact."""

    exit_code = EXIT_WRITE_FAILED


_FIXES = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free space within your disk quota",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or write to another disk",
    errno.EROFS: "the disk is read-only: write to another folder",
    errno.EACCES: "make the folder writable or write to another one",
    errno.EPERM: "make the folder writable or write to another one",
}


WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""Errors that mean "this disk cannot take the file" (full, quota, file-size limit, read-only)."""


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """An ``OSError`` in the block (a folder that cannot be made, a file that cannot be written) becomes a
    one-line :class:`CheckpointWriteError` (exit status 74) naming the file, else ``path``."""
    try:
        yield
    except OSError as err:
        raise write_error(err, err.filename or path) from err


def write_error(err: OSError, path: str | Path, *, existed: bool | None = None) -> CheckpointWriteError:
    """A one-line :class:`CheckpointWriteError` for ``err`` raised while writing ``path``."""
    path = Path(path)
    existed = path.exists() if existed is None else existed
    reason = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
    kept = f"the previous {path.name} is intact" if existed else "nothing was replaced"
    fix = _FIXES.get(err.errno, "check the disk and the folder's permissions")
    return CheckpointWriteError(f"cannot write {path} ({reason}); {kept}; {fix}")


def atomic_write(
    path: str | Path,
    write: Callable[[IO[bytes]], None],
    *,
    verify: Callable[[Path], str | None] | None = None,
    keep_previous: str | Path | None = None,
) -> None:
    """Call ``write(file)`` on a temporary file next to ``path`` and move it into place atomically.

    ``verify(tmp)`` (optional) re-reads the written file and returns a problem or None; the file
    replaces ``path`` only when it is whole. ``keep_previous``: keep the replaced file under this
    name (a hard link, so ``path`` exists at every moment), but only when it passes ``verify`` too:
    a damaged file never replaces the good one kept there. An ``OSError`` becomes a one-line
    :class:`CheckpointWriteError` and the old file stays as it was.
    """
    path = Path(path)
    refuse_link(path)
    tmp = temporary_name(path)
    existed = path.exists()
    try:
        with os.fdopen(_create_temporary(tmp), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            problem = verify(tmp)
            if problem is not None:
                raise CheckpointWriteError(
                    f"{path} was written but does not read back whole ({problem}); the disk or file system is "
                    f"failing: {'the previous ' + path.name + ' is intact' if existed else 'nothing was replaced'}"
                )
        if keep_previous is not None and existed and (verify is None or verify(path) is None):
            _keep_previous(path, Path(keep_previous))
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise write_error(err, path, existed=existed) from err
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def temporary_name(path: Path) -> Path:
    """Where this process writes ``path``'s next content before renaming it into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def is_temporary(path: Path) -> bool:
    """True for a file some process is writing (or died writing) in place of another (:func:`temporary_name`)."""
    return path.name.startswith(".") and ".tmp-" in path.name


def _create_temporary(tmp: Path) -> int:
    """A new, empty ``tmp``: what an earlier process of the same id left there is removed first; a link placed
    there is never followed."""
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    return open_no_follow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def remove_temporaries(folder: str | Path, of: str = "*") -> list[Path]:
    """Remove the temporary files that interrupted writes (a SIGKILL mid-save) left in ``folder`` in place of files
    named like ``of`` (a glob); called by the one writer of those files, under its lock, when it starts. Returns
    what it removed."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in Path(folder).iterdir():
            target = entry.name[1:].rsplit(".tmp-", 1)[0]
            if is_temporary(entry) and fnmatch.fnmatchcase(target, of) and (entry.is_symlink() or entry.is_file()):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _keep_previous(path: Path, previous: Path) -> None:
    """Make ``previous`` name the file ``path`` names now (``path`` itself is left in place)."""
    refuse_link(previous)
    link = temporary_name(previous)
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        try:
            os.link(path, link)
        except OSError:  # no hard links here: copy (the old file then exists twice for a moment)
            with open(path, "rb") as src, os.fdopen(_create_temporary(link), "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(link, previous)
    except BaseException:
        with contextlib.suppress(OSError):
            link.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem allows it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as JSON (NaN/inf as null), atomically."""
    write_text(path, finite_json.dumps(obj, indent=2, sort_keys=False) + "\n")
