"""Recording: run the teacher over exactly the views a distillation run will draw, and store its logits.

The views come from the same ``build_data`` call a run makes (student input spec, data seed,
batch size, world size, transforms), so they are identical (see :mod:`ofakd.data.views`); the
teacher sees them through the engine's teacher-input adapter, under the run's autocast mode, in
the same batches, as it would live. Every rank of the recorded world size is produced here: one
process records them all, or under ``torchrun`` each process records its share.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from .. import __version__
from ..autocast import autocast, resolve_amp
from ..config.schema import RunConfig
from ..data import dataset_num_classes, run_data, seed_everything
from ..device import pick_device
from ..errors import CacheError, CacheMismatchError, ConfigError
from ..models.from_config import build_model, model_spec
from ..models.info import InputSpec, num_features
from ..run_folder.atomic import is_temporary, remove_temporaries, write_json, writing
from ..run_folder.digest import file_sha256
from ..run_folder.lock import FolderLock, missing_folders
from ..teacher.data_view import DataView
from ..teacher.input_view import TeacherInput
from ..teacher.live import LiveTeacher
from ..teacher.run_teacher import build_teacher_model, live_teacher, precision_label, precision_words
from .manifest import (
    FORMAT,
    VERSION,
    plain,
    resume_differences,
    spec_dict,
    state_dict_sha256,
    view_transforms,
)
from .reader import TeacherCache, read_manifest, view_means
from .storage import DONE, LOCKS, MANIFEST, Layout
from .topk import encode_topk

SETUP_WAIT_S = 120.0
"""Seconds a recorder waits for another (rank) to finish setting the cache folder up."""


def student_input_spec(cfg: RunConfig, num_classes: int) -> InputSpec:
    """The student's input spec, as the engine derives it: the config's input_size/mean/std, the rest
    read from the student model. The student is built when named (drawing from the global generators
    as a run's does, so a teacher without a checkpoint initialises as in the run), else the config
    must give all three."""
    s = cfg.student
    if not s.name:
        if s.input_size is not None and s.mean is not None and s.std is not None:
            return InputSpec(tuple(s.input_size), tuple(s.mean), tuple(s.std))
        raise ConfigError(
            "cache record: the views are prepared for the student's input; pass --student NAME "
            "(or set student.input_size, student.mean and student.std)"
        )
    return model_spec(build_model(s, num_classes, "student"), s)


def record_cache(
    cfg: RunConfig,
    out: str | Path,
    *,
    topk: int | None = None,
    world_size: int = 1,
    ranks: Sequence[int] | None = None,
    overwrite: bool = False,
    device: torch.device | str | None = None,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int, int], None] | None = None,
) -> TeacherCache:
    """Record ``cfg.teacher``'s logits over the ``cfg.train.epochs`` epochs of views a run of ``cfg``
    with ``world_size`` processes draws, into folder ``out``; resumes (or extends to more epochs)
    a cache already there for the same settings.

    ``topk`` None stores full fp16 logits, else the top ``topk`` (see ``topk``). ``ranks``: which
    ranks this process records (default all). ``on_step(epoch, rank, step)`` runs after each batch.
    """
    out = Path(out)
    num_classes = dataset_num_classes(cfg.data)
    ranks, storage, k = _check_request(cfg, world_size, ranks, topk, num_classes)
    with _writer_locks(out, ranks):  # one recorder per (cache, rank)
        _prepare_folder(out, overwrite)

        device = pick_device(cfg.train.device) if device is None else torch.device(device)
        run_amp = resolve_amp(cfg.train.amp, device)
        seed_everything(cfg.train.seed)  # as a run does before building its models
        student_spec = student_input_spec(cfg, num_classes)
        teacher, teacher_spec = build_teacher_model(cfg.teacher, num_classes)
        bundle = run_data(cfg, student_spec, world_size=world_size, rank=ranks[0], with_indices=True, device=device)
        manifest = _manifest(cfg, teacher, teacher_spec, student_spec, bundle, world_size=world_size, storage=storage,
                             k=k, precision=precision_label(cfg.teacher.amp, cfg.teacher.dtype, run_amp))
        layout = _open_layout(out, manifest, num_classes, log)

        live = live_teacher(teacher, teacher_spec, student_spec, amp=cfg.teacher.amp, dtype=cfg.teacher.dtype,
                            run_amp=run_amp).to(device)
        bundles = {r: bundle if r == ranks[0] else bundle.for_rank(r) for r in ranks}
        _record_epochs(live, bundles, layout, manifest, epochs=cfg.train.epochs, device=device, run_amp=run_amp,
                       out=out, log=log, on_step=on_step)
    return TeacherCache(out)


def record_given(
    live: LiveTeacher | None,
    bundle,
    cfg: RunConfig,
    out: str | Path,
    *,
    student_spec: InputSpec,
    world_size: int,
    device: torch.device,
    run_amp: str,
    topk: int | None = None,
    log: Callable[[str], None] = print,
) -> TeacherCache:
    """Record ``live``'s logits over the ``cfg.train.epochs`` epochs of views ``bundle`` (this process's rank of
    ``world_size``, with sample indices) draws, into folder ``out``, under the run's autocast ``run_amp``, as the
    trainer would call it; resumes or extends a cache already there for the same teacher weights and views.
    What ``ofakd.fit(..., teacher_cache=)`` records for a distiller and data sets given in Python."""
    if not isinstance(live, LiveTeacher):
        raise ConfigError(f"teacher_cache= records the distiller's teacher, and it has none to run "
                          f"({type(live).__name__}); build the distiller with teacher=a model")
    out = Path(out)
    num_classes = bundle.num_classes
    _, storage, k = _check_request(cfg, world_size, [bundle.rank], topk, num_classes)
    with _writer_locks(out, [bundle.rank]):
        _prepare_folder(out, overwrite=False)
        precision = precision_words(live.amp or run_amp, next(live.model.parameters()).dtype)
        seen = live.input_view.output_spec if isinstance(live.input_view, (TeacherInput, DataView)) else student_spec
        manifest = _manifest(cfg, live.model, seen, student_spec, bundle, world_size=world_size, storage=storage, k=k,
                             precision=precision)
        layout = _open_layout(out, manifest, num_classes, log, fix=f"delete {out} to record afresh, or pass another "
                              "teacher_cache= folder")
        _record_epochs(live, {bundle.rank: bundle}, layout, manifest, epochs=cfg.train.epochs, device=device,
                       run_amp=run_amp, out=out, log=log)
    return TeacherCache(out)


def _record_epochs(live: LiveTeacher, bundles: dict, layout: Layout, manifest: dict, *, epochs: int,
                   device: torch.device, run_amp: str, out: Path, log: Callable[[str], None],
                   on_step: Callable[[int, int, int], None] | None = None) -> None:
    """Record the first ``epochs`` epochs' blocks of each rank in ``bundles`` not yet done."""
    steps, batch = manifest["steps_per_epoch"], manifest["batch_size"]
    storage, k = manifest["storage"], manifest["k"]
    log(
        f"recording {manifest['teacher']['name']} ({storage}{'' if storage == 'full' else f' k={k}'}) over {epochs} "
        f"epochs x {manifest['world_size']} rank(s) x {steps} steps x {batch} views into {out}, device {device}"
    )
    for epoch in range(epochs):
        for rank, bundle in bundles.items():
            if layout.is_done(epoch, rank):
                continue
            started = time.perf_counter()
            with autocast(run_amp, device.type):  # as the trainer calls the teacher (its own mode, when it has one)
                _record_block(live, device, bundle, layout, epoch, rank, on_step)
            layout.mark_done(epoch, rank)
            seconds = time.perf_counter() - started
            log(
                f"epoch {epoch + 1}/{epochs} rank {rank}: {steps * batch} views, "
                f"{steps * batch / max(seconds, 1e-9):.0f} views/s"
            )


def _check_request(
    cfg: RunConfig, world_size: int, ranks: Sequence[int] | None, topk: int | None, num_classes: int
) -> tuple[list[int], str, int]:
    """(ranks to record, storage, k) of a request, every argument checked."""
    if world_size < 1:
        raise ConfigError(f"--world-size must be >= 1, got {world_size}")
    ranks = list(range(world_size)) if ranks is None else sorted(set(ranks))
    if not ranks or not all(0 <= r < world_size for r in ranks):
        raise ConfigError(f"ranks {ranks} are not all in a world of size {world_size}")
    if not cfg.teacher.name:
        raise ConfigError(
            "cache record needs the teacher: pass --teacher NAME --teacher-checkpoint PATH, "
            "or --teacher-run RUN_DIR"
        )
    if topk is not None and not 1 <= topk < num_classes:
        raise ConfigError(
            f"--topk {topk}: give 1 to {num_classes - 1} (the data have {num_classes} classes), "
            "or leave it out to store full logits"
        )
    return ranks, *(("full", num_classes) if topk is None else ("topk", int(topk)))


def _manifest(cfg: RunConfig, teacher: nn.Module, teacher_spec: InputSpec, student_spec: InputSpec, bundle, *,
              world_size: int, storage: str, k: int, precision: str) -> dict:
    """What the cache holds and what it was recorded for (see :mod:`~ofakd.cache.manifest`)."""
    num_classes = bundle.num_classes
    steps, batch = len(bundle.train_loader), cfg.train.batch_size
    return plain({
        "format": FORMAT,
        "version": VERSION,
        "teacher": _teacher_fields(cfg, teacher, teacher_spec, num_classes),  # before folding changes the weights
        "student_input": spec_dict(student_spec),
        "dataset": {"name": cfg.data.name, "fingerprint": bundle.fingerprint, "num_classes": num_classes,
                    "views": bundle.path.name},
        "transforms": view_transforms(cfg.augment),
        "data_seed": cfg.data_seed,
        "batch_size": batch,
        "world_size": world_size,
        "epochs": cfg.train.epochs,
        "steps_per_epoch": steps,
        "views_per_epoch": world_size * steps * batch,
        "storage": storage,
        "k": k,
        "precision": precision,
        "recorded_with": {"ofakd": __version__, "torch": torch.__version__, "timm": timm.__version__},
    })


def _teacher_fields(cfg: RunConfig, teacher: nn.Module, spec: InputSpec, num_classes: int) -> dict:
    """The manifest's ``teacher`` section: which network, which weights, what input."""
    return {
        "name": cfg.teacher.name,
        "kwargs": dict(cfg.teacher.kwargs),
        "checkpoint": cfg.teacher.checkpoint,
        "checkpoint_sha256": file_sha256(cfg.teacher.checkpoint) if cfg.teacher.checkpoint else None,
        "pretrained": cfg.teacher.pretrained,
        "weights_sha256": state_dict_sha256(teacher),
        "num_classes": num_classes,
        "num_features": num_features(teacher),
        **spec_dict(spec),
        "interpolation": spec.interpolation,
    }


def _open_layout(out: Path, manifest: dict, num_classes: int, log: Callable[[str], None],
                 fix: str = "pass --overwrite to record afresh, or choose another --out folder") -> Layout:
    """The cache's files for ``manifest``: a cache already in ``out`` must be for the same settings (it is then
    resumed, or extended to more epochs); files of the wrong size are allocated again; the manifest is written.
    One recorder at a time does this (its ``setup.lock``): ranks recording at once each see the others' files whole."""
    with FolderLock(out / LOCKS / "setup.lock", f"teacher cache {out} (setup)").wait(SETUP_WAIT_S):
        remove_temporaries(out, MANIFEST)  # the manifest's writer holds this lock: what a killed one left
        if (out / MANIFEST).is_file():
            old = read_manifest(out)
            diff = resume_differences(old, manifest)
            if diff is not None:
                raise CacheMismatchError(out, *diff, fix)
            manifest["epochs"] = max(int(old["epochs"]), manifest["epochs"])
        layout = Layout(
            out,
            storage=manifest["storage"],
            num_classes=num_classes,
            k=manifest["k"],
            rows_per_epoch=manifest["views_per_epoch"],
            rows_per_rank=manifest["steps_per_epoch"] * manifest["batch_size"],
        )
        (out / DONE).mkdir(parents=True, exist_ok=True)
        for epoch in range(manifest["epochs"]):
            if layout.allocate(epoch):
                log(f"epoch {epoch}: a file had the wrong size; recording that epoch again")
        write_json(layout.manifest, manifest)
        return layout


def _record_block(
    teacher: LiveTeacher,
    device: torch.device,
    bundle,
    layout: Layout,
    epoch: int,
    rank: int,
    on_step: Callable[[int, int, int], None] | None,
) -> None:
    """Record ``rank``'s views of ``epoch``: the live teacher per batch, rows written in step order."""
    steps, batch = len(bundle.train_loader), bundle.train_loader.batch_size
    bundle.train_sampler.set_epoch(epoch)
    layout.reserve(epoch, rank)
    arrays = layout.open(epoch, "r+")
    base = layout.rank_rows(rank).start
    done = 0
    try:
        for step, (images, _targets, indices) in enumerate(bundle.train_loader):
            rows = slice(base + step * batch, base + (step + 1) * batch)
            logits = teacher.logits(images.to(device, non_blocking=True)).cpu()
            if layout.storage == "full":
                half = logits.numpy().astype(np.float16)
                _check_finite(half, epoch, step, rank)
                arrays["logits"][rows] = half
            else:
                values, classes, lse = encode_topk(logits, layout.k)
                _check_finite(values, epoch, step, rank)
                arrays["values"][rows], arrays["indices"][rows], arrays["lse"][rows] = values, classes, lse
            arrays["index"][rows] = indices.cpu().numpy().astype(np.int32)
            arrays["check"][rows] = view_means(images)
            done += 1
            if on_step is not None:
                on_step(epoch, rank, step)
    finally:
        for array in arrays.values():
            array.flush()
        del arrays
    if done != steps:
        raise CacheError(f"epoch {epoch} rank {rank} gave {done} batches, expected {steps}")


def _check_finite(values: np.ndarray, epoch: int, step: int, rank: int) -> None:
    if not np.isfinite(values).all():
        raise CacheError(
            f"teacher logits at epoch {epoch}, step {step}, rank {rank} are not finite in float16 (|z| > 65504 or "
            "NaN); the teacher is broken or needs its logits scaled: check its checkpoint"
        )


@contextlib.contextmanager
def _writer_locks(out: Path, ranks: Sequence[int]) -> Iterator[None]:
    """Hold a lock per recorded rank (``DIR/locks/rank_NNNN.lock``, see :mod:`ofakd.run_folder.lock`) while
    recording: a second recorder of the same rank (or an --overwrite) stops naming the one at work."""
    if out.exists() and not out.is_dir():
        raise CacheError(f"--out {out} is a file; give a folder for the cache")
    made = missing_folders(out)  # removed again, when empty, after the last lock is released
    with writing(out):
        (out / LOCKS).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        for rank in ranks:
            lock = FolderLock(out / LOCKS / f"rank_{rank:04d}.lock", f"teacher cache {out} (rank {rank})",
                              remove_folders=[out / LOCKS, *(made if rank == ranks[0] else [])])  # (released last)
            held.enter_context(lock)
            remove_temporaries(out / DONE, f"epoch_*.rank_{rank:04d}")  # this rank's markers: ours to write now
        yield


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        listed = list(out.iterdir())  # one listing: another rank's manifest may come and go as the ranks record
        ours = [p for p in listed
                if p.name in (MANIFEST, DONE, LOCKS) or p.name.startswith("epoch_") or is_temporary(p)]
        others = [p for p in listed if p not in ours]
        if not (out / MANIFEST).is_file() and others:
            raise CacheError(
                f"--out {out} holds other files ({others[0].name}, ...) and no cache; choose an empty "
                "or new folder"
            )
        if overwrite:
            for path in (p for p in ours if p.name != LOCKS and not is_temporary(p)):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
