"""Evaluate saved weights on a split (what ``ofakd eval`` runs)."""

from __future__ import annotations

from ..config.schema import RunConfig
from ..data import build_data, dataset_num_classes
from ..errors import ModelError
from .build import build_model, model_spec
from .checkpoint import load_state
from .device import pick_device
from .evaluate import evaluate
from .precision import Precision
from .seeding import seed_all

PLAIN = dict(train_resize_only=True, hflip=0.0, color_jitter=0.0, auto_augment=None, reprob=0.0,
             mixup=0.0, cutmix=0.0, smoothing=0.0, repeated_aug=0)
"""Augment settings that make the train split deterministic (plain resize, nothing random)."""


def evaluate_target(cfg: RunConfig, *, split: str = "val", last_pt: bool = False) -> dict:
    """``{"top1", "top5", "loss", "count", "split", "model", "dataset"}`` of ``cfg.student`` (its
    ``checkpoint``; with ``last_pt`` the student inside a run's ``last.pt``) on ``split``."""
    seed_all(0)
    device = pick_device(cfg.train.device)
    student_cfg = cfg.student.model_copy(update={"checkpoint": None}) if last_pt else cfg.student
    model = build_model(student_cfg, dataset_num_classes(cfg.data), "student")
    if last_pt:
        state = load_state(cfg.student.checkpoint)["distiller"]
        weights = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
        if not weights:
            raise ModelError(f"{cfg.student.checkpoint} holds no student weights")
        model.load_state_dict(weights)
    spec = model_spec(model, cfg.student)
    augment = cfg.augment.model_copy(update=PLAIN) if split == "train" else cfg.augment
    bundle = build_data(cfg.data, augment, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                        batch_size=cfg.train.batch_size, seed=0, drop_last=False)
    loader = bundle.train_loader if split == "train" else bundle.val_loader
    model.to(device)
    result = evaluate(model, loader, device=device, precision=Precision(cfg.train.amp, device))
    return {**result, "split": split, "model": cfg.student.name, "dataset": cfg.data.name}
