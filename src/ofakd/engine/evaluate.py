"""The one evaluation of a classifier over a loader: top-1, top-5, per-class top-1, mean loss, images/s.

Training (the student, its EMA, the teacher), ``ofakd eval`` and :mod:`ofakd.evaluation` all call
:func:`evaluate`. Accuracies are percentages; top-5 is over min(5, classes) classes.
``images_per_s`` counts the model alone: from a batch's copy to the device to its logits
(synchronised on CUDA), data loading excluded. With several processes (``dist``) each evaluates
its share of the images and the counts are summed over processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .amp import Precision
from .processes import SINGLE_PROCESS, DistContext

_AUTOCAST_MODES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


class Autocast(Protocol):
    """What a forward runs under: the run's :class:`~ofakd.engine.amp.Precision` or a teacher's precision."""

    def autocast(self) -> AbstractContextManager: ...


@dataclass
class EvalResult:
    top1: float
    top5: float
    """Top-k accuracy with k = min(5, num_classes)."""
    per_class_accuracy: list[float | None]
    """Top-1 accuracy per class (index = class); None for a class with no image in the data."""
    mean_loss: float
    """Mean cross-entropy per image."""
    images_per_s: float
    count: int
    per_class_count: list[int]
    seconds: float
    """Time spent in the model (see the module docstring)."""

    def scores(self) -> dict[str, float]:
        """``{"top1", "top5", "loss"}``: what a training run logs for each evaluation."""
        return {"top1": self.top1, "top5": self.top5, "loss": self.mean_loss}

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "top1": self.top1,
            "top5": self.top5,
            "mean_loss": self.mean_loss,
            "images_per_s": self.images_per_s,
            "count": self.count,
            "seconds": self.seconds,
            "per_class_accuracy": self.per_class_accuracy,
            "per_class_count": self.per_class_count,
        }
        if class_names is not None:
            out["class_names"] = list(class_names)
        return out

    def format(self, class_names: list[str] | None = None, max_classes: int | None = 100) -> str:
        """Summary line, then one line per class (the ``max_classes`` worst when there are more)."""
        lines = [
            f"top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  mean loss {self.mean_loss:.4f}  "
            f"({self.count} images, {self.images_per_s:.1f} images/s)"
        ]
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.per_class_accuracy))]
        rows = list(enumerate(self.per_class_accuracy))
        if max_classes is not None and len(rows) > max_classes:
            rows = sorted(rows, key=lambda r: math.inf if r[1] is None else r[1])[:max_classes]
            lines.append(f"per-class top-1 (the {max_classes} worst of {len(self.per_class_accuracy)} classes):")
        else:
            lines.append("per-class top-1:")
        width = max((len(names[i]) for i, _ in rows), default=1)
        for i, acc in rows:
            value = "    n/a" if acc is None else f"{acc:6.2f}%"
            lines.append(f"  {names[i]:<{width}}  {value}  ({self.per_class_count[i]} images)")
        return "\n".join(lines)


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    *,
    precision: Autocast | None = None,
    autocast_dtype: torch.dtype | None = None,
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    dist: DistContext = SINGLE_PROCESS,
) -> EvalResult:
    """Evaluate ``model`` (images -> logits) on every batch of ``loader``.

    An ``nn.Module`` is moved to ``device`` and put in eval mode (its mode restored after).
    Batches are ``(images, targets, ...)``; targets are class indices, or soft rows (their argmax
    is the class and the loss is the soft cross-entropy). ``num_classes`` (default: the logits'
    width) is checked against the logits, which are scored in float32.

    ``precision``: the autocast each forward runs under (the run's :class:`Precision`);
    ``autocast_dtype`` (torch.bfloat16 or torch.float16) is the short form; neither: float32,
    autocast off (a live teacher's ``logits`` still runs in its own precision).
    ``input_transform`` adapts each batch first.
    """
    device = torch.device(device)
    if autocast_dtype is not None:
        if precision is not None:
            raise ValueError("evaluate: pass precision or autocast_dtype, not both")
        precision = Precision(_AUTOCAST_MODES[autocast_dtype], device)
    module = model if isinstance(model, nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.to(device)
        module.eval()
    tally, seconds = _Tally(num_classes, device), 0.0
    try:
        for batch in loader:
            start = time.perf_counter()
            images = batch[0].to(device, non_blocking=True)
            if input_transform is not None:
                images = input_transform(images)
            with precision.autocast() if precision is not None else torch.autocast(device.type, enabled=False):
                logits = model(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - start
            tally.add(logits.float(), batch[1].to(device, non_blocking=True))
    finally:
        if module is not None:
            module.train(was_training)
    return tally.result(seconds, dist)


class _Tally:
    """Per-class hits and counts, top-k hits and the summed loss, kept on the device (one transfer at the end)."""

    def __init__(self, num_classes: int | None, device: torch.device) -> None:
        self.num_classes, self.device = num_classes, device
        self.totals: torch.Tensor | None = None
        """[top-1 hits per class, images per class, top-k hits, summed loss] (float64)."""

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        classes = self.num_classes or logits.shape[1]
        if logits.ndim != 2 or logits.shape[1] != classes:
            raise DataError(
                f"the model returns logits of shape {tuple(logits.shape)} but the data has {classes} "
                "classes; evaluate on the data set the model was trained for"
            )
        self.num_classes = classes
        labels = targets.argmax(dim=1) if targets.ndim == 2 else targets.long()
        loss = F.cross_entropy(logits, targets.float() if targets.ndim == 2 else labels, reduction="sum")
        hits = logits.topk(min(5, classes), dim=1).indices.eq(labels.view(-1, 1))
        batch = torch.cat([
            torch.bincount(labels, weights=hits[:, 0].double(), minlength=classes),
            torch.bincount(labels, minlength=classes).double(),
            torch.stack([hits.any(dim=1).sum().double(), loss.double()]),
        ])
        self.totals = batch if self.totals is None else self.totals + batch

    def result(self, seconds: float, dist: DistContext) -> EvalResult:
        classes = self.num_classes or 0
        totals = self.totals if self.totals is not None else torch.zeros(2 * classes + 2, dtype=torch.float64)
        totals = torch.cat([totals.to(self.device), torch.tensor([seconds], dtype=torch.float64, device=self.device)])
        if dist.distributed:
            totals = dist.sum(totals)
        totals = totals.cpu()
        correct1, seen = totals[:classes], totals[classes : 2 * classes]
        correct_k, loss_sum, seconds = totals[2 * classes :].tolist()
        count = int(seen.sum().item())
        denom = max(count, 1)
        return EvalResult(
            top1=100.0 * float(correct1.sum()) / denom,
            top5=100.0 * correct_k / denom,
            per_class_accuracy=[None if n == 0 else 100.0 * c / n for c, n in zip(correct1.tolist(), seen.tolist())],
            mean_loss=loss_sum / denom,
            images_per_s=count / seconds if seconds > 0 else 0.0,
            count=count,
            per_class_count=[int(n) for n in seen.tolist()],
            seconds=seconds,
        )
