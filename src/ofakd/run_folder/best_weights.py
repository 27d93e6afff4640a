"""``best.safetensors``: the student's best weights alone, with its model recipe in the metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from .atomic import atomic_write


def save_weights(path: str | Path, model: nn.Module, metadata: dict[str, Any] | None = None) -> None:
    """The model's state_dict as safetensors, atomically; ``metadata`` values are stored as JSON strings."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": "pt", **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda f: f.write(data))


def read_weights_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata :func:`save_weights` stored (JSON-decoded), ``{}`` for other safetensors files."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
