"""Files placed in a Hugging Face Hub cache exactly as ``hf download`` leaves them, for offline tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"
"""The commit the cached files belong to (any 40 hex digits)."""
TAG, TAG_REPO = "test_byobnet.r160_in1k", "timm/test_byobnet.r160_in1k"
"""A pretrained tag of a tiny timm model and the Hub repo its weights come from."""


def put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = REVISION) -> Path:
    """``cache/models--ORG--NAME/``: each file as ``blobs/<sha256>`` with ``snapshots/<revision>/<name>``
    linking to it, and ``refs/main`` naming the revision (what huggingface_hub reads offline)."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / revision / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo
