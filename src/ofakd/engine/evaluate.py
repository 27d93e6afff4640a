"""Accuracy of a classifier over a loader: top-1, top-5, per-class top-1, mean loss, images/s.

Accuracies are percentages; top-5 is over min(5, classes) classes. ``images_per_s`` counts the
model alone: from a batch's copy to the device to its logits (synchronised on CUDA), data
loading excluded. With several processes (``dist``) each evaluates its share of the images and
the counts are summed over processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .amp import Precision
from .processes import SINGLE_PROCESS, DistContext


@torch.no_grad()
def evaluate(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    loader,
    *,
    device: torch.device,
    precision: Precision | None = None,
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    dist: DistContext = SINGLE_PROCESS,
    num_classes: int | None = None,
) -> dict:
    """``{"top1", "top5", "loss", "count", "per_class_accuracy", "per_class_count", "images_per_s",
    "seconds"}`` of ``model`` on every batch of ``loader`` (eval mode, restored after).

    Targets are class indices or soft rows (their argmax is the class; the loss is then the soft
    cross-entropy). ``model`` is a module or any callable images -> logits (e.g. a live teacher's
    ``logits``). ``input_transform`` adapts the batch first (e.g. a teacher's input adapter).
    ``num_classes`` (default: the logits' width) is checked against the logits.
    """
    module = model if isinstance(model, nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    correct1 = seen = None
    correct_k = loss_sum = seconds = 0.0
    try:
        for batch in loader:
            start = time.perf_counter()
            images = batch[0].to(device, non_blocking=True)
            if input_transform is not None:
                images = input_transform(images)
            with precision.autocast() if precision is not None else torch.autocast(device.type, enabled=False):
                logits = model(images)
            logits = logits.float()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - start
            classes = num_classes or logits.shape[1]
            if logits.ndim != 2 or logits.shape[1] != classes:
                raise DataError(
                    f"the model returns logits of shape {tuple(logits.shape)} but the data has {classes} "
                    "classes; evaluate on the data set the model was trained for"
                )
            if correct1 is None:
                correct1 = torch.zeros(classes, dtype=torch.float64)
                seen = torch.zeros(classes, dtype=torch.float64)
            targets = batch[1].to(device, non_blocking=True)
            labels = targets.argmax(dim=1) if targets.ndim == 2 else targets.long()
            loss_sum += float(F.cross_entropy(logits, targets.float() if targets.ndim == 2 else labels, reduction="sum"))
            hits = logits.topk(min(5, classes), dim=1).indices.eq(labels.view(-1, 1))
            correct_k += float(hits.any(dim=1).sum())
            labels_cpu = labels.cpu()
            seen += torch.bincount(labels_cpu, minlength=classes).double()
            correct1 += torch.bincount(labels_cpu, weights=hits[:, 0].cpu().double(), minlength=classes)
    finally:
        if module is not None:
            module.train(was_training)
    classes = correct1.numel() if correct1 is not None else (num_classes or 0)
    if correct1 is None:
        correct1 = seen = torch.zeros(classes, dtype=torch.float64)
    totals = torch.cat([correct1, seen, torch.tensor([correct_k, loss_sum, seconds], dtype=torch.float64)])
    if dist.distributed:
        totals = dist.sum(totals.to(device)).cpu()
    correct1, seen = totals[:classes], totals[classes : 2 * classes]
    correct_k, loss_sum, seconds = totals[2 * classes :].tolist()
    count = int(seen.sum().item())
    denom = max(count, 1)
    return {
        "top1": 100.0 * float(correct1.sum()) / denom,
        "top5": 100.0 * correct_k / denom,
        "loss": loss_sum / denom,
        "count": count,
        "per_class_accuracy": [None if n == 0 else 100.0 * c / n for c, n in zip(correct1.tolist(), seen.tolist())],
        "per_class_count": [int(n) for n in seen.tolist()],
        "images_per_s": count / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }
