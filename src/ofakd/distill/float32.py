"""Losses that must run in float32 even inside an autocast (AMP) region.

Relation and correlation losses (RKD distances, RSD cross-correlations, CRD scores, ...) lose
their meaning in bfloat16/float16: ``‖a‖² + ‖b‖² - 2<a, b>`` cancels, ``exp(s / 0.07)``
overflows. :func:`float32_loss` disables autocast inside the loss and casts its floating-point
tensor arguments to float32.
"""

from __future__ import annotations

import functools

import torch


def float32_loss(fn):
    """Decorator: run ``fn`` with autocast off and floating-point tensor arguments in float32."""

    def cast(value):
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper
