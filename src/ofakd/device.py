"""Pick the device: the fastest one present unless the config or ``--device`` forces one."""

from __future__ import annotations

import torch

from .errors import ConfigError


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: cuda, then mps, then cpu. Otherwise the named device, checked to exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {requested!r} asked for but no CUDA GPU is available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: {requested!r} but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"train.device: {requested!r} asked for but MPS is not available; use cpu or auto")
    return device
