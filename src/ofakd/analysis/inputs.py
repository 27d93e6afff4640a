"""Adapt a loader's images (made for one model's input spec) to another model's input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.info import InputSpec
from .features import Adapter

_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


def input_adapter(source: InputSpec, target: InputSpec) -> Adapter | None:
    """A callable turning images normalised and sized for ``source`` into ones for ``target``.

    Un-normalises with the source mean/std, matches channels (1 → C by repeating,
    C → 1 by averaging), resizes with ``F.interpolate`` and normalises with the target
    mean/std. Returns ``None`` when the two specs need nothing.
    """
    same_norm = source.mean == target.mean and source.std == target.std
    if source.input_size == target.input_size and same_norm:
        return None
    src_c, dst_c = source.input_size[0], target.input_size[0]
    size = tuple(target.input_size[1:])
    mode = _MODES.get(target.interpolation, "bilinear")

    def adapt(images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        x = x * _column(source.std, x) + _column(source.mean, x)
        if src_c != dst_c:
            x = x.mean(dim=1, keepdim=True)
            x = x.expand(-1, dst_c, -1, -1)
        if tuple(x.shape[-2:]) != size:
            extra = {} if mode == "nearest" else {"align_corners": False}
            x = F.interpolate(x, size=size, mode=mode, **extra)
        return (x - _column(target.mean, x)) / _column(target.std, x)

    return adapt


def _column(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
