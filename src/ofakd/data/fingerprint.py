"""A stable string naming a data set's contents and split, for cache manifests.

In-memory data sets (digits, Fashion-MNIST, CIFAR) hash every image byte. Image folders hash the
relative paths, the labels and the first 4 KiB of up to 64 evenly spaced files per split, so a
changed, added, removed or relabelled file changes it, but an image edited in place under the
same name is only noticed when it is one of those sampled. A data set given in Python
(``ofakd.fit``) hashes its length, its type and its ``targets`` when it has them: its images are not read.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from .datasets import ArrayImageDataset, ImageFileDataset

SAMPLED_FILES = 64
HEAD_BYTES = 4096


def _update_split(h, dataset: Dataset, root: str) -> None:
    if not isinstance(dataset, (ArrayImageDataset, ImageFileDataset)):
        _update_other(h, dataset)
        return
    targets = np.ascontiguousarray(np.asarray(dataset.targets, dtype=np.int64))
    h.update(targets.tobytes())
    if isinstance(dataset, ArrayImageDataset):
        h.update(str(dataset.images.shape).encode())
        h.update(np.ascontiguousarray(dataset.images).data)
    elif isinstance(dataset, ImageFileDataset):
        paths = [p for p, _ in dataset.samples]
        for p in paths:
            h.update(os.path.relpath(p, root).replace(os.sep, "/").encode() + b"\0")
        n = len(paths)
        for i in sorted(
            {round(k * (n - 1) / max(SAMPLED_FILES - 1, 1)) for k in range(min(n, SAMPLED_FILES))}
        ):
            try:
                with open(paths[i], "rb") as f:
                    h.update(f.read(HEAD_BYTES))
            except OSError as e:
                raise DataError(f"cannot read {paths[i]} ({e}); check its permissions or remove it") from None


def _update_other(h, dataset: Dataset) -> None:
    """A data set given in Python: its type and, when it has them (torchvision's do), its ``targets``."""
    h.update(f"{type(dataset).__module__}.{type(dataset).__qualname__}".encode())
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        h.update(np.ascontiguousarray(np.asarray(targets, dtype=np.int64)).tobytes())


def fingerprint(name: str, train: Dataset, val: Dataset, class_names: list[str], root: str = "") -> str:
    """``"<name>-train<N>-val<M>-<20 hex digits>"``, equal for equal contents and split."""
    h = hashlib.sha256()
    h.update(
        json.dumps({"name": name, "train": len(train), "val": len(val), "classes": class_names}).encode()
    )
    _update_split(h, train, root)
    h.update(b"--val--")
    _update_split(h, val, root)
    return f"{name}-train{len(train)}-val{len(val)}-{h.hexdigest()[:20]}"
