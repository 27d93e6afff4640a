"""The first batch of a torch ``Dataset`` given to ``ofakd.fit``, checked as images given as arrays are
(:meth:`~ofakd.data.datasets.ArrayImageDataset.given`): each item ``(image, class index)``, the image a float
tensor of the distiller's input size, the label an integer in ``[0, classes)``; a :class:`DataError` naming the
data set, the item and the fix otherwise, before any training (not a raw torch error from deep inside a step).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .views import untouched_rng

TO_TENSOR = "add a transform that returns float tensors (e.g. torchvision.transforms.ToTensor and Normalize)"


def check_first_items(dataset: Dataset, *, what: str, classes: int, input_size: Sequence[int] | None,
                      count: int) -> None:
    """Check the first ``count`` items of ``dataset`` (``what``: ``train_set`` / ``val_set``); the data's
    random generators are left as they were."""
    try:
        size = len(dataset)
    except TypeError:
        raise DataError(f"{what} must be a map-style Dataset (with __len__ and __getitem__), got "
                        f"{type(dataset).__name__}") from None
    if size == 0:
        raise DataError(f"{what} is empty: give it at least one (image, class index) item")
    shapes: dict[tuple[int, ...], int] = {}
    with untouched_rng():
        for index in range(min(size, count)):
            image, label = _split(dataset[index], what, index)
            _check_image(image, what, index, input_size)
            shapes.setdefault(tuple(image.shape), index)
            _check_label(label, what, index, classes)
    if len(shapes) > 1:
        (first, i), (other, j) = list(shapes.items())[:2]
        raise DataError(f"{what} gives images of different shapes ({what}[{i}] is {first}, {what}[{j}] is {other}); "
                        "a batch stacks them: resize every image to one size in the data set's transform")


def _split(item, what: str, index: int) -> tuple:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = f"a {len(item)}-item {type(item).__name__}" if isinstance(item, (tuple, list)) else type(item).__name__
        raise DataError(f"{what}[{index}] must be (image tensor, class index), got {got}; return exactly those two "
                        "from __getitem__")
    return item[0], item[1]


def _check_image(image, what: str, index: int, input_size: Sequence[int] | None) -> None:
    if not isinstance(image, torch.Tensor):
        raise DataError(f"{what}[{index}]: the image must be a tensor, got {type(image).__name__}; {TO_TENSOR}")
    if not image.is_floating_point():
        raise DataError(f"{what}[{index}]: the image is a {image.dtype} tensor; the models take float images: "
                        f"{TO_TENSOR}, or pass (images, labels) uint8 arrays, which fit converts")
    expected = tuple(input_size or ())
    if expected and tuple(image.shape) != expected:
        raise DataError(f"{what} gives images of shape {tuple(image.shape)} but the distiller was built for "
                        f"input_size {expected}; pass input_size= to create_distiller or resize in the data set")


def _check_label(label, what: str, index: int, classes: int) -> None:
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point() \
            and label.dtype != torch.bool:
        label = int(label.item())
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        shown = f"{label.dtype} tensor of shape {tuple(label.shape)}" if isinstance(label, torch.Tensor) else repr(label)
        raise DataError(f"{what}[{index}]: the label must be an integer class index, got {shown}; map class names "
                        "to indices (0, 1, ...) in the data set")
    if not 0 <= int(label) < classes:
        raise DataError(f"{what}[{index}]: label {int(label)} is outside [0, {classes}) for a student with {classes} "
                        "classes; give labels 0 .. classes-1, or build the student with more classes")
