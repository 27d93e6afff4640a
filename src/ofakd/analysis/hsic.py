"""Linear CKA from the unbiased HSIC estimator, accumulated over minibatches.

For one minibatch of ``n`` samples, let ``X`` (n × p) and ``Y`` (n × q) be two
representations, each flattened per sample, and ``K = X Xᵀ``, ``L = Y Yᵀ`` their
linear Gram matrices (float64). With ``K̃``, ``L̃`` the Grams with the diagonal set
to zero and ``1`` the all-ones vector, the unbiased HSIC estimator
(Song et al. 2012) is::

    HSIC₁(K, L) = 1 / (n (n − 3)) · [ tr(K̃ L̃)
                                     + (1ᵀ K̃ 1)(1ᵀ L̃ 1) / ((n − 1)(n − 2))
                                     − 2 / (n − 2) · 1ᵀ K̃ L̃ 1 ]

and minibatch CKA (Nguyen, Raghu & Kornblith 2021, eq. 3) sums it over the
batches ``i`` before normalising::

    CKA(X, Y) = Σᵢ HSIC₁(Kᵢ, Lᵢ) / sqrt( Σᵢ HSIC₁(Kᵢ, Kᵢ) · Σᵢ HSIC₁(Lᵢ, Lᵢ) )

Because HSIC₁ is unbiased for any batch size, the ratio converges to the
population CKA as batches accumulate (the plain full-batch formula is biased
upwards for small n), and memory stays proportional to one batch. Batches need
``n ≥ 4`` samples. CKA is 1 for identical representations and is invariant to
orthogonal transforms and isotropic scaling of either side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MIN_BATCH = 4


def gram_linear(features: torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix ``K = X Xᵀ`` (float64) of features flattened per sample.

    ``features`` is (n, ...): maps (n, C, H, W), tokens (n, N, D) or vectors (n, D).
    """
    x = features.detach().reshape(features.shape[0], -1).to(torch.float64)
    return x @ x.T


def _prepare(grams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero the diagonals of a stack of Grams (g, n, n); return (K̃, K̃1, 1ᵀK̃1)."""
    tilde = grams.clone()
    tilde.diagonal(dim1=-2, dim2=-1).zero_()
    rows = tilde.sum(dim=-1)  # (g, n)
    return tilde, rows, rows.sum(dim=-1)


def hsic_unbiased_matrix(grams_a: torch.Tensor, grams_b: torch.Tensor) -> torch.Tensor:
    """HSIC₁ between every Gram of ``grams_a`` (a, n, n) and of ``grams_b`` (b, n, n).

    Returns an (a, b) float64 matrix; see the module docstring for the formula.
    Grams must be symmetric (as linear Grams are), so ``tr(K̃ L̃) = Σ K̃ ⊙ L̃``.
    """
    if grams_a.dim() != 3 or grams_b.dim() != 3:
        raise ValueError("expected stacks of Gram matrices shaped (count, n, n)")
    n = grams_a.shape[-1]
    if grams_b.shape[-1] != n:
        raise ValueError(f"Gram sizes differ: {n} vs {grams_b.shape[-1]} samples")
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC estimator needs at least {MIN_BATCH} samples, got {n}")
    ka, ra, sa = _prepare(grams_a.to(torch.float64))
    kb, rb, sb = _prepare(grams_b.to(torch.float64))
    trace = torch.einsum("ixy,jxy->ij", ka, kb)
    sums = torch.outer(sa, sb) / ((n - 1) * (n - 2))
    cross = (ra @ rb.T) * (2.0 / (n - 2))
    return (trace + sums - cross) / (n * (n - 3))


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """HSIC₁(K, L) for two (n, n) Gram matrices; a float64 scalar tensor."""
    return hsic_unbiased_matrix(k[None], l[None])[0, 0]


class MinibatchCKA:
    """Accumulates linear CKA between ``num_a`` and ``num_b`` representations.

    Call :meth:`update` once per minibatch with the features of each side (same
    samples, same order), then :meth:`compute` for the (num_a, num_b) matrix.
    Only the running HSIC sums are kept between batches.
    """

    def __init__(self, num_a: int, num_b: int):
        self.num_a, self.num_b = num_a, num_b
        self.cross = torch.zeros(num_a, num_b, dtype=torch.float64)
        self.self_a = torch.zeros(num_a, dtype=torch.float64)
        self.self_b = torch.zeros(num_b, dtype=torch.float64)
        self.num_batches = 0
        self.num_samples = 0

    def update(self, features_a: Sequence[torch.Tensor], features_b: Sequence[torch.Tensor]) -> bool:
        """Add one minibatch; returns False (and adds nothing) if it has < 4 samples."""
        if len(features_a) != self.num_a or len(features_b) != self.num_b:
            raise ValueError(
                f"expected {self.num_a} and {self.num_b} features, got {len(features_a)} and {len(features_b)}"
            )
        sizes = {f.shape[0] for f in (*features_a, *features_b)}
        if len(sizes) != 1:
            raise ValueError(f"all features must share the batch size, got sizes {sorted(sizes)}")
        n = sizes.pop()
        if n < MIN_BATCH:
            return False
        grams_a = torch.stack([gram_linear(f).cpu() for f in features_a])
        grams_b = torch.stack([gram_linear(f).cpu() for f in features_b])
        self.update_grams(grams_a, grams_b)
        return True

    def update_grams(self, grams_a: torch.Tensor, grams_b: torch.Tensor) -> None:
        """Add one minibatch given its Gram stacks (num_a, n, n) and (num_b, n, n)."""
        self.cross += hsic_unbiased_matrix(grams_a, grams_b)
        self.self_a += _self_hsic(grams_a)
        self.self_b += _self_hsic(grams_b)
        self.num_batches += 1
        self.num_samples += grams_a.shape[-1]

    def compute(self) -> torch.Tensor:
        """The (num_a, num_b) CKA matrix; NaN where a side has no variance (HSIC₁ ≤ 0)."""
        if self.num_batches == 0:
            raise ValueError(f"no minibatch with at least {MIN_BATCH} samples was seen")
        norm_a = torch.where(self.self_a > 0, self.self_a, torch.nan).sqrt()
        norm_b = torch.where(self.self_b > 0, self.self_b, torch.nan).sqrt()
        return self.cross / torch.outer(norm_a, norm_b)


def _self_hsic(grams: torch.Tensor) -> torch.Tensor:
    """HSIC₁(K, K) for each Gram of a stack (g, n, n), without the g × g cross terms."""
    n = grams.shape[-1]
    k, rows, sums = _prepare(grams.to(torch.float64))
    trace = (k * k).sum(dim=(-2, -1))
    return (trace + sums * sums / ((n - 1) * (n - 2)) - (rows * rows).sum(-1) * (2.0 / (n - 2))) / (
        n * (n - 3)
    )


def minibatch_cka(batches_a, batches_b) -> torch.Tensor:
    """CKA between two single representations given as matching iterables of batches.

    ``batches_a`` and ``batches_b`` yield (n, ...) tensors of the same samples. Returns
    a float64 scalar tensor. For one batch this is the unbiased full-batch CKA.
    """
    acc = MinibatchCKA(1, 1)
    for xa, xb in zip(batches_a, batches_b, strict=True):
        acc.update([xa], [xb])
    return acc.compute()[0, 0]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased linear CKA of two (n, ...) representations of the same n ≥ 4 samples."""
    return minibatch_cka([x], [y])
