"""``last.pt``: everything a run needs to resume, saved atomically and verified, loaded safely.

``last.pt`` holds only tensors and plain containers and loads with ``weights_only=True``: a file
that holds pickled code is refused (:class:`CheckpointRefused`), never run. Before it replaces
the old ``last.pt`` the new one is re-read and every member's CRC-32 checked (``torch.load`` does
not check them); the old one is kept as ``last.prev.pt``. On resume a truncated or corrupt
``last.pt`` is reported and ``last.prev.pt`` used (:func:`load_resume_state`).
"""

from __future__ import annotations

import errno
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from ..errors import OfakdError
from ..torch_load import refused_object
from .atomic import atomic_write
from .layout import previous_path


class CheckpointRefused(OfakdError):
    """A checkpoint holds pickled objects beyond tensors and plain containers (it could run code)."""


class CheckpointDamaged(OfakdError):
    """A checkpoint is missing, truncated, corrupt or not an ofakd ``last.pt``."""


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


STUDENT_PREFIX = "student."
"""Where the student's weights are in a ``last.pt``'s ``distiller`` state (the distiller's ``.student``)."""
EMA_PREFIX = "module."
"""Where the averaged model's weights are in a ``last.pt``'s ``ema`` state (timm's ``ModelEmaV3.module``)."""


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, the prefix removed: a submodule's own state_dict
    (e.g. the student's, ``strip_prefix(ckpt["distiller"], STUDENT_PREFIX)``); ``{}`` when none."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
