"""The teacher's precision, set apart from the student's (``teacher.amp``, ``teacher.dtype``).

The teacher only runs forwards (``inference_mode``), so it can run in bfloat16 while the student
trains in float32 or under AMP:

* ``teacher.amp: same`` (default) — the teacher's forward runs under the run's autocast (``train.amp``);
* ``teacher.amp: none`` — in float32 even when the student uses AMP (the exact teacher logits);
* ``teacher.amp: bf16`` — under bfloat16 autocast (CPU and GPU), whatever ``train.amp`` is;
* ``teacher.dtype: bfloat16`` — the teacher's weights are stored in bfloat16 (half the memory of
  float32) and its forward runs under bfloat16 autocast (``teacher.amp`` ``same`` or ``bf16``).

The teacher's logits are handed to the losses in float32 either way.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import ConfigError
from .amp import Precision


class TeacherPrecision:
    """``autocast()`` around every teacher forward and ``prepare(teacher)`` for its weights."""

    def __init__(self, amp: str, dtype: str, run: Precision) -> None:
        if dtype == "bfloat16" and amp == "none":
            raise ConfigError("teacher.dtype bfloat16 needs a bfloat16 forward: set teacher.amp to bf16 or same, "
                              "or teacher.dtype to float32")
        self.run = run
        self.device = run.device
        self.dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        if dtype == "bfloat16" or amp == "bf16":
            self.mode = "bf16"
        elif amp == "none":
            self.mode = "none"
        else:
            self.mode = run.mode

    def autocast(self):
        """The autocast context of a teacher forward (nests inside the student's)."""
        if self.mode == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.mode == "none":
            return torch.autocast(self.device.type, enabled=False)
        return self.run.autocast() if self.run.dtype is not None else contextlib.nullcontext()

    def prepare(self, teacher: nn.Module | None) -> None:
        """Cast the teacher's weights to ``teacher.dtype``."""
        if teacher is not None and self.dtype != torch.float32:
            teacher.to(self.dtype)
