"""``ofakd.fit``: train a distiller built in Python on torch ``Dataset`` s, with everything the engine does.

    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=MyCNN(), input_size=(3, 32, 32),
                                       student_stages=["layer1", "layer2", "layer3", "layer4"])
    run = ofakd.fit(distiller, train_set, val_set, out_dir="runs", epochs=30, lr=1e-3, batch_size=64)

It is the :class:`~ofakd.engine.trainer.Trainer` of ``ofakd distill`` (run folder, ``last.pt`` and resume,
metrics.jsonl and TensorBoard, EMA, AMP, torchrun, NaN checks, preemption); only where the distiller and
the data come from differs: a :data:`~ofakd.engine.setup.SetupBuilder` hands over the given ones. The
run's ``config.yaml`` records what the run was: ``data.name: python``, the method and its options, the
``train`` settings, and the models' timm names when they have them (so ``ofakd export`` rebuilds a timm
student).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch.utils.data import Dataset

from ..config.messages import config_error
from ..config.schema import RunConfig
from ..data import given_data
from ..data.loaders import Loading
from ..data.views import untouched_rng
from ..distill import Distiller
from ..distill.combined import CombinationOptions
from ..errors import ConfigError, DataError
from ..models.info import InputSpec, input_spec, num_classes
from ..run_folder import LAST, default_name, sanitize_name
from .launch import distributed
from .processes import DistContext
from .setup import Setup, SetupBuilder
from .trainer import Trainer


def fit(
    distiller: Distiller,
    train_set: Dataset,
    val_set: Dataset,
    *,
    out_dir: str | Path = "runs",
    name: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    workers: int = 0,
    progress: bool = True,
    tensorboard: bool = True,
    log: Callable[[str], None] = print,
    **train: Any,
) -> Path:
    """Train ``distiller`` on ``train_set`` (items ``(image tensor, class index)``, already transformed by the
    data set) and evaluate its student on ``val_set`` every epoch; returns the run folder.

    ``train`` takes any ``train.*`` setting (``epochs``, ``lr``, ``batch_size``, ``optimizer``,
    ``weight_decay``, ``warmup_epochs``, ``amp``, ``ema_decay``, ``clip_grad``, ``seed``, ``device``,
    ``checkpoint_every``, ...; see ``ofakd distill --help``). ``resume=True`` continues the run folder when it
    holds a checkpoint (else starts it). ``class_names`` default to ``train_set.classes`` when it has them;
    ``mean``/``std`` (what the data sets normalise with) are recorded for export, by default the student's.
    Training views are keyed as the engine's: each item is loaded under generators seeded by (data seed,
    epoch, position), so random transforms give the same views in every run and after a resume.
    """
    names = _class_names(train_set, class_names, num_classes(distiller.student))
    _check_data(distiller, train_set)
    spec = _student_spec(distiller, mean, std)
    cfg = run_config(distiller, spec, out_dir=out_dir, name=name, workers=workers, train=train)
    folder = Path(cfg.run.out_dir) / sanitize_name(cfg.run.name)
    resuming = resume and (folder / LAST).is_file()
    if folder.exists() and not (resuming or overwrite or resume):
        raise ConfigError(f"run folder {folder} already exists; pass resume=True to continue it, overwrite=True to "
                          "replace it, or another name=")
    setup = given_setup(distiller, train_set, val_set, names, spec)
    with distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout, resume_hint=folder) as dist:
        Trainer(cfg, resume=folder if resuming else None, overwrite=overwrite or (resume and not resuming), dist=dist,
                progress=progress, tensorboard=tensorboard, log=log, setup=setup).fit()
    return folder


def given_setup(distiller: Distiller, train_set: Dataset, val_set: Dataset, class_names: list[str],
                spec: InputSpec) -> SetupBuilder:
    """The trainer's setup from a built distiller and data sets: the loaders of this process, the distiller on
    the device."""

    def build(cfg: RunConfig, device: torch.device, dist: DistContext) -> Setup:
        bundle = given_data(
            train_set, val_set, class_names, batch_size=cfg.train.batch_size, seed=cfg.data_seed,
            world_size=dist.world_size, rank=dist.rank, with_indices=distiller.needs_sample_indices,
            loading=Loading(cfg.data.workers, cfg.data.prefetch, pin_memory=device.type == "cuda",
                            persistent_workers=True),
        )
        distiller.to(device)
        return Setup(distiller, distiller.student, distiller.teacher, bundle, spec)

    return build


def run_config(distiller: Distiller, spec: InputSpec, *, out_dir: str | Path, name: str | None, workers: int,
               train: dict[str, Any]) -> RunConfig:
    """The config a run of ``fit`` records: data ``python``, the distiller's method and options, the models'
    timm names where they have them, the ``train`` settings (validated: an unknown one names the nearest)."""
    method = method_section(distiller)
    teacher = getattr(distiller.teacher, "model", None)
    raw = {
        "data": {"name": "python", "workers": workers},
        "teacher": {"name": model_label(teacher) if teacher is not None else None},
        "student": {**timm_recipe(distiller.student), "input_size": list(spec.input_size), "mean": list(spec.mean),
                    "std": list(spec.std)},
        "method": method,
        "train": train,
        "run": {"out_dir": str(out_dir)},
    }
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise config_error(err, RunConfig) from None
    label = name or default_name(method["name"], raw["teacher"]["name"] if distiller.needs_teacher else None,
                                 model_label(distiller.student), "python", cfg.train.seed)
    return cfg.model_copy(update={"run": cfg.run.model_copy(update={"name": label})})


def method_section(distiller: Distiller) -> dict[str, Any]:
    """``{"name": method, **options}`` as a config's ``method:`` section (a combination: options per part)."""
    options = distiller.options
    if isinstance(options, CombinationOptions):
        values = {k: v for k, v in options.model_dump(mode="json").items() if k != "parts"}
        values.update({part: o.model_dump(mode="json") for part, o in options.parts.items()})
    else:
        values = options.model_dump(mode="json")
    return {"name": distiller.method_name or type(distiller).__name__, **values}


def timm_recipe(model: torch.nn.Module) -> dict[str, Any]:
    """``{"name": architecture, "kwargs": ...}`` of a model timm built (what rebuilds it), else no name."""
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not architecture:
        return {"name": None}
    recorded = getattr(model, "_model_args", None) or {}
    kwargs = {k: v for k, v in recorded.items()
              if k not in ("num_classes", "pretrained_cfg_overlay", "pretrained_cfg") and _plain(v)}
    return {"name": architecture, "kwargs": kwargs}


def model_label(model: torch.nn.Module) -> str:
    """The timm architecture of ``model``, or its class name."""
    return timm_recipe(model)["name"] or type(model).__name__


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) or (
        isinstance(value, (list, tuple)) and all(_plain(v) for v in value))


def _class_names(train_set: Dataset, given: Sequence[str] | None, classes: int) -> list[str]:
    names = list(given) if given is not None else list(getattr(train_set, "classes", None) or
                                                        [str(k) for k in range(classes)])
    if len(names) != classes:
        raise DataError(f"{len(names)} class names for a student with {classes} outputs; pass class_names= with "
                        f"one name per class")
    return [str(n) for n in names]


def _check_data(distiller: Distiller, train_set: Dataset) -> None:
    """The first training item fits the distiller (an image of its input size), and a memory bank fits the set."""
    if distiller.needs_sample_indices and distiller.num_samples != len(train_set):
        raise ConfigError(
            f"method {distiller.method_name!r} keeps one row per training item: build it with "
            f"create_distiller(..., num_samples=len(train_set)) ({len(train_set)}), not {distiller.num_samples}"
        )
    with untouched_rng():
        item = train_set[0]
    image = item[0] if isinstance(item, (tuple, list)) and len(item) >= 2 else None
    if not isinstance(image, torch.Tensor):
        raise DataError(f"train_set[0] must be (image tensor, class index), got {type(item).__name__}; add a "
                        "transform that returns tensors (e.g. torchvision.transforms.ToTensor)")
    expected = tuple(distiller.input_size or ())
    if expected and tuple(image.shape) != expected:
        raise DataError(f"train_set gives images of shape {tuple(image.shape)} but the distiller was built for "
                        f"input_size {expected}; pass input_size= to create_distiller or resize in the data set")


def _student_spec(distiller: Distiller, mean, std) -> InputSpec:
    own = input_spec(distiller.student)
    return InputSpec(tuple(distiller.input_size or own.input_size), tuple(mean or own.mean), tuple(std or own.std),
                     own.interpolation, own.crop_pct)
