"""Content hashes (sha256) of what ofakd writes and later reads back: checked on every read, so a
damaged file is an error naming it, never silently used."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch


def tensors_sha256(tensors: Mapping[str, torch.Tensor], header: str = "") -> str:
    """sha256 of ``header`` then, by sorted name, each tensor's name, shape, dtype and raw bytes."""
    digest = hashlib.sha256(header.encode())
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | Path, start: int = 0, length: int | None = None) -> str:
    """sha256 of a file's bytes (``length`` bytes from ``start``; default: all), read in 4 MiB chunks."""
    digest = hashlib.sha256()
    left = float("inf") if length is None else length
    with open(path, "rb") as f:
        f.seek(start)
        while left > 0 and (chunk := f.read(int(min(left, 1 << 22)))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()
