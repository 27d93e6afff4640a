"""Top-1 / top-5 accuracy (percent) and cross-entropy of a classifier over a loader."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .dist import SINGLE_PROCESS, DistContext
from .precision import Precision


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    *,
    device: torch.device,
    precision: Precision | None = None,
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    dist: DistContext = SINGLE_PROCESS,
) -> dict[str, float]:
    """``{"top1", "top5", "loss", "count"}`` of ``model`` on every batch of ``loader`` (eval mode).

    ``input_transform`` adapts the batch first (e.g. a teacher's :class:`TeacherInput`).
    Top-5 is over min(5, classes) classes.
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)  # correct@1, correct@5, loss sum, count
    try:
        for batch in loader:
            images = batch[0].to(device, non_blocking=True)
            targets = batch[1].to(device, non_blocking=True)
            if input_transform is not None:
                images = input_transform(images)
            with precision.autocast() if precision is not None else torch.autocast(device.type, enabled=False):
                logits = model(images)
            logits = logits.float()
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit = top.eq(targets.view(-1, 1))
            totals += torch.tensor([
                hit[:, :1].sum().item(),
                hit.any(dim=1).sum().item(),
                F.cross_entropy(logits, targets, reduction="sum").item(),
                targets.numel(),
            ], dtype=torch.float64)
    finally:
        model.train(was_training)
    totals = dist.sum(totals.to(device)).cpu() if dist.distributed else totals
    count = max(totals[3].item(), 1.0)
    return {
        "top1": 100.0 * totals[0].item() / count,
        "top5": 100.0 * totals[1].item() / count,
        "loss": totals[2].item() / count,
        "count": int(totals[3].item()),
    }
