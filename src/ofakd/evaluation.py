"""Evaluate a classifier in depth: top-1, top-5, per-class accuracy, mean loss and images/s.

    from ofakd.evaluation import eval_loader, evaluate, load_student
    model, info = load_student("runs/NAME")            # or runs/NAME/best.safetensors, or a timm export
    loader, class_names = eval_loader(info)            # the run's validation split, its preprocessing
    result = evaluate(model, loader, info.num_classes, device="cpu")
    print(result.format(class_names))                  # or json.dumps(result.to_dict(class_names))

Accuracies are percentages. ``images_per_s`` counts the model alone: the time from a batch's
copy to the device to its logits (synchronised on CUDA), data loading excluded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data.config import DataConfig
from .errors import DataError
from .export.run_loading import load_student
from .export.student import StudentInfo

__all__ = ["EvalResult", "eval_loader", "evaluate", "load_student", "resolve_data"]


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


def evaluate(
    model: nn.Module,
    loader,
    num_classes: int,
    device: str | torch.device = "cpu",
    *,
    autocast_dtype: torch.dtype | None = None,
) -> EvalResult:
    """Evaluate ``model`` (moved to ``device``, put in eval mode, restored after) on every batch of ``loader``.

    Batches are ``(images, targets, ...)``; targets are class indices, or soft rows (their argmax
    is the class and the loss is the soft cross-entropy). ``autocast_dtype`` (e.g. torch.bfloat16)
    runs the model under autocast; logits are scored in float32. The counting is the engine's
    (:func:`ofakd.engine.evaluate.evaluate`), the one every training run reports.
    """
    from .engine.amp import Precision
    from .engine.evaluate import evaluate as count_hits

    device = torch.device(device)
    model.to(device)
    mode = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "none"}[autocast_dtype]
    out = count_hits(model, loader, device=device, precision=Precision(mode, device), num_classes=num_classes)
    return EvalResult(
        top1=out["top1"],
        top5=out["top5"],
        per_class_accuracy=out["per_class_accuracy"],
        mean_loss=out["loss"],
        images_per_s=out["images_per_s"],
        count=out["count"],
        per_class_count=out["per_class_count"],
        seconds=out["seconds"],
    )


_PLAIN_TRAIN = dict(train_resize_only=True, hflip=0.0, color_jitter=0.0, auto_augment=None, reprob=0.0,
                   mixup=0.0, cutmix=0.0, smoothing=0.0, repeated_aug=0)
"""Augment settings that make the train split deterministic (plain resize, nothing random)."""


def resolve_data(info: StudentInfo, overrides: list[tuple[str, Any]] | None = None) -> DataConfig:
    """The data set to evaluate on: the one ``info`` records (its run's), with ``("data.KEY", value)``
    overrides applied (e.g. ``[("data.root", "./data")]``); other keys are ignored."""
    from pydantic import ValidationError

    from .config.messages import config_error

    raw = info.data.model_dump(mode="json") if info.data is not None else {}
    changed = False
    for key, value in overrides or []:
        if key.startswith("data."):
            raw[key[len("data."):]] = value
            changed = True
    if info.data is None and not changed:
        raise DataError(f"{info.path} records no data set; name one, e.g. --data.name cifar100 --data.root PATH")
    try:
        return DataConfig.model_validate(raw)
    except ValidationError as err:
        raise config_error(err, DataConfig, prefix="data.") from None


def eval_loader(
    info: StudentInfo,
    data: DataConfig | None = None,
    *,
    batch_size: int = 128,
    split: str = "val",
) -> tuple[Any, list[str]]:
    """(loader, class names) for ``info``'s student: ``data`` (default: the data set ``info`` records)
    prepared with the student's preprocessing (input size, mean, std, interpolation, crop).
    ``split="train"`` gives the training images with a plain resize and nothing random."""
    from .data import build_data

    if split not in ("val", "train"):
        raise DataError(f"split must be val or train, got {split!r}")
    data = data if data is not None else resolve_data(info)
    spec = info.preprocess
    augment = spec.augment()
    if split == "train":
        augment = augment.model_copy(update=_PLAIN_TRAIN)
    bundle = build_data(
        data, augment, input_size=spec.input_size, mean=spec.mean, std=spec.std,
        batch_size=batch_size, seed=0, drop_last=False,
    )
    if bundle.num_classes != info.num_classes:
        raise DataError(
            f"data set {data.name} has {bundle.num_classes} classes but the model predicts {info.num_classes}; "
            "evaluate on the data set the model was trained for (--data.name, --data.root)"
        )
    return (bundle.train_loader if split == "train" else bundle.val_loader), bundle.class_names
