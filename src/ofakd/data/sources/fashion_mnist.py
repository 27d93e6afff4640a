"""Fashion-MNIST from its idx files (gzipped or not): 60000 train / 10000 test 28×28 gray images.

Found in ROOT itself (the Debian package ``dataset-fashion-mnist`` layout,
/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ...) or in ROOT/FashionMNIST/raw
(torchvision's layout, where ``download`` puts them).
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from ...errors import DataError
from ..config import DataConfig
from ..datasets import ArrayImageDataset
from .source import Source

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}
SUBDIRS = ("", os.path.join("FashionMNIST", "raw"), "raw")


def load(data: DataConfig) -> Source:
    root = data.root or DEFAULT_ROOT
    paths = _find(root)
    if paths is None and data.download:
        _download(root)
        paths = _find(root)
    if paths is None:
        names = ", ".join(f"{n}[.gz]" for n in FILES.values())
        raise DataError(
            f"Fashion-MNIST files not found under {root}: expected {names} in ROOT or ROOT/FashionMNIST/raw; "
            "install the Debian package dataset-fashion-mnist, pass --data.root, "
            "or pass --data.download true on a machine with internet"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    splits = {}
    for split in ("train", "val"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"Fashion-MNIST {split} files under {os.path.dirname(paths[f'{split}_images'])} do not match: "
                f"images {images.shape}, labels {labels.shape}; re-install or re-download them"
            )
        if labels.size and labels.max() >= len(CLASSES):
            raise DataError(f"labels in {paths[f'{split}_labels']} exceed 9; re-install or re-download it")
        splits[split] = ArrayImageDataset(images, labels.astype(np.int64))
    return Source(splits["train"], splits["val"], list(CLASSES), os.path.dirname(paths["train_images"]))


def num_classes(data: DataConfig) -> int:
    return len(CLASSES)


def _find(root: str) -> dict[str, str] | None:
    for sub in SUBDIRS:
        folder = os.path.join(root, sub) if sub else root
        found = {}
        for key, name in FILES.items():
            for candidate in (name, name + ".gz"):
                if os.path.isfile(os.path.join(folder, candidate)):
                    found[key] = os.path.join(folder, candidate)
                    break
        if len(found) == len(FILES):
            return found
    return None


def _download(root: str) -> None:
    from torchvision.datasets import FashionMNIST

    try:
        for train in (True, False):
            FashionMNIST(root, train=train, download=True)
    except Exception as e:  # network, permissions, checksum
        raise DataError(
            f"downloading Fashion-MNIST to {root} failed ({type(e).__name__}: {e}); "
            "check internet access and that the folder is writable, or pass --data.root to local files"
        ) from None


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (unsigned-byte data, optionally gzipped) into a numpy array."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}); re-install or re-download it") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"{path} is not an unsigned-byte idx file (bad header); re-install or re-download it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(
            f"{path} holds {len(raw) - header} bytes of data but its header says {shape}; "
            "the file is truncated or corrupt, re-install or re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
