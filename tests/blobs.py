"""Blobs, a tiny torch Dataset, and the distillers and settings the tests of ``ofakd.fit`` train with."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

import ofakd
from ofakd.teacher import LiveTeacher
from tests.tiny_models import SmallCNN, tiny


class Killed(Exception):
    """The process died (a crash, the OOM killer)."""


class Blobs(Dataset):
    """Three classes of 16-px noise around different means, flipped at random (a transform drawing from torch's
    global generator, as torchvision's do); loading fails after ``crash_after`` items when given."""

    classes = ["low", "mid", "high"]

    def __init__(self, n: int, seed: int, crash_after: int | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(0, 3, (n,), generator=g)
        self.images = torch.randn(n, 3, 16, 16, generator=g) * 0.5 + self.targets.view(-1, 1, 1, 1).float()
        self.crash_after, self.calls = crash_after, 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise Killed
        image = self.images[index]
        return (image.flip(-1) if torch.rand(()) < 0.5 else image), int(self.targets[index])


def distiller(method: str = "ofa", **kwargs):
    torch.manual_seed(0)
    return ofakd.create_distiller(method, teacher=SmallCNN(classes=3), student=tiny("deit", num_classes=3, size=16),
                                  input_size=(3, 16, 16), **kwargs)


SETTINGS = dict(epochs=2, batch_size=16, lr=1e-3, progress=False, tensorboard=False, log=lambda _m: None)


def bf16_distiller(method: str = "ofa", seed: int = 0):
    """The teacher under bf16 autocast: its logits are bfloat16 values, which a cache's fp16 rows hold exactly."""
    torch.manual_seed(seed)
    teacher = LiveTeacher(SmallCNN(classes=3), amp="bf16", stage_modules=["layer1", "layer2", "layer3", "layer4"])
    torch.manual_seed(0)
    return ofakd.create_distiller(method, teacher=teacher, student=tiny("deit", num_classes=3, size=16),
                                  input_size=(3, 16, 16))
