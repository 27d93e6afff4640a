"""Data sources: each module turns a :class:`DataConfig` into train and val datasets (no transforms)."""

from __future__ import annotations

from ..config import DataConfig
from . import cifar, digits, fashion_mnist, imagefolder, in_python
from .source import Source


def load_source(data: DataConfig) -> Source:
    """Read the data set named by ``data.name`` (raises DataError with the fix when it cannot)."""
    return _module(data.name).load(data)


def source_num_classes(data: DataConfig) -> int:
    """Number of classes, without reading the images."""
    return _module(data.name).num_classes(data)


def _module(name: str):
    return {
        "digits": digits,
        "fashion-mnist": fashion_mnist,
        "cifar10": cifar,
        "cifar100": cifar,
        "imagefolder": imagefolder,
        "python": in_python,
    }[name]
