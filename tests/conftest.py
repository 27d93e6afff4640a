"""Shared helpers for the engine / CLI tests: tiny models and data, and an in-process ``ofakd``."""

from __future__ import annotations

import atexit
import json
import os
import pickle
import shutil
import tempfile

# One compute thread per process: the tests use tiny models, several tests start extra
# processes (torchrun, signals), and on a 2-core machine oversubscribed OpenMP threads make a
# step an order of magnitude slower. Set before torch is imported; children inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Never reach the Hugging Face Hub, and never read the developer's own Hub cache: an empty one of this session's
# (huggingface_hub reads both when it is imported; tests that need cached files use the `hub_cache` fixture).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="ofakd-tests-hf-home-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], True)
os.environ.pop("HF_HUB_CACHE", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from ofakd.cli import main  # noqa: E402

TINY_VIT = {"img_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2}
"""A ViT student small enough for CPU tests (16 px input, 16 tokens)."""
TINY_CNN = "test_byobnet"
"""A small timm CNN."""


def tiny_overrides(out_dir, name: str, *, epochs: int = 2, method: str = "vanilla") -> list[tuple[str, object]]:
    """Overrides of the ``demo`` recipe for a seconds-long run: 64 digits, 16 px, batch 16."""
    return [
        ("data.train_subset", 64),
        ("data.val_subset", 32),
        ("train.batch_size", 16),
        ("train.epochs", epochs),
        ("train.log_every", 2),
        ("student", {"name": "vit_tiny_patch16_224", "kwargs": TINY_VIT, "input_size": [3, 16, 16]}),
        ("teacher", {"name": TINY_CNN, "input_size": [3, 16, 16], "random_init": True}),  # a tiny random stand-in
        ("method", {"name": method}),
        ("run.out_dir", str(out_dir)),
        ("run.name", name),
    ]


def tiny_cli_args(out_dir, *, epochs: int = 1) -> list[str]:
    """The same tiny settings as command-line flags (students: the tiny ViT)."""
    return [
        "--config", "demo", "--out-dir", str(out_dir), "--epochs", str(epochs),
        "--data.train_subset", "64", "--data.val_subset", "32", "--train.batch_size", "16",
        "--student.kwargs", json.dumps(TINY_VIT), "--student.input_size", "[3, 16, 16]",
    ]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face Hub cache of this test (``HF_HOME=tmp/hf``, offline): the environment for
    subprocesses, and huggingface_hub's own setting for this process (it reads HF_HOME once, on import)."""
    from huggingface_hub import constants

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"


@pytest.fixture
def ofakd_cli(capsys):
    """Run ``ofakd ARGS`` in-process: returns (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse --help / usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write_cifar100(root, n_train: int = 40, n_val: int = 20, seed: int = 0):
    """CIFAR-100 files in torchvision's pickle layout (``cifar-100-python/{train,test,meta}``)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_val)):
        batch = {
            "data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
            "fine_labels": [int(i % 100) for i in range(n)],
            "coarse_labels": [int(i % 20) for i in range(n)],
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(100)],
                     "coarse_label_names": [f"super_{i}" for i in range(20)]}, f)
    return root


def write_imagefolder(root, classes=("cat", "dog", "fox"), n_train: int = 12, n_val: int = 4, size: int = 20):
    """``root/{train,val}/<class>/*.png``: each class a distinct colour plus noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                base = np.zeros((size, size, 3), dtype=np.int32)
                base[..., k % 3] = 200
                pixels = np.clip(base + rng.integers(0, 50, size=base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i}.png")
    return root
