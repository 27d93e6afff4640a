"""Evaluate saved weights in depth: top-1, top-5, per-class accuracy, mean loss and images/s.

    from ofakd.evaluation import eval_loader, evaluate, load_student
    model, info = load_student("runs/NAME")            # or runs/NAME/best.safetensors, or a timm export
    loader, class_names = eval_loader(info)            # the run's validation split, its preprocessing
    result = evaluate(model, loader, info.num_classes, device="cpu")
    print(result.format(class_names))                  # or json.dumps(result.to_dict(class_names))

or, from a config whose ``student.checkpoint`` names the weights (what ``ofakd eval`` runs)::

    result, class_names = evaluate_target(cfg, split="val")

:func:`evaluate` and :class:`EvalResult` are the engine's own (:mod:`ofakd.engine.evaluate`): a
student is scored here exactly as its training run scored it.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import ValidationError
from torch import nn

from .config.schema import RunConfig
from .data import build_data, dataset_num_classes, seed_everything
from .data.build import reordered
from .data.config import DataConfig
from .data.samplers import ShardSampler
from .data.views import ViewSampler
from .device import pick_device
from .engine.amp import Precision
from .engine.evaluate import EvalResult, evaluate
from .engine.launch import rank_device
from .engine.processes import SINGLE_PROCESS, DistContext
from .errors import DataError
from .export.run_loading import load_student
from .export.student import StudentInfo
from .models.from_config import build_model, model_spec
from .models.info import nonfinite_tensors
from .pydantic_errors import config_error
from .run_folder import checkpoint_student, load_state

__all__ = ["EvalResult", "eval_loader", "evaluate", "evaluate_target", "load_student", "resolve_data"]

PLAIN_TRAIN = dict(train_resize_only=True, hflip=0.0, color_jitter=0.0, auto_augment=None, reprob=0.0,
                   mixup=0.0, cutmix=0.0, smoothing=0.0, repeated_aug=0)
"""Augment settings that make the train split deterministic (plain resize, nothing random)."""


def resolve_data(info: StudentInfo, overrides: list[tuple[str, Any]] | None = None) -> DataConfig:
    """The data set to evaluate on: the one ``info`` records (its run's), with ``("data.KEY", value)``
    overrides applied (e.g. ``[("data.root", "./data")]``); other keys are ignored."""
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
    if split not in ("val", "train"):
        raise DataError(f"split must be val or train, got {split!r}")
    data = data if data is not None else resolve_data(info)
    spec = info.preprocess
    augment = spec.augment()
    if split == "train":
        augment = augment.model_copy(update=PLAIN_TRAIN)
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


def warn_nonfinite(model: nn.Module, where) -> None:
    """A warning naming the weights of ``model`` (read from ``where``) that hold NaN/inf: its outputs are then
    not numbers, and every score computed from them is meaningless."""
    bad = nonfinite_tensors(model.state_dict().items())
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        warnings.warn(f"{where}: the weights hold NaN/inf ({bad[0]}{more}), so the model's outputs are not numbers "
                      "and its scores mean nothing; evaluate weights that are finite", stacklevel=2)


def evaluate_target(cfg: RunConfig, *, split: str = "val", last_pt: bool = False,
                    dist: DistContext = SINGLE_PROCESS) -> tuple[EvalResult, list[str]]:
    """(result, class names) of ``cfg.student`` (its ``checkpoint``; with ``last_pt`` the student inside
    a run's ``last.pt``) on ``split`` of ``cfg.data``, with ``cfg.augment``'s preprocessing. With several
    processes (``dist``) each evaluates its share of the images and the counts are summed."""
    seed_everything(0)
    device = rank_device(cfg.train.device, dist.local_rank) if dist.distributed else pick_device(cfg.train.device)
    student_cfg = cfg.student.model_copy(update={"checkpoint": None}) if last_pt else cfg.student
    model = build_model(student_cfg, dataset_num_classes(cfg.data), "student")
    if last_pt:
        path = cfg.student.checkpoint
        model.load_state_dict(checkpoint_student(load_state(path), ema=False, where=path))
    warn_nonfinite(model, cfg.student.checkpoint)
    spec = model_spec(model, cfg.student)
    augment = cfg.augment.model_copy(update=PLAIN_TRAIN) if split == "train" else cfg.augment
    bundle = build_data(cfg.data, augment, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                        batch_size=cfg.train.batch_size, seed=0, drop_last=False,
                        world_size=dist.world_size, rank=dist.rank, device=device)
    loader = bundle.train_loader if split == "train" else bundle.val_loader
    if split == "train" and dist.distributed:  # each image once over the processes (the train sampler pads)
        shard = ShardSampler(loader.dataset, world_size=dist.world_size, rank=dist.rank)
        loader = reordered(loader, ViewSampler(shard, world_size=dist.world_size, rank=dist.rank))
    result = evaluate(model, loader, device=device, precision=Precision(cfg.train.amp, device), dist=dist)
    return result, list(bundle.class_names)

