"""Atomic, verified file writes and the run's checkpoints.

Every file is written to a temporary file in the same folder, flushed and fsynced, checked, then
``os.replace``d over the old one: a crash, a full disk or a file-size limit mid-save leaves the
previous file whole (a failed write raises :class:`CheckpointWriteError`, exit status 74).

``last.pt`` holds only tensors and plain containers and loads with ``weights_only=True``: a file
that holds pickled code is refused (:class:`CheckpointRefused`), never run. Before it replaces
the old ``last.pt`` the new one is re-read and every member's CRC-32 checked (``torch.load`` does
not check them); the old one is kept as ``last.prev.pt``. On resume a truncated or corrupt
``last.pt`` is reported and ``last.prev.pt`` used (:func:`load_resume_state`).
``best.safetensors`` holds the student's weights alone, with its model recipe in the metadata.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from ..errors import EXIT_WRITE_FAILED, OfakdError
from ..models.weights import refused_object


class CheckpointWriteError(OfakdError):
    """A file could not be written (disk full, file-size limit, read-only, no permission); the
    file it was to replace is intact."""

    exit_code = EXIT_WRITE_FAILED


class CheckpointRefused(OfakdError):
    """A checkpoint holds pickled objects beyond tensors and plain containers (it could run code)."""


class CheckpointDamaged(OfakdError):
    """A checkpoint is missing, truncated, corrupt or not an ofakd ``last.pt``."""


_FIXES = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free space within your disk quota",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or write to another disk",
    errno.EROFS: "the disk is read-only: write to another folder (--out-dir)",
    errno.EACCES: "make the folder writable or write to another one (--out-dir)",
    errno.EPERM: "make the folder writable or write to another one (--out-dir)",
}


WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""Errors that mean "this disk cannot take the file" (full, quota, file-size limit, read-only)."""


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
    name (a hard link, so ``path`` exists at every moment). An ``OSError`` becomes a one-line
    :class:`CheckpointWriteError` and the old file stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    existed = path.exists()
    try:
        with open(tmp, "wb") as f:
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
        if keep_previous is not None and existed:
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


def _keep_previous(path: Path, previous: Path) -> None:
    """Make ``previous`` name the file ``path`` names now (``path`` itself is left in place)."""
    link = previous.with_name(f".{previous.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        try:
            os.link(path, link)
        except OSError:  # no hard links here: copy (the old file then exists twice for a moment)
            with open(path, "rb") as src, open(link, "wb") as dst:
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
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ---------------------------------------------------------------------------- last.pt


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.pt`` -> ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def file_problem(path: str | Path) -> str | None:
    """None when ``path`` is a whole torch zip file (every member's CRC-32 matches), else the problem."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return f"truncated or not a PyTorch checkpoint ({size} bytes, no zip directory at its end)"
    except (OSError, EOFError, ValueError, zipfile.LargeZipFile) as err:
        return f"unreadable ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    if bad is not None:
        return f"corrupt: the data of {bad!r} fails its CRC-32 check"
    return None


class _WholeWrites:
    """The binary file ``torch.save`` writes to: each ``write`` writes everything or fails. torch's zip
    writer swallows an exception raised in ``write`` and later fails with a RuntimeError about positions,
    so the first ``OSError`` (disk full, file-size limit) is kept in :attr:`error` to be raised instead."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        if self.error is not None:
            raise self.error
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                n = self.file.write(view[done:])
                if not n:
                    raise OSError(errno.EIO, "short write", getattr(self.file, "name", None))
                done += n
        except OSError as err:
            self.error = err
            raise
        return done

    def flush(self) -> None:
        self.file.flush()


def _torch_save(state: dict, file: IO[bytes]) -> None:
    sink = _WholeWrites(file)
    try:
        torch.save(state, sink)
    except RuntimeError:
        if sink.error is not None:
            raise sink.error from None
        raise
    if sink.error is not None:
        raise sink.error


def save_state(path: str | Path, state: dict, *, keep_previous: bool = False) -> None:
    """``torch.save`` ``state`` atomically (tensors and plain containers only), re-read and CRC-checked
    before it replaces ``path``; with ``keep_previous`` the replaced file becomes :func:`previous_path`."""
    atomic_write(path, lambda f: _torch_save(state, f), verify=file_problem,
                 keep_previous=previous_path(path) if keep_previous else None)


def load_state(path: str | Path) -> dict:
    """Load a ``last.pt`` with ``weights_only=True`` after checking its CRCs. A missing, damaged or
    foreign file raises :class:`CheckpointDamaged`; one holding pickled code :class:`CheckpointRefused`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointDamaged(f"{path} does not exist: nothing to resume (the run saved no epoch yet)")
    problem = file_problem(path)
    if problem is not None:
        raise CheckpointDamaged(f"{path} is not a readable checkpoint: {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = refused_object(err)
        if refused is None:  # the bytes are no pickle: damaged, not dangerous
            raise CheckpointDamaged(f"{path} is not a readable checkpoint ({str(err).splitlines()[0]})") from None
        raise CheckpointRefused(refusal(path, refused)) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointDamaged(f"{path} is not a readable checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointDamaged(f"{path} is not an ofakd last.pt (no 'epoch' in it)")
    return state


def refusal(path: str | Path, detail: str) -> str:
    """The message for a checkpoint that ``weights_only=True`` refused (``detail``: what it refused)."""
    return (
        f"refused to load {path}: it holds pickled objects beyond tensors ({detail}), which could run code; "
        "ofakd loads checkpoints with weights_only=True only. Use a checkpoint ofakd wrote, or re-save the "
        "state_dict (torch.save(model.state_dict(), ...)) or as safetensors"
    )


def load_resume_state(path: str | Path, log: Callable[[str], None] = print) -> tuple[dict, Path]:
    """The checkpoint to resume from: ``path`` when whole, else (reported through ``log``) the
    previous one kept beside it. Returns the state and the file it came from.

    A file refused for safety is never skipped over silently: it stops with :class:`CheckpointRefused`.
    """
    path = Path(path)
    previous = previous_path(path)
    try:
        return load_state(path), path
    except CheckpointDamaged as err:
        if not previous.is_file():
            raise CheckpointDamaged(
                f"{err}, and there is no {previous.name} to fall back to; nothing to resume: start the run again "
                "(--overwrite)"
            ) from None
        first = str(err)
    try:
        state = load_state(previous)
    except CheckpointDamaged as err:
        raise CheckpointDamaged(f"{first}; {err}; nothing to resume: start the run again (--overwrite)") from None
    log(f"warning: {first}; resuming from the previous checkpoint {describe_checkpoint(previous, state)} instead")
    return state, previous


def describe_checkpoint(path: str | Path, state: dict) -> str:
    """``runs/x/last.pt (step 40, end of epoch 2)`` or ``(step 45, 5 steps into epoch 3)``."""
    batches = int(state.get("epoch_step") or 0)
    where = f"{batches} steps into epoch {state['epoch'] + 1}" if batches else f"end of epoch {state['epoch']}"
    return f"{path} (step {state.get('step')}, {where})"


# ---------------------------------------------------------------------------- weights


def save_weights(path: str | Path, model: nn.Module, metadata: dict[str, Any] | None = None) -> None:
    """The model's state_dict as safetensors, atomically; ``metadata`` values are stored as JSON strings."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": "pt", **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda f: f.write(data))


def read_weights_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata :func:`save_weights` stored (JSON-decoded), ``{}`` for other safetensors files."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
