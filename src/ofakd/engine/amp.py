"""Mixed precision: autocast (bf16 on CPU and GPU, fp16 on GPU) and the fp16 GradScaler."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
        parameters: Iterable[nn.Parameter],
        clip_grad: float | None = None,
        check_finite: Callable[[float], bool] | None = None,
    ) -> float | None:
        """Backward, optional global-norm clipping, optimizer step. Returns the gradient norm when clipping
        (or checking). ``check_finite(norm)`` decides whether a step with that gradient norm is taken (False:
        no optimizer step; see ``numerics``); not with an fp16 GradScaler, which skips such steps itself."""
        self.scaler.scale(loss).backward()
        norm = None
        if clip_grad is not None:
            self.scaler.unscale_(optimizer)
            norm = float(nn.utils.clip_grad_norm_(list(parameters), clip_grad))
        if check_finite is not None and not self.scaler.is_enabled():
            if norm is None:
                norm = grad_norm(parameters)
            if not check_finite(norm):
                return norm
        self.scaler.step(optimizer)
        self.scaler.update()
        return norm

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
