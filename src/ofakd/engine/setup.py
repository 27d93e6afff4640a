"""A run's student, teacher source, data and distiller on its device, ready to train (no training state here).

:func:`build_setup` is the one builder, for the command line and for :func:`ofakd.fit` alike: the same steps in
the same order (the student, the live teacher, the data, the teacher's cache when ``teacher.cache`` names one, the
distiller), each taken from a :class:`SetupSource`: the config (:class:`ConfigSource`: models built by name, the
data set read from disk) or objects given in Python (:class:`~ofakd.engine.given_datasets.GivenSource`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ..autocast import resolve_amp
from ..cache import CachedTeacher, TeacherCache
from ..config.schema import RunConfig
from ..data import DataBundle, dataset_num_classes, run_data
from ..distill import Distiller, Method, create_distiller
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


class SetupSource(Protocol):
    """Where each part of a run's :class:`Setup` comes from (see :func:`build_setup`)."""

    def student(self, cfg: RunConfig) -> tuple[nn.Module, InputSpec]:
        """The student and the spec of the batches it is fed."""

    def live_teacher(self, cfg: RunConfig, method: Method, spec: InputSpec, *, run_amp: str,
                     device: torch.device) -> TeacherSource | None:
        """The teacher run live, on ``device`` (None: the method needs none, or a cache replaces it)."""

    def data(self, cfg: RunConfig, spec: InputSpec, device: torch.device, dist: DistContext, *,
             with_indices: bool) -> DataBundle:
        """This process's loaders, for batches of ``spec``."""

    def record_cache(self, cfg: RunConfig, spec: InputSpec, device: torch.device, dist: DistContext, *,
                     run_amp: str) -> None:
        """Whatever ``teacher.cache`` lacks, recorded before the run replays it (or nothing to do)."""

    def cache_precision(self, cfg: RunConfig, run_amp: str) -> str | None:
        """The teacher's precision in the cache manifest's words, to compare with the recorded one (None: no check)."""

    def distiller(self, method: Method, teacher: TeacherSource | None, student: nn.Module, spec: InputSpec,
                  bundle: DataBundle) -> Distiller:
        """The run's distiller, calling ``teacher``."""


def build_setup(cfg: RunConfig, device: torch.device, dist: DistContext = SINGLE_PROCESS,
                source: SetupSource | None = None) -> Setup:
    """Student, teacher source (live, or the cache when ``teacher.cache``; none when the method needs no
    teacher), data for the student's input, the distiller on ``device``; each part from ``source`` (None: the
    config, :class:`ConfigSource`).

    Seed the global generators with the init seed first: models are initialised here.
    """
    source = source or ConfigSource()
    method = cfg.method.resolved
    run_amp = resolve_amp(cfg.train.amp, device)
    student, spec = source.student(cfg)
    teacher = source.live_teacher(cfg, method, spec, run_amp=run_amp, device=device)
    bundle = source.data(cfg, spec, device, dist, with_indices=method.needs_sample_indices)
    if cfg.teacher.cache:
        source.record_cache(cfg, spec, device, dist, run_amp=run_amp)
        teacher = replayed_cache(cfg, bundle, spec, dist, method, precision=source.cache_precision(cfg, run_amp))
    distiller = source.distiller(method, teacher, student, spec, bundle)
    distiller.to(device)
    return Setup(distiller, student, bundle, spec)


class ConfigSource:
    """A run's parts from its config: the student and the teacher built by name (with their weights), the data
    set of ``data:``, the method's distiller built fresh."""

    num_classes: int | None = None
    """The data set's classes, read once (by :meth:`student`, the first part built)."""

    def student(self, cfg: RunConfig) -> tuple[nn.Module, InputSpec]:
        self.num_classes = dataset_num_classes(cfg.data)
        student = build_model(cfg.student, self.num_classes, "student")
        spec = model_spec(student, cfg.student)
        check_forward(student, spec.input_size, "student", cfg.student.name)
        return student, spec

    def live_teacher(self, cfg: RunConfig, method: Method, spec: InputSpec, *, run_amp: str,
                     device: torch.device) -> TeacherSource | None:
        if not method.needs_teacher or cfg.teacher.cache:
            return None
        if not cfg.teacher.name:
            raise ConfigError(
                f"config: teacher.name is required by method {cfg.method.name!r}: pass --teacher NAME "
                "--teacher-checkpoint PATH, or --teacher-run runs/NAME (a model trained with `ofakd train`)"
            )
        model, teacher_spec = build_teacher_model(cfg.teacher, self.num_classes)
        return live_teacher(model, teacher_spec, spec, amp=cfg.teacher.amp, dtype=cfg.teacher.dtype, run_amp=run_amp)

    def data(self, cfg: RunConfig, spec: InputSpec, device: torch.device, dist: DistContext, *,
             with_indices: bool) -> DataBundle:
        return run_data(cfg, spec, world_size=dist.world_size, rank=dist.rank, with_indices=with_indices,
                        pin_memory=device.type == "cuda", persistent_workers=True, device=device)

    def record_cache(self, cfg: RunConfig, spec: InputSpec, device: torch.device, dist: DistContext, *,
                     run_amp: str) -> None:
        """Nothing: a config's cache is recorded beforehand (``ofakd cache record``)."""

    def cache_precision(self, cfg: RunConfig, run_amp: str) -> str | None:
        return precision_label(cfg.teacher.amp, cfg.teacher.dtype, run_amp)

    def distiller(self, method: Method, teacher: TeacherSource | None, student: nn.Module, spec: InputSpec,
                  bundle: DataBundle) -> Distiller:
        return create_distiller(method, teacher=teacher, student=student, input_size=spec.input_size,
                                num_samples=len(bundle.train_loader.dataset))


def replayed_cache(cfg: RunConfig, data: DataBundle, student_spec: InputSpec, dist: DistContext, method,
                   precision: str | None = None) -> CachedTeacher:
    """This process's replay of the run's teacher-output cache (``teacher.cache``), checked against the run and
    its ``data`` first: every mismatch stops it here, before its first step."""
    cache = TeacherCache(cfg.teacher.cache)
    cache.check_run(cfg, fingerprint=data.fingerprint, views=data.path.name, student_spec=student_spec,
                    world_size=dist.world_size,
                    cycle=cfg.teacher.cache_cycle, method=method, precision=precision)
    return CachedTeacher(cache, rank=dist.rank, cycle=cfg.teacher.cache_cycle)
