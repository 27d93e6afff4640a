"""``ofakd.fit``: train a distiller built in Python on torch ``Dataset`` s or on images given as arrays, with
everything the engine does.

    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=MyCNN(), input_size=(3, 32, 32),
                                       student_stages=["layer1", "layer2", "layer3", "layer4"])
    run = ofakd.fit(distiller, train_set, val_set, out_dir="runs", epochs=30, lr=1e-3, batch_size=64)
    run = ofakd.fit(distiller, (x_train, y_train), (x_val, y_val), augment={"hflip": 0.5}, epochs=30)  # uint8 arrays

It is the :class:`~ofakd.engine.trainer.Trainer` of ``ofakd distill`` (run folder, ``last.pt`` and resume,
metrics.jsonl and TensorBoard, EMA, AMP, torchrun, NaN checks, preemption); only where the distiller and
the data come from differs: the trainer's one setup builder takes them from a :class:`GivenSource`. The
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
from torch import nn
from torch.utils.data import Dataset

from ..cache import CachedTeacher
from ..cache.record import record_given
from ..config.schema import MethodConfig, RunConfig
from ..data import AugmentConfig, DataBundle, array_data, given_data
from ..data.given_items import check_first_items
from ..data.loaders import Loading
from ..distill import Distiller
from ..distill.method import Method
from ..errors import ConfigError, DataError
from ..models.info import InputSpec, input_spec, num_classes
from ..pydantic_errors import config_error
from ..run_folder import RunFolder, default_name, sanitize_name
from ..teacher.feature_check import check_features
from ..teacher.protocol import TeacherSource
from .given_models import check_models
from .launch import distributed
from .processes import DistContext
from .trainer import Trainer

ARRAY_AUGMENT = {"train_resize_only": True, "hflip": 0.0, "color_jitter": 0.0, "interpolation": "bilinear"}
"""What ``augment=`` starts from for images given as arrays: a plain resize, nothing random."""


def fit(
    distiller: Distiller,
    train_set: Dataset | tuple,
    val_set: Dataset | tuple,
    *,
    out_dir: str | Path = "runs",
    name: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    workers: int = 0,
    augment: AugmentConfig | dict[str, Any] | None = None,
    loader: str = "auto",
    teacher_cache: str | Path | None = None,
    cache_topk: int | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    log: Callable[[str], None] = print,
    **train: Any,
) -> Path:
    """Train ``distiller`` on ``train_set`` and evaluate its student on ``val_set`` every epoch; returns the run folder.

    The data sets are torch ``Dataset`` s whose items are ``(image tensor, class index)``, already transformed, or
    ``(images, labels)`` arrays (numpy or torch): uint8 images (N, H, W), (N, H, W, C) or (N, C, H, W) that ``fit``
    resizes to the student's input, augments as ``augment`` says (``augment.*`` settings, a dict or an
    :class:`~ofakd.data.AugmentConfig`; default a plain resize, nothing random) and normalises with ``mean``/``std``
    (default the student's), held in memory on the batched data path where ``loader`` (``data.loader``) allows.

    ``train`` takes any ``train.*`` setting (``epochs``, ``lr``, ``batch_size``, ``optimizer``,
    ``weight_decay``, ``warmup_epochs``, ``amp``, ``ema_decay``, ``clip_grad``, ``seed``, ``device``,
    ``checkpoint_every``, ...; see ``ofakd distill --help``). ``resume=True`` continues the run folder when it
    holds a checkpoint (else starts it). ``class_names`` default to ``train_set.classes`` when it has them.

    ``mean``/``std`` say what the data sets normalise with (or give them to ``create_distiller``): a teacher model
    sees the batches re-normalised from them to what it expects (its pretrained config), and the run records
    them for export. Without them the data are taken to be normalised as the student expects, and a teacher
    that expects another normalisation is an error naming them.
    Training views are keyed as the engine's: each item is loaded under generators seeded by (data seed,
    epoch, position), so random transforms give the same views in every run and after a resume.

    ``teacher_cache``: a folder for the teacher's logits over those views (logit-only methods). The first run
    records them (``cache_topk``: keep the top k of each row, else full fp16 logits), later runs with the same
    teacher weights, views and batch size replay them instead of running the teacher; a run for more epochs
    records the missing ones. The distiller gets its live teacher back when ``fit`` returns.

    Under torchrun the first ``fit`` starts the process group and leaves it open for the next (a script may
    call it several times); it ends when the process does. A group the script started itself is used as is.
    """
    if cache_topk is not None and teacher_cache is None:
        raise ConfigError("cache_topk= sets how a teacher cache stores logits: pass teacher_cache=FOLDER too, "
                          "or leave cache_topk out")
    given = GivenData.of(train_set, val_set, augment, loader)
    names = _class_names(train_set, class_names, num_classes(distiller.student))
    if given.arrays and mean is None and std is None:  # fit normalises arrays itself: the data's normalisation is known
        own = input_spec(distiller.student)
        mean, std = distiller.normalisation or (own.mean, own.std)
    if mean is not None or std is not None:
        distiller.normalised_with(mean, std)
    if distiller.needs_teacher and distiller.teacher is not None:
        distiller.teacher.check_input()  # the view needs the data's normalisation: say so before the run starts
    spec = _student_spec(distiller)
    cfg = run_config(distiller, spec, out_dir=out_dir, name=name, workers=workers, teacher_cache=teacher_cache,
                     train=train, given=given)
    check_models(distiller, spec.input_size)
    given.check(distiller, len(names), first=cfg.train.batch_size)
    folder = Path(cfg.run.out_dir) / sanitize_name(cfg.run.name)
    source = GivenSource(distiller, given, names, spec, cache_topk=cache_topk, log=log)
    live = distiller.teacher
    try:
        with distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout, resume_hint=folder,
                         keep_group=True) as dist:
            resuming, taken = resume and RunFolder(folder).last.is_file(), folder.exists()
            dist.barrier()  # every process has looked at the folder before rank 0 makes it
            if taken and not (resume or overwrite):
                raise ConfigError(f"run folder {folder} already exists; pass resume=True to continue it, "
                                  "overwrite=True to replace it, or another name=")
            Trainer(cfg, resume=folder if resuming else None, overwrite=overwrite or (resume and not resuming),
                    dist=dist, progress=progress, tensorboard=tensorboard, log=log, source=source).fit()
    finally:
        distiller.replace_teacher(live)
    return folder


class GivenData:
    """The data sets given to ``fit``: two ``Dataset`` s, or two ``(images, labels)`` pairs of arrays with the
    augmentation and data path they take."""

    def __init__(self, train, val, augment: AugmentConfig | None, loader: str) -> None:
        self.train, self.val, self.augment, self.loader = train, val, augment, loader

    @property
    def arrays(self) -> bool:
        return self.augment is not None

    @classmethod
    def of(cls, train, val, augment, loader: str) -> GivenData:
        pairs = [_is_array_pair(x) for x in (train, val)]
        if pairs[0] != pairs[1]:
            raise DataError("train_set and val_set must both be Datasets or both (images, labels) arrays")
        if not pairs[0]:
            if augment is not None or loader != "auto":
                raise ConfigError("augment= and loader= apply to images given as (images, labels) arrays; a Dataset "
                                  "transforms its own items (leave them out, or pass arrays)")
            return cls(train, val, None, loader)
        if isinstance(augment, AugmentConfig):
            settings = augment
        else:
            try:
                settings = AugmentConfig.model_validate({**ARRAY_AUGMENT, **(augment or {})})
            except ValidationError as err:
                raise config_error(err, AugmentConfig, prefix="augment.") from None
        if loader not in ("auto", "batched", "per_image"):
            raise ConfigError(f"loader={loader!r}: give auto, batched or per_image")
        return cls(train, val, settings, loader)

    def check(self, distiller: Distiller, classes: int, *, first: int) -> None:
        """The data fit the distiller (Datasets: the ``first`` items of each, a batch, are (image, label) as it
        takes them; both: a memory bank has one row per training item)."""
        if not self.arrays:
            for what, dataset in (("train_set", self.train), ("val_set", self.val)):
                check_first_items(dataset, what=what, classes=classes, input_size=distiller.input_size, count=first)
        size = len(self.train[1]) if self.arrays else len(self.train)
        if distiller.needs_sample_indices and distiller.num_samples != size:
            raise ConfigError(
                f"method {distiller.method_name!r} keeps one row per training item: build it with "
                f"create_distiller(..., num_samples=len(train_set)) ({size}), not {distiller.num_samples}"
            )

    def bundle(self, cfg: RunConfig, device: torch.device, dist: DistContext, class_names: list[str],
               spec: InputSpec, *, with_indices: bool, loading: Loading) -> DataBundle:
        """This process's loaders (arrays: resident on ``device`` on the batched path)."""
        common = dict(batch_size=cfg.train.batch_size, seed=cfg.data_seed, world_size=dist.world_size,
                      rank=dist.rank, with_indices=with_indices, loading=loading)
        if not self.arrays:
            return given_data(self.train, self.val, class_names, **common)
        return array_data(self.train, self.val, class_names, self.augment, input_size=spec.input_size,
                          mean=spec.mean, std=spec.std, loader=self.loader, device=device, **common)


def _is_array_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(hasattr(v, "shape") for v in value)


class GivenSource:
    """The parts of a run of ``fit`` (see :func:`~ofakd.engine.setup.build_setup`): the distiller built in Python,
    its student and teacher, the data sets given; a ``teacher.cache`` is recorded from the distiller's live
    teacher (what is not there yet) before the run replays it."""

    def __init__(self, distiller: Distiller, given: GivenData, class_names: list[str], spec: InputSpec, *,
                 cache_topk: int | None = None, log: Callable[[str], None] = print) -> None:
        self.given_distiller, self.given, self.class_names, self.spec = distiller, given, class_names, spec
        self.cache_topk, self.log = cache_topk, log

    def student(self, cfg: RunConfig) -> tuple[nn.Module, InputSpec]:
        return self.given_distiller.student, self.spec

    def live_teacher(self, cfg: RunConfig, method: Method, spec: InputSpec, *, run_amp: str,
                     device: torch.device) -> TeacherSource | None:
        self.given_distiller.to(device)  # its teacher with it
        return self.given_distiller.teacher

    def data(self, cfg: RunConfig, spec: InputSpec, device: torch.device, dist: DistContext, *,
             with_indices: bool) -> DataBundle:
        loading = Loading(cfg.data.workers, cfg.data.prefetch, pin_memory=device.type == "cuda",
                          persistent_workers=True)
        return self.given.bundle(cfg, device, dist, self.class_names, spec, with_indices=with_indices,
                                 loading=loading)

    def record_cache(self, cfg: RunConfig, spec: InputSpec, device: torch.device, dist: DistContext, *,
                     run_amp: str) -> None:
        """The distiller's live teacher recorded over this process's views into ``cfg.teacher.cache`` (what is
        not there yet), every rank's share before any is checked."""
        check_features(self.given_distiller, CachedTeacher)  # before recording: a cache would give it logits only
        views = self.data(cfg, spec, device, dist, with_indices=True)
        record_given(self.given_distiller.teacher, views, cfg, cfg.teacher.cache, student_spec=spec,
                     world_size=dist.world_size, device=device, run_amp=run_amp, topk=self.cache_topk,
                     log=self.log if dist.is_main else _quiet)
        dist.barrier()

    def cache_precision(self, cfg: RunConfig, run_amp: str) -> str | None:
        """None: the cache was recorded here, by this teacher."""
        return None

    def distiller(self, method: Method, teacher: TeacherSource | None, student: nn.Module, spec: InputSpec,
                  bundle: DataBundle) -> Distiller:
        if teacher is not self.given_distiller.teacher:  # a cache's replay of its teacher
            self.given_distiller.replace_teacher(teacher)
        return self.given_distiller


def _quiet(line: str) -> None:
    """Other ranks' log: nothing (rank 0 speaks for the run)."""


def run_config(distiller: Distiller, spec: InputSpec, *, out_dir: str | Path, name: str | None, workers: int,
               train: dict[str, Any], teacher_cache: str | Path | None = None,
               given: GivenData | None = None) -> RunConfig:
    """The config a run of ``fit`` records: data ``python`` (with arrays: their augmentation and data path), the
    distiller's method and options, the models' timm names where they have them, the ``train`` settings
    (validated: an unknown one names the nearest)."""
    _check_types(train)
    method = Method.of(distiller)
    teacher = getattr(distiller.teacher, "model", None)
    arrays = given is not None and given.arrays
    raw = {
        "data": {"name": "python", "workers": workers, **({"loader": given.loader} if arrays else {})},
        **({"augment": given.augment.model_dump(mode="json")} if arrays else {}),
        "teacher": {"name": model_label(teacher) if teacher is not None else None,
                    "cache": str(teacher_cache) if teacher_cache is not None else None},
        "student": {**timm_recipe(distiller.student), "input_size": list(spec.input_size), "mean": list(spec.mean),
                    "std": list(spec.std)},
        "method": method.to_config(),
        "train": train,
        "run": {"out_dir": str(out_dir)},
    }
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise config_error(err, RunConfig) from None
    label = name or default_name(method.method_name, raw["teacher"]["name"] if method.needs_teacher else None,
                                 model_label(distiller.student), "python", cfg.train.seed)
    return cfg.model_copy(update={"method": MethodConfig.of(method), "run": cfg.run.model_copy(update={"name": label})})


def _check_types(train: dict[str, Any]) -> None:
    """A ``train.*`` setting given in Python as a string or bool where the setting is not one (``epochs='3'``) is
    refused: a command line's text is read as YAML, but a Python caller's value is taken as it is."""
    from pydantic import TypeAdapter

    from ..config.schema import TrainConfig

    for key, value in train.items():
        field = TrainConfig.model_fields.get(key)
        if field is None or not isinstance(value, (str, bool)):
            continue
        try:
            TypeAdapter(field.annotation).validate_python(value, strict=True)
        except ValidationError:
            raise ConfigError(f"{key}={value!r}: expected {_type_name(field.annotation)}, got "
                              f"{type(value).__name__}; pass the value itself ({key}=3, not '3')") from None


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


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


def _class_names(train_set, given: Sequence[str] | None, classes: int) -> list[str]:
    names = list(given) if given is not None else list(getattr(train_set, "classes", None) or
                                                        [str(k) for k in range(classes)])
    if len(names) != classes:
        raise DataError(f"{len(names)} class names for a student with {classes} outputs; pass class_names= with "
                        f"one name per class")
    return [str(n) for n in names]


def _student_spec(distiller: Distiller) -> InputSpec:
    """The batches' spec: the distiller's input size and the data's normalisation (the student's when not given)."""
    own = input_spec(distiller.student)
    mean, std = distiller.normalisation or (own.mean, own.std)
    return InputSpec(tuple(distiller.input_size or own.input_size), mean, std, own.interpolation, own.crop_pct)
