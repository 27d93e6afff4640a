"""ImageNet-style folders: ROOT/train/<class>/<image> and ROOT/val/<class>/<image>.

Class names are the sorted train folder names; val must hold the same class folders. Images are
found recursively with torchvision's extensions. Files are decoded when loaded; with
``skip_corrupt`` each file's header is checked up front (PIL ``verify``) and unreadable ones are
dropped with a warning.
"""

from __future__ import annotations

import os
import warnings

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from ...errors import DataError
from ..config import DataConfig
from ..datasets import UNREADABLE, ImageFileDataset
from .source import Source

LAYOUT = "expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image>"
EXTENSIONS = ", ".join(IMG_EXTENSIONS)


def load(data: DataConfig) -> Source:
    root = _root(data)
    classes = find_classes(root)
    class_to_idx = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in ("train", "val"):
        folder = os.path.join(root, split)
        samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if not samples:
            raise DataError(f"no images ({EXTENSIONS}) in {folder}; {LAYOUT}")
        if split == "train":
            counts = {c: 0 for c in classes}
            for _, t in samples:
                counts[classes[t]] += 1
            empty = [c for c, n in counts.items() if n == 0]
            if empty:
                raise DataError(
                    f"class folder {os.path.join(folder, empty[0])} holds no images ({EXTENSIONS})"
                    + (f" (nor do {len(empty) - 1} more)" if len(empty) > 1 else "")
                    + "; add images or remove the folder from train/ and val/"
                )
        if data.skip_corrupt:
            samples = _drop_unreadable(samples, folder)
        splits[split] = ImageFileDataset(samples, skip_corrupt=data.skip_corrupt)
    return Source(splits["train"], splits["val"], classes, root)


def num_classes(data: DataConfig) -> int:
    return len(find_classes(_root(data)))


def _root(data: DataConfig) -> str:
    if not data.root:
        raise DataError(f"imagefolder needs --data.root; {LAYOUT}")
    if not os.path.isdir(data.root):
        raise DataError(f"data folder not found: {data.root}; {LAYOUT}")
    return data.root


def _class_dirs(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise DataError(f"folder not found: {folder}; {LAYOUT}")
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def find_classes(root: str) -> list[str]:
    """Sorted class folder names, checked: at least two, the same in train/ and val/."""
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    train, val = _class_dirs(train_dir), _class_dirs(val_dir)
    if not train:
        raise DataError(f"no class folders in {train_dir}; {LAYOUT}")
    if len(train) == 1:
        raise DataError(
            f"only one class folder ({train[0]}) in {train_dir}; a classifier needs at least two: {LAYOUT}"
        )
    if train != val:
        only_train = sorted(set(train) - set(val))
        only_val = sorted(set(val) - set(train))
        parts = [
            f"only in train: {_few(only_train)}" if only_train else "",
            f"only in val: {_few(only_val)}" if only_val else "",
        ]
        raise DataError(
            f"class folders differ between {train_dir} and {val_dir} ({'; '.join(p for p in parts if p)}); "
            "make both hold the same class folders"
        )
    return train


def _few(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def _drop_unreadable(samples: list[tuple[str, int]], folder: str) -> list[tuple[str, int]]:
    kept, bad = [], []
    for path, target in samples:
        try:
            with Image.open(path) as im:
                im.verify()
            kept.append((path, target))
        except UNREADABLE:
            bad.append(path)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s) under {folder}: {_few(bad, 3)}", stacklevel=3)
    if not kept:
        raise DataError(f"no readable images in {folder}; {LAYOUT}")
    return kept
