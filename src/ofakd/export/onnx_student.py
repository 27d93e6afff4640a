"""An exported ONNX student as a model: ``OnnxStudent(path)(images) -> logits``, run by onnxruntime on the CPU.

What ``ofakd eval model.onnx`` scores: the file as any ONNX user runs it, the batches moved to the CPU and the
logits back to the batches' device. It has no parameters and no stage features (CKA needs the PyTorch model).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .onnx_export import onnx_file_runner


class OnnxStudent(nn.Module):
    """The ONNX model at ``path`` as ``images -> logits`` (float32, on the images' device)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._run = onnx_file_runner(self.path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run(images.float())).to(images.device)
