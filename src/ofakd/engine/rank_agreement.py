"""The processes of a torchrun job must run one run: the same settings, data and teacher weights.

Each process resolves its own config and data from its own command line and files, so a launch that gives one
node another flag, data folder or teacher file would train together on rank 0's recorded settings without a
word. At start the processes compare a short digest of each (one all-gather of a short string) and, when they
differ, stop with status 2 naming what differs (for settings, the first key and its values).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..config.schema import RESUME_SAFE_KEYS, RunConfig, lookup
from ..errors import ConfigError
from .processes import DistContext
from .saving import teacher_sha256

PER_PROCESS_KEYS = (*RESUME_SAFE_KEYS, "teacher.checkpoint", "run.out_dir")
"""Settings that may differ between processes: those that do not change what is computed (a node's own data
path, device, workers), the teacher's file (its weights are compared instead) and the output folder (rank 0
writes)."""


def shared_settings(cfg: RunConfig) -> dict[str, Any]:
    """The config less :data:`PER_PROCESS_KEYS`."""
    settings = json.loads(json.dumps(cfg.to_dict()))
    for key in PER_PROCESS_KEYS:
        *sections, name = key.split(".")
        parent = lookup(settings, ".".join(sections)) if sections else settings
        if isinstance(parent, dict):
            parent.pop(name, None)
    return settings


def check_ranks_agree(dist: DistContext, cfg: RunConfig, fingerprint: str, teacher) -> None:
    """Raise :class:`ConfigError` on every process when the processes' settings, data fingerprint or teacher
    weights differ (nothing to do for one process)."""
    if not dist.distributed:
        return
    settings = shared_settings(cfg)
    mine = {"settings": _sha256(settings), "data": fingerprint, "teacher weights": teacher_sha256(teacher) or "-"}
    every = [json.loads(text) for text in dist.gather_objects(json.dumps(mine))]
    differing = [name for name in mine if len({rank[name] for rank in every}) > 1]
    if not differing:
        return
    what = []
    for name in differing:
        other = next(r for r, rank in enumerate(every) if rank[name] != every[0][name])
        if name == "settings":
            configs = dist.gather_objects(settings)  # (every process takes part: each saw the same difference)
            key = _first_difference(configs[0], configs[other])
            what.append(f"settings ({key}: {lookup(configs[0], key)!r} on rank 0, {lookup(configs[other], key)!r} "
                        f"on rank {other})")
        else:
            what.append(f"{name} (rank 0 and rank {other} differ)")
    raise ConfigError(
        f"the {dist.world_size} processes of this torchrun job were given different {'; '.join(what)}; they would "
        "train together on rank 0's: start every process with the same command, data and teacher weights"
    )


def _sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".")
