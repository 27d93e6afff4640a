"""``config.json`` of an export folder, in timm's own layout (what ``local-dir:`` and the Hub read).

    {"architecture": "vit_tiny_patch16_224", "num_classes": 10, "num_features": 64,
     "model_args": {"img_size": [32, 32], "patch_size": 4, "depth": 2, ...},
     "pretrained_cfg": {"input_size": [3, 32, 32], "mean": [...], "std": [...],
                        "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash", ...},
     "label_names": ["0", "1", ...],
     "ofakd": {"run": "NAME", "weights": "best.safetensors (EMA, epoch 3)", "ema": true,
               "weights_sha256": "...", "format": 2,
               "exports": {"onnx": {"files": ["model.onnx"], "sha256": {"model.onnx": "..."}, ...}}}}

timm builds the model from ``architecture`` + ``model_args`` and reads preprocessing from
``pretrained_cfg``; the ``ofakd`` block is provenance only, with no local path in it (the run folder by
name, the data set without its root): an export is made to be shared.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from .. import __version__
from ..run_folder.digest import tensors_sha256
from .student import StudentInfo

EXPORT_FORMAT = 2
"""The ``ofakd.format`` of the exports this ofakd writes: each export lists the sha256 of each of its files (an
export without ``format``, of an older ofakd, may not)."""

# Facts about the source checkpoint timm's default config carries that do not describe our weights.
_SOURCE_ONLY_KEYS = ("tag", "license", "origin_url", "paper_ids", "paper_name", "notes", "hf_hub_id", "url", "file")


def weights_digest(model: nn.Module) -> str:
    """sha256 of the state_dict's names, shapes, dtypes and bytes (identifies the exported weights)."""
    return tensors_sha256(model.state_dict())


def build_config(model: nn.Module, info: StudentInfo, digest: str) -> dict[str, Any]:
    """The timm ``config.json`` dict for ``model`` (as built by timm) with ``info``'s preprocessing."""
    from timm.models._hub import save_config_for_hf

    data_config = info.preprocess.to_timm()
    model_config: dict[str, Any] = {}
    if info.class_names and len(info.class_names) == info.num_classes:
        model_config["label_names"] = list(info.class_names)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        save_config_for_hf(model, str(path), model_config=model_config, data_config=data_config)
        config = json.loads(path.read_text())
    pretrained_cfg = config.get("pretrained_cfg", {})
    for key in _SOURCE_ONLY_KEYS:
        pretrained_cfg.pop(key, None)
    # Our preprocessing, exactly (timm keeps a channel-matched copy of what it is given).
    pretrained_cfg.update({k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()})
    config["ofakd"] = {  # provenance, without local paths: names only, and no data root
        "run": info.run_dir.name if info.run_dir is not None else None,
        "source": info.path.name,
        "weights": info.weights,
        "ema": info.ema,
        "epoch": info.epoch,
        "top1": info.top1,
        "data": info.data.model_copy(update={"root": None}).model_dump(mode="json") if info.data is not None else None,
        "weights_sha256": digest,
        "format": EXPORT_FORMAT,
        "ofakd_version": __version__,
        "exports": {},
    }
    return config


def merge_existing(new: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any] | None:
    """``new`` with the ``exports`` of ``existing`` when both describe the same weights; None when not."""
    if not existing:
        return new
    old = existing.get("ofakd") or {}
    if old.get("weights_sha256") != new["ofakd"]["weights_sha256"]:
        return None
    merged = json.loads(json.dumps(new))
    merged["ofakd"]["exports"] = {**(old.get("exports") or {}), **new["ofakd"]["exports"]}
    return merged


def read_config(path: Path) -> dict[str, Any] | None:
    """A folder's ``config.json`` or None (missing or unreadable: not JSON, not UTF-8 text, not a mapping)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def recorded_files(config: dict[str, Any] | None) -> set[str]:
    """The files of a folder that ofakd's exports wrote, as its ``config.json`` lists them (that file included);
    none for a folder without an ofakd ``config.json``."""
    ofakd = (config or {}).get("ofakd")
    exports = ofakd.get("exports") if isinstance(ofakd, dict) else None
    if not isinstance(exports, dict):
        return set()
    files = {f for entry in exports.values() if isinstance(entry, dict)
             for f in entry.get("files", []) if isinstance(f, str) and "/" not in f}
    return files | {"config.json"}


def write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(json.dumps(config, indent=2) + "\n")
