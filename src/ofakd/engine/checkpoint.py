"""Atomic file writes and the run's checkpoints.

Every file is written to a temporary file in the same folder, flushed and fsynced, then
``os.replace``d over the old one: a crash mid-save leaves the previous file whole.
``last.pt`` holds only tensors and plain containers and loads with ``weights_only=True``;
``best.safetensors`` holds the student's weights alone, with its model recipe in the metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from ..errors import OfakdError


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file next to ``path`` and move it into place atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


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


def save_state(path: str | Path, state: dict) -> None:
    """``torch.save`` ``state`` atomically (tensors and plain containers only)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_state(path: str | Path) -> dict:
    """Load a ``last.pt`` with ``weights_only=True``; a clear error for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise OfakdError(f"{path} does not exist: nothing to resume (the run saved no epoch yet)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise OfakdError(f"{path} is not a readable checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise OfakdError(f"{path} is not an ofakd last.pt (no 'epoch' in it)")
    return state


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
