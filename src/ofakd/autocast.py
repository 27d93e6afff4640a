"""Autocast modes shared by the student's training and the teacher's forward.

A mode is ``none`` (float32), ``bf16`` (bfloat16 autocast, CPU and GPU) or ``fp16`` (float16
autocast, GPU only); ``auto`` resolves to bf16 on a GPU that supports it, else none.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(mode: str, device: torch.device) -> str:
    """``mode`` made concrete for ``device``: ``auto`` decided, fp16 refused off CUDA."""
    if mode == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.amp: fp16 needs a CUDA GPU (device is {device}); use bf16 or none")
    return mode


def autocast(mode: str, device_type: str, *, inherit: bool = False):
    """The autocast context of a resolved ``mode``. ``none`` turns autocast off, unless ``inherit``
    (then the caller's context stays as it is: what the student's own forward wants)."""
    if mode == "none":
        return contextlib.nullcontext() if inherit else torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=DTYPES[mode])
