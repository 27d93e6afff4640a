"""scikit-learn's bundled 8×8 digits: 1797 images, 10 classes, a fixed stratified 80/20 split.

The bundled ``digits.csv.gz`` is read directly when it is where scikit-learn keeps it (importing
``sklearn.datasets`` costs seconds); otherwise through ``sklearn.datasets.load_digits``.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from ..config import DataConfig
from ..datasets import ArrayImageDataset
from .source import Source

SPLIT_SEED = 0  # the split never depends on the training seed
VAL_FRACTION = 0.2


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) with values 0..16, targets)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


def split_indices(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: round(20 %) of each class, drawn with SPLIT_SEED, to val; both sorted."""
    rng = np.random.default_rng(SPLIT_SEED)
    val = []
    for c in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == c))
        val.append(members[: int(round(VAL_FRACTION * len(members)))])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(targets)), val_idx)
    return train_idx, val_idx


def load(data: DataConfig) -> Source:
    raw, targets = _read_digits()
    # 16 gray levels (0..16) -> 0..255
    images = np.round(raw * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    train_idx, val_idx = split_indices(targets)
    return Source(
        train=ArrayImageDataset(images[train_idx], targets[train_idx]),
        val=ArrayImageDataset(images[val_idx], targets[val_idx]),
        class_names=[str(i) for i in range(10)],
        location="scikit-learn digits",
    )


def num_classes(data: DataConfig) -> int:
    return 10
