"""CIFAR-10 / CIFAR-100 in torchvision's on-disk pickle layout.

ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} and
ROOT/cifar-100-python/{train, test, meta}; ROOT may also be that folder itself.
``download`` fetches the archives through torchvision.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from ...errors import DataError
from ..config import DataConfig
from ..datasets import ArrayImageDataset
from .source import Source

DEFAULT_ROOT = "./data"
LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "val": ["test_batch"],
        "meta": ("batches.meta", "label_names"),
        "labels": "labels",
        "title": "CIFAR-10",
        "classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "val": ["test"],
        "meta": ("meta", "fine_label_names"),
        "labels": "fine_labels",
        "title": "CIFAR-100",
        "classes": 100,
    },
}


def load(data: DataConfig) -> Source:
    spec = LAYOUT[data.name]
    root = data.root or DEFAULT_ROOT
    folder = _folder(root, spec)
    if folder is None and data.download:
        _download(root, data.name)
        folder = _folder(root, spec)
    if folder is None:
        missing = os.path.join(root, spec["folder"], spec["train"][0])
        raise DataError(
            f"{spec['title']} files not found: {missing}; pass --data.download true on a machine with internet "
            f"or put {spec['folder']}/ under {root}"
        )
    meta_file, meta_key = spec["meta"]
    class_names = [str(n) for n in _unpickle(os.path.join(folder, meta_file))[meta_key]]
    splits = {}
    for split in ("train", "val"):
        images, labels = [], []
        for name in spec[split]:
            path = os.path.join(folder, name)
            batch = _unpickle(path)
            try:
                x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                y = np.asarray(batch[spec["labels"]], dtype=np.int64)
            except (KeyError, ValueError) as e:
                raise DataError(f"{path} is not a {spec['title']} batch ({e}); re-download it") from None
            if len(x) != len(y) or (len(y) and not 0 <= y.min() <= y.max() < len(class_names)):
                raise DataError(f"{path} has inconsistent images/labels; re-download it")
            images.append(x)
            labels.append(y)
        splits[split] = ArrayImageDataset(
            np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
        )
    return Source(splits["train"], splits["val"], class_names, folder)


def num_classes(data: DataConfig) -> int:
    return LAYOUT[data.name]["classes"]


def _folder(root: str, spec: dict) -> str | None:
    needed = [*spec["train"], *spec["val"], spec["meta"][0]]
    for folder in (os.path.join(root, spec["folder"]), root):
        if all(os.path.isfile(os.path.join(folder, n)) for n in needed):
            return folder
    return None


_ARRAY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})
"""The only globals a CIFAR batch file may name: numpy arrays (and bytes as protocol 2 writes them)."""


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global (code)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if "is not allowed" in str(e):
            raise DataError(
                f"refused to read CIFAR file {path}: it holds pickled objects beyond arrays ({e}), which could run "
                "code; re-download the data set (data.download true) or put the original files there"
            ) from None
        raise DataError(f"cannot read CIFAR file {path} ({type(e).__name__}: {e}); re-download it") from None
    except Exception as e:  # truncated or not a pickle
        raise DataError(f"cannot read CIFAR file {path} ({type(e).__name__}: {e}); re-download it") from None


def _download(root: str, name: str) -> None:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    try:
        cls(root, train=True, download=True)
    except Exception as e:  # network, permissions, checksum
        raise DataError(
            f"downloading {LAYOUT[name]['title']} to {root} failed ({type(e).__name__}: {e}); "
            f"check internet access, or put {LAYOUT[name]['folder']}/ under {root}"
        ) from None
