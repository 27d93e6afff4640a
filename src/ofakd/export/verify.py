"""Check an exported model against the PyTorch student: max |exported - PyTorch| on random inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ExportCheckError

DEFAULT_ATOL = 1e-4
CHECK_BATCH_SIZES = (1, 3)
"""Batch sizes of the check; the export itself traces batch 2, so these also test the dynamic batch axis."""


@dataclass(frozen=True)
class CheckResult:
    max_abs_diff: float
    images: int
    batch_sizes: tuple[int, ...]
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol

    def describe(self, runtime: str) -> str:
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        verdict = "<=" if self.passed else ">"
        return (f"max |{runtime} - PyTorch| = {self.max_abs_diff:.3g} over {self.images} random images "
                f"(batches of {sizes}) {verdict} {self.atol:g}")


def random_batches(input_size: Sequence[int], batch_sizes: Sequence[int] = CHECK_BATCH_SIZES,
                   seed: int = 0) -> list[torch.Tensor]:
    """Standard-normal batches (like normalised images) of shape (B, C, H, W), reproducible."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *input_size, generator=generator) for b in batch_sizes]


def compare(model: nn.Module, run: Callable[[torch.Tensor], object], batches: Sequence[torch.Tensor],
            atol: float = DEFAULT_ATOL) -> CheckResult:
    """Run ``model`` (PyTorch, eval) and ``run`` (the export) on ``batches``; the largest |difference|."""
    worst = 0.0
    with torch.no_grad():
        for x in batches:
            expected = model(x).float().numpy()
            got = _as_numpy(run(x))
            if got.shape != expected.shape:
                raise ExportCheckError(
                    f"the exported model returns shape {got.shape} for a batch of {x.shape[0]}, PyTorch "
                    f"{expected.shape}; the batch axis did not stay dynamic"
                )
            if not np.all(np.isfinite(got)):
                return CheckResult(float("inf"), sum(b.shape[0] for b in batches), tuple(b.shape[0] for b in batches), atol)
            worst = max(worst, float(np.abs(got.astype(np.float64) - expected).max()))
    return CheckResult(worst, sum(b.shape[0] for b in batches), tuple(b.shape[0] for b in batches), atol)


def _as_numpy(out) -> np.ndarray:
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, torch.Tensor):
        return out.detach().float().cpu().numpy()
    return np.asarray(out, dtype=np.float32)
