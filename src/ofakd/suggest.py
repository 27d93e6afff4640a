"""'Did you mean ...?': the known names closest to a mistyped one, with one similarity cutoff for every message.

    close_matches("ofaa", ["ofa", "kd", "dkd"], n=3)   # ["ofa"]
    nearest("train.lrr", ["train.lr", "train.epochs"])  # "train.lr"

How each message phrases the suggestion is its own; which names are close enough is decided here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

SIMILARITY = 0.75
"""The least difflib ratio (2·M / T: M characters matched in order, T the two names' total length) at which a known
name is suggested. Typos stay above it (``ofaa`` -> ``ofa`` 0.86, ``trian.lr`` -> ``train.lr`` 0.88); names that
merely share a word fall below (``data_dir`` -> ``out_dir`` 0.67, ``model`` -> ``model_ema`` 0.71, ``lr`` ->
``lamb`` 0.33), which difflib's default of 0.6 would still suggest."""


def close_matches(word: str, known: Iterable[str], n: int = 1) -> list[str]:
    """Up to ``n`` names of ``known`` close to ``word``, the closest first (``[]`` when none is)."""
    return difflib.get_close_matches(str(word), [str(name) for name in known], n=n, cutoff=SIMILARITY)


def nearest(word: str, known: Iterable[str]) -> str | None:
    """The name of ``known`` closest to ``word``, or None when none is close."""
    close = close_matches(word, known, n=1)
    return close[0] if close else None
