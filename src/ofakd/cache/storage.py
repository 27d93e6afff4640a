"""The files of a teacher cache and their memory maps.

    DIR/manifest.json                     what the recording depends on (see ``manifest``)
    DIR/epoch_0000.logits.f16             full logits, float16 (V, K)            } one of
    DIR/epoch_0000.topk_values.f16        top-k logits, float16 (V, k)           } the two
    DIR/epoch_0000.topk_indices.i32       their classes, int32 (V, k)            } formats
    DIR/epoch_0000.lse.f32                log-sum-exp of the full logits (V,)    }
    DIR/epoch_0000.index.i32              dataset index of each view (V,)
    DIR/epoch_0000.check.f32              mean pixel of each view as the student sees it (V,)
    DIR/done/epoch_0000.rank_0000         marker: that rank's rows of that epoch are written, with the
                                          sha256 of those rows in each array ({"rows": N, "sha256": {...}})
    DIR/locks/rank_0000.lock              while a recorder writes that rank: its lock (``ofakd.run_folder.lock``)
    DIR/locks/setup.lock                  while a recorder checks the manifest and sizes the files

Raw little-endian arrays without headers, read and written through ``numpy.memmap``. An epoch's
V = world_size x steps_per_epoch x batch_size rows are in (rank, step, position in batch) order,
so one rank's one step is one contiguous block. Each epoch's files are created at full size
before recording; a (epoch, rank) block counts only once its marker exists, so an interrupted
recording resumes block by block and a shortened (truncated) file is found by its size. The
marker's hashes find flipped bytes: a run checks a block when it first reads it.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CacheError
from ..run_folder.atomic import write_error, write_json
from ..run_folder.digest import file_sha256
from ..run_folder.no_links import open_no_follow, refuse_link

MANIFEST = "manifest.json"
DONE = "done"
LOCKS = "locks"


@dataclass(frozen=True)
class ArraySpec:
    """One per-epoch array: file suffix, dtype and row width (None: one value per row)."""

    name: str
    suffix: str
    dtype: np.dtype
    width: int | None

    def row_bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * (self.width or 1)


def array_specs(storage: str, num_classes: int, k: int) -> list[ArraySpec]:
    """The arrays each epoch holds for ``storage`` "full" or "topk"."""
    if storage == "full":
        arrays = [ArraySpec("logits", "logits.f16", np.dtype(np.float16), num_classes)]
    elif storage == "topk":
        arrays = [
            ArraySpec("values", "topk_values.f16", np.dtype(np.float16), k),
            ArraySpec("indices", "topk_indices.i32", np.dtype(np.int32), k),
            ArraySpec("lse", "lse.f32", np.dtype(np.float32), None),
        ]
    else:
        raise CacheError(f"unknown cache storage {storage!r}; expected 'full' or 'topk'")
    return arrays + [
        ArraySpec("index", "index.i32", np.dtype(np.int32), None),
        ArraySpec("check", "check.f32", np.dtype(np.float32), None),
    ]


class Layout:
    """Paths, shapes and sizes of a cache's files."""

    def __init__(
        self,
        directory: str | Path,
        *,
        storage: str,
        num_classes: int,
        k: int,
        rows_per_epoch: int,
        rows_per_rank: int,
        hashed: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.hashed = hashed
        """Whether every block's marker carries the sha256 of its rows (every format but an older ofakd's)."""
        self.storage = storage
        self.k = k
        self.arrays = array_specs(storage, num_classes, k)
        self.rows_per_epoch = int(rows_per_epoch)
        self.rows_per_rank = int(rows_per_rank)

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST

    def path(self, epoch: int, spec: ArraySpec) -> Path:
        return self.directory / f"epoch_{epoch:04d}.{spec.suffix}"

    def shape(self, spec: ArraySpec) -> tuple[int, ...]:
        return (self.rows_per_epoch,) if spec.width is None else (self.rows_per_epoch, spec.width)

    def expected_bytes(self, spec: ArraySpec) -> int:
        return self.rows_per_epoch * spec.row_bytes()

    @property
    def bytes_per_view(self) -> int:
        return sum(spec.row_bytes() for spec in self.arrays)

    @property
    def bytes_per_epoch(self) -> int:
        return self.bytes_per_view * self.rows_per_epoch

    def marker(self, epoch: int, rank: int) -> Path:
        return self.directory / DONE / f"epoch_{epoch:04d}.rank_{rank:04d}"

    def is_done(self, epoch: int, rank: int) -> bool:
        return self.marker(epoch, rank).is_file()

    def mark_done(self, epoch: int, rank: int) -> None:
        """Write the block's marker with the sha256 of its rows in each array (read back from the files)."""
        path = self.marker(epoch, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        hashes = {spec.name: self.block_sha256(epoch, rank, spec) for spec in self.arrays}
        write_json(path, {"rows": self.rows_per_rank, "sha256": hashes})

    def block_sha256(self, epoch: int, rank: int, spec: ArraySpec) -> str:
        """sha256 of ``rank``'s rows of ``epoch``'s array ``spec``, as they are on disk."""
        start = self.rank_rows(rank).start * spec.row_bytes()
        return file_sha256(self.path(epoch, spec), start, self.rows_per_rank * spec.row_bytes())

    def recorded_hashes(self, epoch: int, rank: int) -> dict[str, str] | None:
        """The sha256 per array that the block's marker records; None for a marker that records none (an older
        ofakd's, or a damaged one)."""
        try:
            marker = json.loads(self.marker(epoch, rank).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        hashes = marker.get("sha256") if isinstance(marker, dict) else None
        return hashes if isinstance(hashes, dict) else None

    def block_problem(self, epoch: int, rank: int) -> str | None:
        """None when ``rank``'s rows of ``epoch`` match their recorded hashes (or, in an older format, none are
        recorded). In the current format a marker without every array's sha256 is damage, like a differing one."""
        recorded = self.recorded_hashes(epoch, rank) or {}
        for spec in self.arrays:
            if self.hashed and not isinstance(recorded.get(spec.name), str):
                return (f"{self.marker(epoch, rank)} (the marker of rank {rank}'s rows) is unreadable or lacks the "
                        f"sha256 of its rows in {self.path(epoch, spec).name}: a damaged marker, those rows cannot be "
                        "checked")
            if spec.name in recorded and self.block_sha256(epoch, rank, spec) != recorded[spec.name]:
                return (f"{self.path(epoch, spec)}: the rows of rank {rank} differ from the sha256 recorded with "
                        "them (flipped or overwritten bytes)")
        return None

    def rank_rows(self, rank: int) -> slice:
        return slice(rank * self.rows_per_rank, (rank + 1) * self.rows_per_rank)

    # ---- integrity --------------------------------------------------------------
    def size_problem(self, epoch: int) -> str | None:
        """None when every file of ``epoch`` has its full size, else a one-line description."""
        for spec in self.arrays:
            path = self.path(epoch, spec)
            if not path.is_file():
                return f"{path} is missing"
            size, expected = path.stat().st_size, self.expected_bytes(spec)
            if size != expected:
                word = "truncated" if size < expected else "longer than expected"
                return f"{path} is {word}: {size} bytes, expected {expected}"
        return None

    def allocate(self, epoch: int) -> bool:
        """Create ``epoch``'s files at full size. A file of the wrong size is reset to full size and
        the epoch's markers removed (its blocks are recorded again). Returns True when it did that."""
        reset = False
        for spec in self.arrays:
            path = self.path(epoch, spec)
            expected = self.expected_bytes(spec)
            refuse_link(path)  # (recording writes through a memory map of the file: never of a file elsewhere)
            exists = path.is_file()
            if exists and path.stat().st_size == expected:
                continue
            reset = reset or exists
            fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
            try:
                os.ftruncate(fd, expected)
            finally:
                os.close(fd)
        if reset:
            for marker in (self.directory / DONE).glob(f"epoch_{epoch:04d}.rank_*"):
                marker.unlink(missing_ok=True)  # (another recorder may have just removed it)
        return reset

    def reserve(self, epoch: int, rank: int) -> None:
        """Give ``rank``'s rows of ``epoch`` their disk blocks before they are written through a memory map (the
        files are sparse): a disk too small is then a write error naming the file (exit 74), not a SIGBUS."""
        if not hasattr(os, "posix_fallocate"):
            return
        start = self.rank_rows(rank).start
        for spec in self.arrays:
            path = self.path(epoch, spec)
            fd = open_no_follow(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, start * spec.row_bytes(), self.rows_per_rank * spec.row_bytes())
            except OSError as err:
                if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # (a file system without it: as before)
                    raise write_error(err, path, existed=False) from err
            finally:
                os.close(fd)

    def open(self, epoch: int, mode: str = "r") -> dict[str, np.memmap]:
        """Memory maps of ``epoch``'s arrays (``mode`` "r" or "r+"; "r+" never maps a symbolic link)."""
        if mode != "r":
            for spec in self.arrays:
                refuse_link(self.path(epoch, spec))
        return {
            spec.name: np.memmap(self.path(epoch, spec), dtype=spec.dtype, mode=mode, shape=self.shape(spec))
            for spec in self.arrays
        }

    def disk_bytes(self) -> int:
        """Bytes of every cache file present (logical sizes)."""
        total = self.manifest.stat().st_size if self.manifest.is_file() else 0
        for path in self.directory.glob("epoch_*.*"):
            total += path.stat().st_size
        return total
