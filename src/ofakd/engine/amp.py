"""Mixed precision: autocast (bf16 on CPU and GPU, fp16 on GPU) and the fp16 GradScaler."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..autocast import DTYPES, autocast, resolve_amp
from .numerics import grad_norm


class Precision:
    """``autocast()`` for forwards and ``step(loss, ...)`` for backward + clip + optimizer step."""

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode = resolve_amp(mode, device)
        self.device = device
        self.dtype = DTYPES.get(self.mode)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.mode == "fp16")

    def autocast(self):
        """The forward's autocast (none: the caller's context, usually float32)."""
        return autocast(self.mode, self.device.type, inherit=True)

    def step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        parameters: list[nn.Parameter],
        clip_grad: float | None = None,
        gate: Callable[[torch.Tensor | None], bool] | None = None,
    ) -> torch.Tensor | None:
        """Backward, optional global-norm clipping, optimizer step. Returns the global gradient norm, a device
        tensor (no host sync), measured with or without clipping; None with an fp16 GradScaler, whose
        overflowed steps are routine and skipped by the scaler itself. ``gate(norm)`` is asked before the
        optimizer step: False leaves the optimizer untouched (``train.nonfinite: skip``, see ``numerics``)."""
        self.scaler.scale(loss).backward()
        norm = None
        if clip_grad is not None:
            self.scaler.unscale_(optimizer)
            norm = nn.utils.clip_grad_norm_(parameters, clip_grad)
        elif not self.scaler.is_enabled():
            norm = grad_norm(parameters)
        if self.scaler.is_enabled():
            norm = None
        if gate is not None and not gate(norm):
            if clip_grad is not None and self.scaler.is_enabled():
                self.scaler.update()  # closes the unscale_ above (the next one would refuse otherwise)
            return norm
        self.scaler.step(optimizer)
        self.scaler.update()
        return norm

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
