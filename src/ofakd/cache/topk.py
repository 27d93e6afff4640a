"""Top-k storage of teacher logits and its exact reconstruction rule.

Stored per view (row), for a teacher with K classes and a cache with k < K:

* ``values``  — the k largest logits ``v_1 >= ... >= v_k`` (float16),
* ``indices`` — their classes (int32),
* ``lse``     — ``log Σ_c exp(z_c)`` over all K full-precision logits (float32).

Reconstruction (:func:`reconstruct_topk`) gives a logits row ``z'`` (float32) with

    z'_i = v_i                               for the k recorded classes,
    z'_j = lse + log(q),  q = r / (K - k)    for each of the other K - k classes,
    r    = 1 - Σ_i exp(v_i - lse)            the probability mass outside the top k,

so that ``softmax(z')`` gives each recorded class exactly ``p_i = exp(v_i - lse)`` — its
probability under the teacher's full distribution, up to the fp16 rounding of ``v_i`` — and
spreads the leftover mass ``r`` uniformly over the other classes; the row sums to 1. When fp16
rounding makes ``r <= 0`` (the top k hold all the mass), ``q`` is floored at :data:`TAIL_FLOOR`
so no logit is ``-inf``. The recorded logits themselves appear unchanged in ``z'``, and
differences between them are exact, so at temperature T != 1 the top-k ratios are still the
teacher's; only the tail differs from the full distribution.
"""

from __future__ import annotations

import numpy as np
import torch

TAIL_FLOOR = 1e-30
"""Smallest probability given to one class outside the top k."""


def encode_topk(logits: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values fp16 (B, k), indices int32 (B, k), lse fp32 (B,))`` of float logits (B, K)."""
    z = logits.detach().float().cpu()
    values, indices = z.topk(k, dim=1)
    lse = torch.logsumexp(z, dim=1)
    return values.numpy().astype(np.float16), indices.numpy().astype(np.int32), lse.numpy().astype(np.float32)


def reconstruct_topk(
    values: np.ndarray, indices: np.ndarray, lse: np.ndarray, num_classes: int
) -> torch.Tensor:
    """The (B, K) float32 logits of the module docstring from stored top-k ``values``, ``indices``, ``lse``."""
    v = np.asarray(values, dtype=np.float64)
    idx = np.asarray(indices, dtype=np.int64)
    total = np.asarray(lse, dtype=np.float64).reshape(-1, 1)
    k = v.shape[1]
    out = np.empty((v.shape[0], num_classes), dtype=np.float64)
    if k < num_classes:
        rest = 1.0 - np.exp(v - total).sum(axis=1, keepdims=True)
        q = np.maximum(rest / (num_classes - k), TAIL_FLOOR)
        out[:] = total + np.log(q)
    np.put_along_axis(out, idx, v, axis=1)
    return torch.from_numpy(out.astype(np.float32))
