"""Evaluate saved weights on a split (what ``ofakd eval`` runs)."""

from __future__ import annotations

from torch.utils.data import DataLoader

from ..config.schema import RunConfig
from ..data import build_data, dataset_num_classes
from ..data.samplers import ShardSampler
from ..data.views import ViewSampler
from ..errors import ModelError
from ..models.from_config import build_model, model_spec
from ..run_folder import load_state
from .amp import Precision
from .device import pick_device
from .evaluate import evaluate
from .launch import rank_device
from .processes import SINGLE_PROCESS, DistContext
from .seeding import seed_all

PLAIN = dict(train_resize_only=True, hflip=0.0, color_jitter=0.0, auto_augment=None, reprob=0.0,
             mixup=0.0, cutmix=0.0, smoothing=0.0, repeated_aug=0)
"""Augment settings that make the train split deterministic (plain resize, nothing random)."""


def evaluate_target(cfg: RunConfig, *, split: str = "val", last_pt: bool = False,
                    dist: DistContext = SINGLE_PROCESS) -> dict:
    """``{"top1", "top5", "loss", "count", "split", "model", "dataset"}`` of ``cfg.student`` (its
    ``checkpoint``; with ``last_pt`` the student inside a run's ``last.pt``) on ``split``. With several
    processes (``dist``) each evaluates its share of the images and the counts are summed."""
    seed_all(0)
    device = rank_device(cfg.train.device, dist.local_rank) if dist.distributed else pick_device(cfg.train.device)
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
                        batch_size=cfg.train.batch_size, seed=0, drop_last=False,
                        world_size=dist.world_size, rank=dist.rank)
    loader = bundle.train_loader if split == "train" else bundle.val_loader
    if split == "train" and dist.distributed:  # each image once over the processes (the train sampler pads)
        loader = _shard_loader(loader, dist, workers=cfg.data.workers)
    model.to(device)
    result = evaluate(model, loader, device=device, precision=Precision(cfg.train.amp, device), dist=dist)
    return {**result, "split": split, "model": cfg.student.name, "dataset": cfg.data.name,
            "class_names": list(bundle.class_names)}


def _shard_loader(train_loader: DataLoader, dist: DistContext, *, workers: int) -> DataLoader:
    """``train_loader``'s images and collate over this process's :class:`ShardSampler` share, in order."""
    shard = ShardSampler(train_loader.dataset, world_size=dist.world_size, rank=dist.rank)
    return DataLoader(train_loader.dataset, batch_size=train_loader.batch_size, num_workers=workers,
                      sampler=ViewSampler(shard, world_size=dist.world_size, rank=dist.rank),
                      collate_fn=train_loader.collate_fn)
