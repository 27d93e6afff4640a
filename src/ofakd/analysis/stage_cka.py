"""``cka``: linear CKA between every pair of layers of two models, over a data loader.

Each minibatch is fed to both models; every stage (or block) feature is flattened
per sample (maps (B, C, H, W) and tokens (B, N, D) alike) and turned into a float64
linear Gram matrix ``K = X Xᵀ``. The unbiased HSIC estimator is summed over the
batches and normalised at the end (see :mod:`ofakd.analysis.hsic`)::

    CKA(X, Y) = Σᵢ HSIC₁(Kᵢ, Lᵢ) / sqrt( Σᵢ HSIC₁(Kᵢ, Kᵢ) · Σᵢ HSIC₁(Lᵢ, Lᵢ) )

so memory stays proportional to one batch. Batches of fewer than 4 samples are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from ..errors import OfakdError
from .features import Adapter, build_tap, paired_stage_features
from .hsic import MIN_BATCH, MinibatchCKA
from .result import CKAResult


def model_label(model: nn.Module) -> str:
    """A readable name for a model: its timm architecture, else its class name."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def cka(
    model_a: nn.Module,
    model_b: nn.Module,
    loader: Iterable,
    *,
    layers: str | Sequence[int] = "stages",
    batches: int | None = None,
    adapt_a: Adapter | None = None,
    adapt_b: Adapter | None = None,
    name_a: str | None = None,
    name_b: str | None = None,
    progress: bool = True,
) -> CKAResult:
    """Linear CKA between every stage (``layers="stages"``) or block (``"blocks"``) of two models.

    Args:
        model_a, model_b: timm models (any with ``feature_info``); may be the same object.
        loader: yields ``(images, targets)`` (or images); the first ``batches`` batches
            are used (all when ``None``). Use a deterministic (validation) loader.
        layers: ``"stages"`` (the four default stages), ``"blocks"`` (every
            ``feature_info`` position plus the head input) or explicit positions.
        adapt_a, adapt_b: optional callables mapping the loader's images to each
            model's input (resize/renormalise).
        name_a, name_b: labels for the result (default: the timm architecture).
        progress: show a tqdm bar over the batches.

    Returns:
        A :class:`CKAResult` whose ``matrix[i, j]`` is CKA(A layer i, B layer j).
    """
    tap_a = build_tap(model_a, layers)
    same = model_b is model_a and adapt_b is adapt_a
    tap_b = None if same else build_tap(model_b, layers)
    names_a = _unique(tap_a.names)
    names_b = names_a if tap_b is None else _unique(tap_b.names)
    acc = MinibatchCKA(len(names_a), len(names_b))
    seen = 0
    stream = paired_stage_features(
        tap_a, tap_b, loader, batches=batches, adapt_a=adapt_a, adapt_b=adapt_b, progress=progress
    )
    try:
        for feats_a, feats_b in stream:
            seen += 1
            acc.update(feats_a, feats_b)
    finally:
        stream.close()
    if acc.num_batches == 0:
        raise OfakdError(
            f"no batch with at least {MIN_BATCH} samples among the {seen} read; "
            f"use a batch size of {MIN_BATCH} or more (the unbiased HSIC estimator needs it)"
        )
    return CKAResult(
        matrix=acc.compute().numpy(),
        names_a=names_a,
        names_b=names_b,
        model_a=name_a or model_label(model_a),
        model_b=name_b or model_label(model_b),
        num_samples=acc.num_samples,
        num_batches=acc.num_batches,
        layers=layers if isinstance(layers, str) else "indices",
    )


def _unique(names: Sequence[str]) -> list[str]:
    """Layer names, numbered when a model gives the same name twice (e.g. repeated stage 1)."""
    out: list[str] = []
    for name in names:
        label, k = name, 2
        while label in out:
            label, k = f"{name} ({k})", k + 1
        out.append(label)
    return out
