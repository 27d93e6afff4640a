"""What every check of ``bench/gpu_check.py`` is given: the device, how big to run, where to write, the tolerances.

Two sizes: ``GPU`` (the real check, at most ~8 minutes on one GPU) and ``SMOKE`` (the same code paths with tiny
models at 32 px, seconds on a CPU: the test's mode).
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch


class Skip(Exception):
    """A check (or one variant of it) that cannot run here; the message says why."""


class OutOfTime(BaseException):
    """A check ran past its time budget (a BaseException: no ``except Exception`` on the way swallows it)."""


@dataclass(frozen=True)
class Pair:
    """A teacher -> student pair of the speed table: ``label`` names the pair the row stands for (in smoke mode tiny
    models stand in), ``name`` its check."""

    name: str
    label: str
    teacher: str
    teacher_kwargs: dict
    student: str
    student_kwargs: dict
    student_recipe: str
    """The shipped recipe of the student's family (its optimizer, augmentation and EMA are part of the step)."""


@dataclass(frozen=True)
class Sizes:
    """How big each check runs."""

    size: int
    """Input pixels (square) of the correctness runs."""
    batch: int
    steps: int
    """Optimizer steps per epoch of a correctness run."""
    teacher: dict
    map_student: dict
    """A student whose stage features are maps (B, C, H, W) (model section of a config, without input_size)."""
    token_student: dict
    """A student whose stage features are tokens (B, N, D)."""
    pairs: tuple[Pair, ...]
    speed_size: int
    speed_batch: int
    speed_steps: int
    """Steps per timed round (and steps per epoch of the recorded teacher cache)."""
    speed_rounds: int
    speed_warmup: int
    speed_classes: int
    cifar_steps: int
    """Steps per epoch of the CIFAR-size data paths' runs (batch ``speed_batch``)."""
    workers: int
    """Loader processes of the teacher-cache recording and of the per-image CIFAR-size path."""

    def __post_init__(self) -> None:
        if self.speed_batch * self.speed_steps < self.speed_classes:  # an ImageFolder needs every class in train/
            raise ValueError(f"{self.speed_batch} x {self.speed_steps} speed images cannot cover {self.speed_classes} classes")


VIT_32 = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}

GPU = Sizes(
    size=64, batch=32, steps=4,
    teacher={"name": "resnet18", "kwargs": {}, "random_init": True},  # a check of numbers and speed: any weights
    map_student={"name": "resnet18", "kwargs": {}},
    token_student={"name": "vit_tiny_patch16_224",
                   "kwargs": {"img_size": 64, "patch_size": 8, "depth": 4, "embed_dim": 192, "num_heads": 3}},
    pairs=(
        Pair("speed_deit_t_to_resnet18", "DeiT-T -> ResNet18", "deit_tiny_patch16_224", {}, "resnet18", {}, "imagenet-cnn"),
        Pair("speed_resnet50_to_deit_t", "ResNet50 -> DeiT-T", "resnet50", {}, "deit_tiny_patch16_224", {}, "imagenet-vit-mlp"),
    ),
    speed_size=224, speed_batch=128, speed_steps=10, speed_rounds=3, speed_warmup=3, speed_classes=1000,
    cifar_steps=50, workers=8,
)
SMOKE = Sizes(
    size=32, batch=8, steps=3,
    teacher={"name": "test_byobnet", "kwargs": {}, "random_init": True},
    map_student={"name": "test_resnet", "kwargs": {}},
    token_student={"name": "vit_tiny_patch16_224", "kwargs": VIT_32},
    pairs=(  # the same two rows, tiny models standing in
        Pair("speed_deit_t_to_resnet18", "DeiT-T -> ResNet18", "vit_tiny_patch16_224", VIT_32, "test_resnet", {}, "imagenet-cnn"),
        Pair("speed_resnet50_to_deit_t", "ResNet50 -> DeiT-T", "test_resnet", {}, "vit_tiny_patch16_224", VIT_32, "imagenet-vit-mlp"),
    ),
    speed_size=32, speed_batch=8, speed_steps=2, speed_rounds=2, speed_warmup=1, speed_classes=10,
    cifar_steps=3, workers=0,
)

LOSS_RTOL = {"fp32": 1e-3, "bf16": 3e-2, "fp16": 1e-2}
"""Largest relative difference of a step's total loss from the float32 eager run's, per precision. float32 allows
for another summation order (channels-last, compiled kernels) and TF32 convolutions (cuDNN's default on Ampere and
later); bfloat16 keeps 8 significant bits (a rounding of 0.4 %) and float16 11 (0.05 %), compounded through the
network over a few steps."""

STATE_ATOL = {"cpu": 0.0, "cuda": 1e-4}
"""Largest absolute difference of any weight or buffer between two runs that must be equal (a cached and a live
teacher; a resumed and an uninterrupted run): bit for bit on CPU, whose kernels are deterministic; on CUDA cuDNN,
cuBLAS and attention backward kernels accumulate in a run-dependent order, so two identical runs differ by
rounding (the check reports what a repeat of the same run differs by, beside it)."""


@dataclass
class Context:
    """The device, sizes, work folder and tolerances of this run of the checks; ``deadline`` is the current
    check's (``time.monotonic()``), set by the runner."""

    device: torch.device
    sizes: Sizes
    work: Path
    smoke: bool
    loss_rtol: dict[str, float] = field(default_factory=lambda: dict(LOSS_RTOL))
    deadline: float = math.inf
    shared: dict = field(default_factory=dict)
    """What several checks use, made once (the speed table's image folder)."""

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def state_atol(self) -> float:
        return STATE_ATOL["cuda" if self.cuda else "cpu"]

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def folder(self, *parts: str) -> Path:
        path = self.work.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def compiling(self):
        """Where ``train.compile`` compiles. On a GPU: inductor, as a user's run. In smoke mode dynamo still traces
        the training forward for real, but its graphs run on the eager backend (no C++ build, seconds not minutes on a
        CPU), through dynamo's own per-graph backend override."""
        if not self.smoke:
            return contextlib.nullcontext()
        return torch._dynamo.config.patch(debug_backend_override=">=0:eager")


def release_memory(device: torch.device) -> None:
    """Free what the last run left (models, optimizer state, the allocator's cache), so that the next starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def quiet(_line: str) -> None:
    """A run's log, unheard (a failed run raises; its message is reported)."""
