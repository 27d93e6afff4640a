"""Uniform numbers named by a key: ``u(key, position, stream, k)``, a pure function, drawn for a whole batch at once.

The per-image path seeds generators per view (:func:`ofakd.data.views.keyed_rng`, ~0.1 ms a view). The batched
path needs the same property — a view's random parameters depend on (data seed, epoch, global position) and
nothing else — without a generator per view, so it hashes instead: every number is

    h = splitmix64(splitmix64(splitmix64(splitmix64(... splitmix64(key) ...) ^ position) ^ stream) ^ k)
    u = (h >> 11) · 2⁻⁵³   ∈ [0, 1)

with splitmix64 (Steele, Lea and Flood 2014; the finaliser of ``java.util.SplittableRandom``), in numpy's
wrapping uint64 arithmetic. ``stream`` names what a number is for (flip, crop, erasing, ...) so that adding a
draw for one purpose never shifts another's; ``k`` counts the draws within a stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_WORD = 2**64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 step on uint64 values (wrapping arithmetic): a bijection that mixes every bit."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _MUL1
        x = (x ^ (x >> np.uint64(27))) * _MUL2
        return x ^ (x >> np.uint64(31))


def _word(value: int) -> np.uint64:
    return np.uint64(int(value) % _WORD)


def _stream_hashes(key: Sequence[int], positions: np.ndarray, stream: int) -> np.ndarray:
    """One uint64 per position: the hash of (key..., position, stream)."""
    h = np.zeros((), dtype=np.uint64)
    for part in key:
        h = splitmix64(h ^ _word(part))
    rows = splitmix64(h ^ np.asarray(positions, dtype=np.int64).astype(np.uint64))
    return splitmix64(rows ^ _word(stream))


def keyed_uniforms(key: Sequence[int], positions: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``(len(positions), count)`` float64 uniforms in [0, 1): row ``i`` belongs to the view at ``positions[i]``
    under ``key`` (e.g. (domain, data seed, epoch)), column ``k`` is the ``k``-th draw of ``stream``."""
    rows = _stream_hashes(key, positions, stream)
    draws = splitmix64(rows[:, None] ^ np.arange(count, dtype=np.uint64)[None, :])
    return (draws >> np.uint64(11)).astype(np.float64) * 2.0**-53


def keyed_words(key: Sequence[int], positions: np.ndarray, stream: int) -> np.ndarray:
    """One non-negative 63-bit integer per position (e.g. the seed of a generator of per-pixel noise)."""
    return (_stream_hashes(key, positions, stream) >> np.uint64(1)).astype(np.int64)
