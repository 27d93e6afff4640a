"""``best.safetensors``: the student's best weights alone, with its recipe in the metadata.

The metadata is a :class:`StudentMetadata`, stored as ``ofakd_<field>`` keys with JSON values:
enough to rebuild the student without its run folder (``ofakd eval``, ``ofakd export``).
``ofakd_sha256`` holds the content hash: sha256 of the other ``ofakd_*`` metadata (as JSON, keys
sorted) and of every tensor (:func:`~ofakd.run_folder.digest.tensors_sha256`). :func:`read_weights`
checks it; a file that fails is :class:`WeightsDamaged`, never used. ``ofakd_format`` (2) says the file is
of the format that always carries the hash: such a file without it (removed or renamed) is damaged too. Only a
file of an older ofakd (``ofakd_*`` keys, no ``ofakd_format``) is read unhashed, with a warning; a file ofakd
did not write (no ``ofakd_*`` keys) is read as it is.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from ..errors import OfakdError
from .atomic import atomic_write
from .digest import tensors_sha256

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


class WeightsDamaged(OfakdError):
    """A weights file's content differs from the hash recorded when it was written."""


HASH_KEY = KEY_PREFIX + "sha256"
FORMAT_KEY, FORMAT = KEY_PREFIX + "format", "2"
"""The format of the files this ofakd writes: every one carries :data:`HASH_KEY`."""


def save_weights(path: str | Path, model: nn.Module, metadata: StudentMetadata | None = None) -> None:
    """The model's state_dict as safetensors, atomically, with ``metadata`` (its values as JSON strings)
    and the content hash."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    recorded = metadata.to_metadata() if metadata is not None else {}
    meta = {"format": "pt", **{k: json.dumps(v) for k, v in recorded.items()}, FORMAT_KEY: FORMAT}
    meta[HASH_KEY] = _content_sha256(tensors, meta)
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda f: f.write(data))


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, after checking its content hash when it carries one.
    Raises :class:`WeightsDamaged` when the content differs; a file safetensors cannot read raises
    safetensors' own error."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    recorded = meta.get(HASH_KEY)
    fix = "restore it from a copy (for a run's best.safetensors, or use its last.pt: --weights last)"
    if recorded is not None and recorded != _content_sha256(tensors, meta):
        raise WeightsDamaged(f"{path} is damaged: its tensors or metadata differ from the sha256 recorded when it "
                             f"was written; {fix}")
    if recorded is None and FORMAT_KEY in meta:
        raise WeightsDamaged(f"{path} is damaged: its metadata lacks the {HASH_KEY} that every file of its format "
                             f"({FORMAT_KEY} {meta[FORMAT_KEY]}) carries, so its content cannot be checked; {fix}")
    if recorded is None and any(key.startswith(KEY_PREFIX) for key in meta):
        warnings.warn(f"{path} carries no content hash (written by an older ofakd): it is used unchecked",
                      stacklevel=2)
    return tensors


def _content_sha256(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    ours = {key: value for key, value in meta.items() if key.startswith(KEY_PREFIX) and key != HASH_KEY}
    return tensors_sha256(tensors, header=json.dumps(ours, sort_keys=True))


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
