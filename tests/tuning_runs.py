"""The tunings the tests of ``ofakd tune`` run: seconds per trial on the demo recipe, from a random tiny teacher."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import ofakd

TINY_VIT = {"img_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2}
QUIET = {"log": lambda _line: None}


def save_tiny_teacher(folder: Path) -> Path:
    """A random test_byobnet of 10 classes saved in ``folder``: the tunings' teacher."""
    torch.manual_seed(0)
    teacher = ofakd.create_model("test_byobnet", num_classes=10)
    path = folder / "teacher.pth"
    torch.save(teacher.state_dict(), path)
    return path


def tiny_overrides(teacher_file, epochs: int = 2) -> list[tuple[str, object]]:
    """The demo recipe at seconds per trial: 96 digits (32 held out by the tunings below), 16 px, batch 16."""
    return [("data.train_subset", 96), ("data.val_subset", 64), ("train.batch_size", 16), ("train.epochs", epochs),
            ("train.log_every", 2), ("train.device", "cpu"), ("train.seed", 0),
            ("student", {"name": "vit_tiny_patch16_224", "kwargs": TINY_VIT, "input_size": [3, 16, 16]}),
            ("teacher", {"name": "test_byobnet", "checkpoint": str(teacher_file), "input_size": [3, 16, 16]})]


def tiny_flags(teacher_file, epochs: int = 2) -> list[str]:
    """The same as command-line flags."""
    return ["--config", "demo", "--data.train_subset", "96", "--data.val_subset", "64", "--train.batch_size", "16",
            "--epochs", str(epochs), "--train.log_every", "2", "--device", "cpu", "--seed", "0",
            "--set", f"student={json.dumps({'name': 'vit_tiny_patch16_224', 'kwargs': TINY_VIT, 'input_size': [3, 16, 16]})}",
            "--set", f"teacher={json.dumps({'name': 'test_byobnet', 'checkpoint': str(teacher_file), 'input_size': [3, 16, 16]})}"]
