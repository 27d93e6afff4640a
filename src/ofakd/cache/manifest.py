"""``manifest.json``: everything a recording depends on, and the checks a run makes against it.

Fields (JSON)::

    format, version            "ofakd-teacher-cache", 2 (1: a cache of an older ofakd, whose block markers
                               carry no sha256; read with a warning, and never reported as verified)
    teacher                    name, kwargs, checkpoint (path, informational), checkpoint_sha256
                               (sha256 of that file, or null), weights_sha256 (sha256 of the loaded
                               state_dict's tensors), num_classes, num_features (D_t, sizes OFA's
                               branches), input_size / mean / std / interpolation (its input spec)
    student_input              input_size, mean, std: what the data is prepared for (the teacher saw
                               these views after the engine's teacher-input adapter)
    dataset                    name, fingerprint (contents and split), num_classes, views (the data
                               path that made the views: batched or per_image)
    transforms                 the augment fields that shape a training view (every one but
                               crop_pct, which is validation only, and smoothing, which touches
                               targets only)
    data_seed, batch_size, world_size, epochs, steps_per_epoch, views_per_epoch
    storage, k                 "full" (k = K) or "topk"
    precision                  the autocast mode the teacher ran under (none, bf16, fp16)
    recorded_with              ofakd, torch and timm versions (informational)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.config import AugmentConfig
from ..errors import CacheMismatchError
from ..run_folder.digest import file_sha256

FORMAT = "ofakd-teacher-cache"
VERSION = 2
"""The format this ofakd records: every block's marker carries the sha256 of its rows."""
READABLE_VERSIONS = (1, 2)
UNHASHED_VERSIONS = (1,)
"""Formats whose block markers carry no sha256 (an older ofakd's): the only caches read without them."""
VIEW_AUGMENT_FIELDS = tuple(
    name for name in AugmentConfig.model_fields if name not in ("crop_pct", "smoothing")
)
INFORMATIONAL = ("teacher.checkpoint", "teacher.pretrained", "recorded_with")
"""Manifest fields that do not change the recorded logits."""
LEAF_DICTS = ("teacher.kwargs", "recorded_with")
"""Mapping-valued fields compared whole."""


def plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 over the sorted state_dict: each key, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def view_transforms(augment: AugmentConfig) -> dict[str, Any]:
    dumped = augment.model_dump(mode="json")
    return {name: dumped[name] for name in VIEW_AUGMENT_FIELDS}


def spec_dict(spec) -> dict[str, Any]:
    return plain({"input_size": spec.input_size, "mean": spec.mean, "std": spec.std})


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the mappings named in :data:`LEAF_DICTS` stay whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in LEAF_DICTS:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def request_fields(cfg, *, fingerprint: str, views: str, student_spec, world_size: int) -> dict[str, Any]:
    """The manifest fields a run with config ``cfg`` needs, dotted (``teacher.*`` only where the
    config names the teacher: a cache can stand in for an unnamed one)."""
    fields: dict[str, Any] = {}
    teacher = cfg.teacher
    if teacher.name:
        fields["teacher.name"] = teacher.name
        fields["teacher.kwargs"] = dict(teacher.kwargs)
    if teacher.checkpoint:
        fields["teacher.checkpoint_sha256"] = (
            file_sha256(teacher.checkpoint)
            if Path(teacher.checkpoint).is_file()
            else f"(missing file {teacher.checkpoint})"
        )
    for name in ("input_size", "mean", "std"):
        if getattr(teacher, name) is not None:
            fields[f"teacher.{name}"] = getattr(teacher, name)
    fields["dataset.fingerprint"] = fingerprint
    fields["dataset.views"] = views
    fields.update({f"transforms.{k}": v for k, v in view_transforms(cfg.augment).items()})
    fields.update({f"student_input.{k}": v for k, v in spec_dict(student_spec).items()})
    fields["data_seed"] = cfg.data_seed
    fields["batch_size"] = cfg.train.batch_size
    fields["world_size"] = world_size
    return plain(fields)


def check_fields(directory, manifest: dict[str, Any], requested: dict[str, Any], fix: str = "") -> None:
    """Raise :class:`CacheMismatchError` for the first requested field whose recorded value differs."""
    recorded = flatten(manifest)
    for field, value in requested.items():
        if recorded.get(field) != value:
            raise CacheMismatchError(directory, field, recorded.get(field), value, fix)


def resume_differences(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """First field (other than informational ones and ``epochs``) where two manifests differ."""
    skip = {*INFORMATIONAL, "epochs"}
    a, b = flatten(old), flatten(new)
    for field in list(b) + [f for f in a if f not in b]:
        if field in skip:
            continue
        if a.get(field) != b.get(field):
            return field, a.get(field), b.get(field)
    return None
