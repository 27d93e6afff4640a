"""What a data source gives: untransformed train/val datasets and their class names."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass
class Source:
    """Untransformed train/val datasets, the class names, and where they came from (for messages)."""

    train: Dataset
    val: Dataset
    class_names: list[str]
    location: str
