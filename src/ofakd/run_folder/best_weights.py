"""``best.safetensors``: the student's best weights alone, with its recipe in the metadata.

The metadata is a :class:`StudentMetadata`, stored as ``ofakd_<field>`` keys with JSON values:
enough to rebuild the student without its run folder (``ofakd eval``, ``ofakd export``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from .atomic import atomic_write

KEY_PREFIX = "ofakd_"
"""Each :class:`StudentMetadata` field is stored under this prefix + its name (``ofakd_num_classes``)."""


@dataclass(frozen=True)
class StudentMetadata:
    """What ``best.safetensors`` records about its student; a field missing from the file is None."""

    model: str | None = None
    """The timm model name."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The kwargs it was built with (``student.kwargs``)."""
    num_classes: int | None = None
    input_size: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    class_names: list[str] | None = None
    data: dict[str, Any] | None = None
    """The run's ``data:`` section (a DataConfig as JSON)."""
    source: str | None = None
    """Which weights: "model" (the trained student) or "ema" (its EMA)."""
    epoch: int | None = None
    top1: float | None = None

    @property
    def ema(self) -> bool | None:
        """True for EMA weights, False for the plain student, None when the file does not say."""
        return {"ema": True, "model": False}.get(self.source)

    def to_metadata(self) -> dict[str, Any]:
        """The ``ofakd_*`` keys and their (JSON-serialisable) values."""
        return {KEY_PREFIX + f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> StudentMetadata:
        """Read back :meth:`to_metadata`'s keys (any other key is ignored)."""
        values = {f.name: metadata.get(KEY_PREFIX + f.name) for f in fields(cls)}
        values["kwargs"] = dict(values["kwargs"] or {})
        return cls(**values)


def save_weights(path: str | Path, model: nn.Module, metadata: StudentMetadata | None = None) -> None:
    """The model's state_dict as safetensors, atomically, with ``metadata`` (its values as JSON strings)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    recorded = metadata.to_metadata() if metadata is not None else {}
    meta = {"format": "pt", **{k: json.dumps(v) for k, v in recorded.items()}}
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda f: f.write(data))


def read_weights_metadata(path: str | Path) -> dict[str, Any]:
    """A safetensors file's metadata, each value JSON-decoded where it is JSON (``{}`` when none)."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def read_student_metadata(path: str | Path) -> StudentMetadata:
    """The :class:`StudentMetadata` of a ``.safetensors`` file (all None for a file ofakd did not write)."""
    return StudentMetadata.from_metadata(read_weights_metadata(path))
