"""What the teacher is fed, and the teacher made ready for inference.

The feed: the engine's input adapter (re-normalise, resize), then channels-last. Convolutions on
CPU (oneDNN) and on GPU (cuDNN) run markedly faster in channels-last memory format; the teacher
only runs inference, so it is converted once and fed channels-last batches. The values are
unchanged: only the memory layout differs. The teacher's eval-mode BatchNorms are folded into the
convolutions before them (``ofakd.models.fold_batchnorm``): the same function with a memory pass
fewer per BatchNorm.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..models.fold_batchnorm import fold_batchnorm


class TeacherView(nn.Module):
    """``images -> adapter(images)`` in channels-last layout. ``adapter`` may be None or any callable."""

    def __init__(self, adapter: Callable[[torch.Tensor], torch.Tensor] | None, channels_last: bool = True) -> None:
        super().__init__()
        self.adapter = adapter  # registered as a submodule when it is one (its buffers follow .to())
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.adapter(images) if self.adapter is not None else images
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def prepare_teacher(teacher: nn.Module, channels_last: bool = True) -> nn.Module:
    """Freeze ``teacher`` for inference, in place: eval mode, no gradients, BatchNorms folded into
    their convolutions, channels-last weights. Its state dict then lacks the folded BatchNorms'
    entries: hash or save the teacher before handing it to a distiller."""
    teacher.eval().requires_grad_(False)
    fold_batchnorm(teacher)
    if channels_last:
        teacher.to(memory_format=torch.channels_last)
    return teacher
