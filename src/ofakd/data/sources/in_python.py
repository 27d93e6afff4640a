"""``data.name: python``: a run whose data sets were given in Python (``ofakd.fit(distiller, train_set, val_set)``).

The config of such a run records the name only; the command line cannot read those data sets back.
"""

from __future__ import annotations

from ...errors import DataError
from ..config import DataConfig
from .source import Source


def _refuse(data: DataConfig):
    raise DataError(
        "data.name python: this run's data sets were given in Python (ofakd.fit(distiller, train_set, val_set, "
        "...)), which the command line cannot read; continue it from Python with resume=True, or name a data set "
        "(digits, fashion-mnist, cifar10, cifar100, imagefolder with --data.root)"
    )


def load(data: DataConfig) -> Source:
    _refuse(data)


def num_classes(data: DataConfig) -> int:
    _refuse(data)
