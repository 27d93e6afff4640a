"""Data sources: each module turns a :class:`DataConfig` into train and val datasets (no transforms)."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from ..config import DataConfig


@dataclass
class Source:
    """Untransformed train/val datasets, the class names, and where they came from (for messages)."""

    train: Dataset
    val: Dataset
    class_names: list[str]
    location: str


def load_source(data: DataConfig) -> Source:
    """Read the data set named by ``data.name`` (raises DataError with the fix when it cannot)."""
    return _module(data.name).load(data)


def source_num_classes(data: DataConfig) -> int:
    """Number of classes, without reading the images."""
    return _module(data.name).num_classes(data)


def _module(name: str):
    from . import cifar, digits, fashion_mnist, imagefolder

    return {
        "digits": digits,
        "fashion-mnist": fashion_mnist,
        "cifar10": cifar,
        "cifar100": cifar,
        "imagefolder": imagefolder,
    }[name]
