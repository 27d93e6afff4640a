"""Reading a teacher cache: :class:`TeacherCache` (random access) and :class:`EpochReader` (one epoch, in order).

    cache = TeacherCache("caches/resnet18-digits")
    logits = cache.read(epoch=0, step=3, rank=0)          # (batch_size, K) float32
    raw = cache.read_numpy(0, 3)                          # the stored arrays of those rows

A training run checks the cache first (:meth:`TeacherCache.check_run`), then replays it through a
:class:`~ofakd.cache.cached_teacher.CachedTeacher`, which reads each epoch with an :class:`EpochReader`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CacheError, CacheMismatchError
from .manifest import FORMAT, READABLE_VERSIONS, UNHASHED_VERSIONS, VERSION, check_fields, request_fields
from .storage import Layout
from .topk import reconstruct_topk

MEAN_TOLERANCE = 1e-4
"""Largest difference allowed between a view's mean pixel now and when it was recorded."""


def view_means(images: torch.Tensor) -> np.ndarray:
    """Mean pixel of each image of a (B, C, H, W) batch (float64 sum, stored as float32)."""
    return images.detach().cpu().double().mean(dim=tuple(range(1, images.ndim))).numpy().astype(np.float32)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / "manifest.json"
    if not path.is_file():
        what = "does not exist" if not directory.exists() else "has no manifest.json"
        raise CacheError(
            f"teacher cache {directory} {what}; record one with `ofakd cache record ... --out {directory}`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError (not a text file)
        raise CacheError(
            f"teacher cache {directory}: manifest.json is unreadable ({err}); record the cache again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheError(
            f"teacher cache {directory}: manifest.json is not an ofakd teacher-cache manifest; pass the folder that "
            "`ofakd cache record --out DIR` wrote"
        )
    if manifest.get("version") not in READABLE_VERSIONS:
        raise CacheMismatchError(
            directory,
            "version",
            manifest.get("version"),
            VERSION,
            f"this ofakd reads cache format versions {' and '.join(map(str, READABLE_VERSIONS))} only: record the "
            "cache again",
        )
    return manifest


class TeacherCache:
    """A recorded teacher cache in ``directory`` (see ``storage`` for the files, ``manifest`` for the fields)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        m = self.manifest
        self.layout = Layout(
            self.directory,
            storage=m["storage"],
            num_classes=m["teacher"]["num_classes"],
            k=m["k"],
            rows_per_epoch=m["views_per_epoch"],
            rows_per_rank=m["steps_per_epoch"] * m["batch_size"],
            hashed=m["version"] not in UNHASHED_VERSIONS,
        )
        self._maps: dict[int, dict[str, np.memmap]] = {}
        self._checked: set[tuple[int, int]] = set()
        """(epoch, rank) blocks whose hashes were checked (each is checked when first read)."""

    # ---- facts --------------------------------------------------------------------
    storage = property(lambda self: self.manifest["storage"])  # "full" (fp16 logits) or "topk"
    k = property(lambda self: int(self.manifest["k"]))
    num_classes = property(lambda self: int(self.manifest["teacher"]["num_classes"]))
    teacher_dim = property(lambda self: int(self.manifest["teacher"]["num_features"]))
    epochs = property(lambda self: int(self.manifest["epochs"]))
    world_size = property(lambda self: int(self.manifest["world_size"]))
    batch_size = property(lambda self: int(self.manifest["batch_size"]))
    steps_per_epoch = property(lambda self: int(self.manifest["steps_per_epoch"]))

    def __repr__(self) -> str:
        return (
            f"TeacherCache({str(self.directory)!r}, teacher={self.manifest['teacher']['name']!r}, "
            f"storage={self.storage!r}, k={self.k}, epochs={self.epochs})"
        )

    # ---- completeness and integrity ----------------------------------------------
    def is_done(self, epoch: int, rank: int) -> bool:
        return self.layout.is_done(epoch, rank)

    def completed_epochs(self) -> list[int]:
        """Epochs whose every rank is recorded."""
        return [e for e in range(self.epochs) if all(self.is_done(e, r) for r in range(self.world_size))]

    def verify(self, epochs=None, *, hashes: bool = False) -> None:
        """Raise :class:`CacheError` unless every rank of ``epochs`` (default: all) is recorded and
        every file of those epochs has its full size; with ``hashes`` also unless every block's rows match
        the sha256 recorded with them (a read of the whole cache: ``ofakd cache info --verify``), which a cache
        of an older format, recorded without them, cannot be."""
        if hashes and not self.layout.hashed:
            raise CacheError(
                f"teacher cache {self.directory} cannot be verified: it was recorded by an older ofakd (format version "
                f"{self.manifest['version']}), whose blocks carry no sha256; record it again to have it checked"
            )
        for epoch in range(self.epochs) if epochs is None else epochs:
            for rank in range(self.world_size):
                if not self.is_done(epoch, rank):
                    raise CacheError(
                        f"teacher cache {self.directory}: epoch {epoch} rank {rank} was not recorded (the recording "
                        "stopped before it); run `ofakd cache record` again with the same arguments to resume it"
                    )
            problem = self.layout.size_problem(epoch)
            if problem is not None:
                raise CacheError(
                    f"teacher cache {self.directory}: {problem}; the cache is damaged: run `ofakd cache record` "
                    f"again with the same arguments to record epoch {epoch} again"
                )
            for rank in range(self.world_size) if hashes else ():
                self.check_block(epoch, rank)

    def check_block(self, epoch: int, rank: int) -> None:
        """Raise :class:`CacheError` naming the file when ``rank``'s rows of ``epoch`` differ from their
        recorded sha256 (a cache of an older ofakd has none: a warning, once)."""
        if (epoch, rank) in self._checked:
            return
        if not self.layout.hashed and not self._checked:
            warnings.warn(f"teacher cache {self.directory} was recorded by an older ofakd: its blocks carry no "
                          "sha256, so damaged bytes cannot be found; record it again to have them checked",
                          stacklevel=2)
        problem = self.layout.block_problem(epoch, rank)
        if problem is not None:
            marker = self.layout.marker(epoch, rank)
            raise CacheError(
                f"teacher cache {self.directory}: {problem}; the cache is damaged: delete {marker} and run "
                "`ofakd cache record` again with the same arguments to record that block again"
            )
        self._checked.add((epoch, rank))

    # ---- reading ------------------------------------------------------------------
    def rows(self, epoch: int, step: int, rank: int = 0) -> slice:
        """Rows of ``rank``'s ``step`` in ``epoch``'s files."""
        if not 0 <= epoch < self.epochs:
            raise CacheError(
                f"teacher cache {self.directory}: epoch {epoch} is outside the {self.epochs} recorded"
            )
        if not 0 <= rank < self.world_size:
            raise CacheError(
                f"teacher cache {self.directory}: rank {rank} is outside world size {self.world_size}"
            )
        if not 0 <= step < self.steps_per_epoch:
            raise CacheError(
                f"teacher cache {self.directory}: step {step} is outside the {self.steps_per_epoch} steps per epoch"
            )
        start = (rank * self.steps_per_epoch + step) * self.batch_size
        return slice(start, start + self.batch_size)

    def _arrays(self, epoch: int, rank: int) -> dict[str, np.memmap]:
        """Memory maps of ``epoch``'s files, once their sizes and ``rank``'s block hashes are checked."""
        maps = self._maps.get(epoch)
        if maps is None:
            problem = self.layout.size_problem(epoch)
            if problem is not None:
                raise CacheError(f"teacher cache {self.directory}: {problem}; record the cache again")
            maps = self._maps[epoch] = self.layout.open(epoch, "r")
        self.check_block(epoch, rank)
        return maps

    def read_numpy(self, epoch: int, step: int, rank: int = 0) -> dict[str, np.ndarray]:
        """The stored arrays of one batch: ``logits`` (full) or ``values``/``indices``/``lse`` (top-k),
        plus ``index`` (dataset indices) and ``check`` (view means). Copies, not views of the files."""
        rows = self.rows(epoch, step, rank)
        return {name: np.array(array[rows]) for name, array in self._arrays(epoch, rank).items()}

    def read(self, epoch: int, step: int, rank: int = 0) -> torch.Tensor:
        """Teacher logits (batch_size, K) float32 of one batch; top-k rows are reconstructed (see ``topk``).
        Values a recording cannot hold (NaN/inf, a class index outside 0..K-1) are a :class:`CacheError`."""
        rows = self.rows(epoch, step, rank)
        arrays = {name: np.asarray(array[rows]) for name, array in self._arrays(epoch, rank).items()}
        where = f"at epoch {epoch}, step {step}, rank {rank}"
        for name in ("logits", "values", "lse"):
            if name in arrays and not np.isfinite(arrays[name]).all():
                raise self._damaged(epoch, name, f"holds NaN/inf {where}")
        if self.storage == "full":
            return torch.from_numpy(arrays["logits"].astype(np.float32))
        classes = arrays["indices"]
        if classes.size and not (classes.min() >= 0 and classes.max() < self.num_classes):
            bad = int(classes.max() if classes.max() >= self.num_classes else classes.min())
            raise self._damaged(epoch, "indices", f"holds class index {bad} {where}, outside 0..{self.num_classes - 1}")
        return reconstruct_topk(arrays["values"], classes, arrays["lse"], self.num_classes)

    def _damaged(self, epoch: int, array: str, problem: str) -> CacheError:
        spec = next(spec for spec in self.layout.arrays if spec.name == array)
        return CacheError(f"teacher cache {self.directory}: {self.layout.path(epoch, spec)} {problem}; the cache is "
                          "damaged: record it again")

    def data_epoch(self, epoch: int, cycle: bool = False) -> int:
        """The recorded epoch that training epoch ``epoch`` (0-based) replays: itself, or with
        ``cycle`` ``epoch % epochs``; past the recording without ``cycle`` is an error."""
        if epoch < self.epochs:
            return epoch
        if cycle:
            return epoch % self.epochs
        raise CacheMismatchError(self.directory, "epochs", self.epochs, epoch + 1, _MORE_EPOCHS)

    def epoch_reader(self, epoch: int, rank: int = 0, *, step: int = 0, check_views: bool = True) -> EpochReader:
        """A callable ``(images, indices) -> teacher logits`` for recorded ``epoch``'s steps in order, from ``step``."""
        return EpochReader(self, epoch, rank, check_views, step)

    # ---- a run against this cache -------------------------------------------------
    def check_run(
        self,
        cfg,
        *,
        fingerprint: str,
        views: str,
        student_spec,
        world_size: int,
        cycle: bool = False,
        method=None,
        precision: str | None = None,
    ) -> None:
        """Everything a run with config ``cfg`` needs from this cache, checked before its first step:
        the method uses a teacher; every manifest field matches (the error names the field, the recorded and the
        requested value); enough epochs; every needed block recorded and whole. (That the method takes logits
        only is checked where the cache meets the method: :func:`ofakd.teacher.feature_check.check_features`.)"""
        if method is not None and not method.needs_teacher:
            raise CacheError(f"method {method.method_name!r} uses no teacher; drop --teacher-cache")
        teacher_dim = cfg.method.options.get("teacher_dim")
        if teacher_dim is not None and int(teacher_dim) != self.teacher_dim:
            raise CacheMismatchError(self.directory, "teacher.num_features", self.teacher_dim, teacher_dim)
        requested = request_fields(
            cfg, fingerprint=fingerprint, views=views, student_spec=student_spec, world_size=world_size
        )
        check_fields(self.directory, self.manifest, requested)
        epochs = cfg.train.epochs
        if epochs > self.epochs and not cycle:
            raise CacheMismatchError(self.directory, "epochs", self.epochs, epochs, _MORE_EPOCHS)
        self.verify(range(min(epochs, self.epochs)))
        recorded_precision = self.manifest.get("precision")
        if precision is not None and precision != recorded_precision:
            warnings.warn(
                f"teacher cache {self.directory}: the teacher ran under autocast {recorded_precision!r} when recorded, "
                f"this run uses {precision!r}; its logits differ from a live teacher's by that rounding",
                stacklevel=2,
            )

    # ---- sizes --------------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        """Bytes per view (sample), per epoch, for all recorded epochs, and on disk now."""
        return {
            "bytes_per_view": self.layout.bytes_per_view,
            "views_per_epoch": self.layout.rows_per_epoch,
            "bytes_per_epoch": self.layout.bytes_per_epoch,
            "bytes_total": self.layout.bytes_per_epoch * self.epochs,
            "bytes_on_disk": self.layout.disk_bytes(),
        }


_MORE_EPOCHS = (
    "record more epochs (run `ofakd cache record` again with the same arguments and a larger --epochs: it extends "
    "the cache) or replay the recorded epochs with --teacher-cache-cycle"
)


class EpochReader:
    """Teacher logits for the batches of one recorded epoch, in step order: ``reader(images, indices)``.

    It checks that each batch is the one recorded: its size; its dataset indices when given; and on
    the first step the mean pixel of every view (cheap, and catches views that changed without the
    manifest noticing, e.g. a new timm).
    """

    def __init__(self, cache: TeacherCache, epoch: int, rank: int, check_views: bool = True, step: int = 0) -> None:
        cache.rows(epoch, 0, rank)  # range checks
        self.cache, self.epoch, self.rank = cache, epoch, rank
        self.check_views = check_views
        self.step = step

    def __call__(self, images: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The recorded logits (float32, on ``images``' device) of this step's batch."""
        cache, step = self.cache, self.step
        where = f"epoch {self.epoch}, step {step}, rank {self.rank}"
        if step >= cache.steps_per_epoch:
            raise CacheError(
                f"teacher cache {cache.directory}: the epoch has more than the "
                f"{cache.steps_per_epoch} recorded steps; the data differ from the recording"
            )
        if images.shape[0] != cache.batch_size:
            raise CacheError(
                f"teacher cache {cache.directory}: batch of {images.shape[0]} at {where}, "
                f"recorded {cache.batch_size}"
            )
        stored = cache.read_numpy(self.epoch, step, self.rank) if (indices is not None or step == 0) else None
        if stored is not None and indices is not None and not np.array_equal(np.asarray(indices.cpu()), stored["index"]):
            raise CacheError(
                f"teacher cache {cache.directory}: the batch at {where} holds other images than "
                "the recording; the data or the sampling changed since recording: record it again"
            )
        if stored is not None and step == 0 and self.check_views:
            diff = float(np.abs(view_means(images) - stored["check"]).max())
            if not diff <= MEAN_TOLERANCE:
                raise CacheError(
                    f"teacher cache {cache.directory}: the views at {where} are not the ones the teacher saw (mean "
                    f"pixel differs by {diff:.3g}); the data, transforms or library versions (timm, torchvision, "
                    "Pillow) changed since recording: record the cache again"
                )
        logits = cache.read(self.epoch, step, self.rank)
        self.step += 1
        return logits.to(images.device, non_blocking=True)
