"""Config -> models, data and distiller, ready to train (no training state here)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..cache import TeacherCache
from ..config.schema import RunConfig
from ..data import build_data, dataset_num_classes
from ..data.build import DataBundle
from ..data.views import untouched_rng
from ..distill import Distiller, create_distiller, get_method
from ..errors import ConfigError
from ..models.from_config import build_model, check_forward, model_spec
from ..models.info import InputSpec
from .amp import Precision
from .processes import SINGLE_PROCESS, DistContext
from .teacher_input import TeacherInput, build_teacher_input


@dataclass
class Setup:
    distiller: Distiller
    student: nn.Module
    teacher: nn.Module | None
    bundle: DataBundle
    student_spec: InputSpec
    teacher_spec: InputSpec | None
    teacher_input: TeacherInput | None
    teacher_cache: TeacherCache | None = None
    """The teacher-output cache the teacher's logits come from (``teacher.cache``), or None."""


def teacher_adapter(student_spec: InputSpec, teacher_spec: InputSpec) -> TeacherInput | None:
    """The teacher's view of a student batch (``teacher_input``); None when it takes the batch as it is.
    (``ofakd cache record`` uses it too, so a recording sees exactly what a live teacher would.)"""
    return build_teacher_input(
        student_spec.input_size, student_spec.mean, student_spec.std,
        teacher_spec.input_size, teacher_spec.mean, teacher_spec.std,
        interpolation="bicubic" if teacher_spec.interpolation == "bicubic" else "bilinear",
    )


def run_data(cfg: RunConfig, student_spec, *, world_size: int, rank: int, with_indices: bool):
    """The data of a run of ``cfg``: the student's input spec, the data seed, full batches only.
    ``ofakd cache record`` draws the same views through this."""
    return build_data(
        cfg.data,
        cfg.augment,
        input_size=student_spec.input_size,
        mean=student_spec.mean,
        std=student_spec.std,
        batch_size=cfg.train.batch_size,
        seed=cfg.data_seed,
        world_size=world_size,
        rank=rank,
        with_indices=with_indices,
        drop_last=True,
    )


def build_setup(cfg: RunConfig, device: torch.device, dist: DistContext = SINGLE_PROCESS) -> Setup:
    """Student (and teacher when the method needs one), data for the student's input, the distiller on ``device``.

    Seed the global generators with the init seed first: models are initialised here.
    """
    method = get_method(cfg.method.name)
    num_classes = dataset_num_classes(cfg.data)
    student = build_model(cfg.student, num_classes, "student")
    student_spec = model_spec(student, cfg.student)
    check_forward(student, student_spec.input_size, "student", cfg.student.name)
    teacher = teacher_spec = None
    cache = TeacherCache(cfg.teacher.cache) if cfg.teacher.cache else None
    if method.needs_teacher and cache is None:
        if not cfg.teacher.name:
            raise ConfigError(
                f"config: teacher.name is required by method {cfg.method.name!r}: pass --teacher NAME "
                "--teacher-checkpoint PATH, or --teacher-run runs/NAME (a model trained with `ofakd train`)"
            )
        with untouched_rng():  # the student's branches then initialise as in a run from a teacher cache
            teacher = build_model(cfg.teacher, num_classes, "teacher")
        teacher_spec = model_spec(teacher, cfg.teacher)
        check_forward(teacher, teacher_spec.input_size, "teacher", cfg.teacher.name)
    bundle = run_data(cfg, student_spec, world_size=dist.world_size, rank=dist.rank,
                      with_indices=method.needs_sample_indices)
    if cache is not None:  # every mismatch stops the run here, before its first step
        cache.check_run(cfg, fingerprint=bundle.fingerprint, student_spec=student_spec, world_size=dist.world_size,
                        cycle=cfg.teacher.cache_cycle, method=method, precision=Precision(cfg.train.amp, device).mode)
    adapter = teacher_adapter(student_spec, teacher_spec) if teacher_spec is not None else None
    distiller = create_distiller(
        cfg.method.name,
        teacher=teacher,
        student=student,
        input_size=student_spec.input_size,
        teacher_input=adapter,
        num_samples=len(bundle.train_loader.dataset),
        **(cache.distiller_kwargs(method, cfg.method.options) if cache is not None else cfg.method.options),
    )
    distiller.to(device)
    return Setup(distiller, student, teacher, bundle, student_spec, teacher_spec, adapter, cache)
