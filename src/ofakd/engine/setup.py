"""Config -> student, teacher source, data and distiller, ready to train (no training state here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..autocast import resolve_amp
from ..cache import CachedTeacher, TeacherCache
from ..config.schema import RunConfig
from ..data import DataBundle, dataset_num_classes, run_data
from ..distill import Distiller, create_distiller
from ..errors import ConfigError
from ..models.from_config import build_model, check_forward, model_spec
from ..models.info import InputSpec
from ..teacher.protocol import TeacherSource
from ..teacher.run_teacher import build_teacher_model, live_teacher, precision_label
from .processes import SINGLE_PROCESS, DistContext


@dataclass
class Setup:
    distiller: Distiller
    """The method, holding the student and the teacher source (the model run live, a cache's replay, or none)."""
    student: nn.Module
    bundle: DataBundle
    student_spec: InputSpec

    @property
    def teacher(self) -> TeacherSource | None:
        """The distiller's teacher source (its one owner)."""
        return self.distiller.teacher


SetupBuilder = Callable[[RunConfig, torch.device, DistContext], Setup]
"""What the trainer calls to get its :class:`Setup` on a device: :func:`build_setup` (from the config), or the
distiller and data sets given in Python (:mod:`~ofakd.engine.given_datasets`)."""


def build_setup(cfg: RunConfig, device: torch.device, dist: DistContext = SINGLE_PROCESS) -> Setup:
    """Student, teacher source (live, or the cache when ``teacher.cache``; none when the method needs no
    teacher), data for the student's input, the distiller on ``device``.

    Seed the global generators with the init seed first: models are initialised here.
    """
    method = cfg.method.resolved
    num_classes = dataset_num_classes(cfg.data)
    student = build_model(cfg.student, num_classes, "student")
    student_spec = model_spec(student, cfg.student)
    check_forward(student, student_spec.input_size, "student", cfg.student.name)
    run_amp = resolve_amp(cfg.train.amp, device)
    teacher = None
    if method.needs_teacher and not cfg.teacher.cache:
        if not cfg.teacher.name:
            raise ConfigError(
                f"config: teacher.name is required by method {cfg.method.name!r}: pass --teacher NAME "
                "--teacher-checkpoint PATH, or --teacher-run runs/NAME (a model trained with `ofakd train`)"
            )
        model, spec = build_teacher_model(cfg.teacher, num_classes)
        teacher = live_teacher(model, spec, student_spec, amp=cfg.teacher.amp, dtype=cfg.teacher.dtype, run_amp=run_amp)
    bundle = run_data(cfg, student_spec, world_size=dist.world_size, rank=dist.rank,
                      with_indices=method.needs_sample_indices, pin_memory=device.type == "cuda",
                      persistent_workers=True, device=device)
    if cfg.teacher.cache:
        teacher = replayed_cache(cfg, bundle, student_spec, dist, method,
                                 precision=precision_label(cfg.teacher.amp, cfg.teacher.dtype, run_amp))
    distiller = create_distiller(method, teacher=teacher, student=student, input_size=student_spec.input_size,
                                 num_samples=len(bundle.train_loader.dataset))
    distiller.to(device)
    return Setup(distiller, student, bundle, student_spec)


def replayed_cache(cfg: RunConfig, data: DataBundle, student_spec: InputSpec, dist: DistContext, method,
                   precision: str | None = None) -> CachedTeacher:
    """This process's replay of the run's teacher-output cache (``teacher.cache``), checked against the run and
    its ``data`` first: every mismatch stops it here, before its first step."""
    cache = TeacherCache(cfg.teacher.cache)
    cache.check_run(cfg, fingerprint=data.fingerprint, views=data.path.name, student_spec=student_spec,
                    world_size=dist.world_size,
                    cycle=cfg.teacher.cache_cycle, method=method, precision=precision)
    return CachedTeacher(cache, rank=dist.rank, cycle=cfg.teacher.cache_cycle)
