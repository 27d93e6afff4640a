"""The files of a run folder ``<out_dir>/<name>/`` and of an exported timm folder, and a run's safe name.

    runs/NAME/config.yaml        the run's whole config (what ``--resume`` and ``ofakd eval`` read)
    runs/NAME/metrics.jsonl      one JSON record per logged step and per evaluation
    runs/NAME/last.pt            everything to resume (``checkpoint``); last.prev.pt: the one before
    runs/NAME/best.safetensors   the best epoch's student weights and recipe (``best_weights``)
    runs/NAME/summary.json       the run's results
    runs/NAME/run.lock           while a run writes the folder: its lock, naming the process (``lock``)
    runs/NAME/events.out.tfevents.*   TensorBoard's logs
    runs/NAME/.FILE.tmp-PID      a file being written (``atomic``); left by a write a crash interrupted, it is
                                 removed when the next run or resume of the folder starts
    EXPORT/config.json           timm's model config (``ofakd export --format timm``)
    EXPORT/model.safetensors     the bare student's weights, as timm loads them
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .atomic import is_temporary, remove_temporaries, write_error, writing
from .lock import FolderLock, FolderLocked, missing_folders

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LAST = "last.pt"
BEST = "best.safetensors"
SUMMARY = "summary.json"
LOCK = "run.lock"
_RUN_FILES = (CONFIG, METRICS, LAST, BEST, SUMMARY)
TENSORBOARD_PREFIX = "events.out.tfevents."

EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
"""The files of a folder written by ``ofakd export --format timm`` (timm's own names)."""


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.pt`` -> ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


PREVIOUS = previous_path(LAST).name
"""The last.pt before the latest one (kept in case the latest is damaged)."""


def is_run_file(entry: Path) -> bool:
    """True for a file a run writes in its folder (the layout above): what ``--overwrite`` may remove."""
    if entry.is_dir() and not entry.is_symlink():
        return False
    name = entry.name
    return name in (*_RUN_FILES, PREVIOUS, LOCK) or name.startswith(TENSORBOARD_PREFIX) or is_temporary(entry)


def sanitize_name(name: str) -> str:
    """A single safe folder name: letters, digits, ``. _ - +``; no separators, no leading dot, no ``..``."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "-", str(name)).strip("-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip(".")
    cleaned = cleaned[:120].strip("-.")
    if not cleaned:
        raise ConfigError(f"run.name: {name!r} has no usable characters; use letters, digits, '.', '_' or '-'")
    return cleaned


def default_name(method: str, teacher: str | None, student: str, dataset: str, seed: int) -> str:
    """``method-teacher-student-dataset-sSEED`` (no teacher part when there is none)."""
    parts = [method, teacher, student, dataset, f"s{seed}"]
    return "-".join(str(p) for p in parts if p)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def previous(self) -> Path:
        return self.path / PREVIOUS

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    @classmethod
    def plan(cls, out_dir: str | Path, name: str, *, overwrite: bool = False) -> RunFolder:
        """The folder a new run will use, checked but not yet created (see :meth:`make`): an existing
        run there is an error unless ``overwrite``."""
        folder = cls._place(out_dir, name)
        folder._check_new(overwrite)
        return folder

    @classmethod
    def _place(cls, out_dir: str | Path, name: str) -> RunFolder:
        """``out_dir/name`` with ``name`` sanitised; an error when it cannot be a folder of ours."""
        if Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise ConfigError(f"--out-dir {out_dir} is a file; pass a folder (it is created when missing)")
        folder = cls(Path(out_dir) / sanitize_name(name))
        if folder.path.is_symlink():
            raise ConfigError(
                f"run folder {folder.path} is a symbolic link; a run writes only inside --out-dir: choose another "
                "--name or remove the link"
            )
        if folder.path.exists() and not folder.path.is_dir():
            raise ConfigError(f"run folder {folder.path} is a file; choose another --name or --out-dir")
        return folder

    def _check_new(self, overwrite: bool) -> None:
        """A run already in the folder is an error unless ``overwrite``; ``overwrite`` removes a run's own files
        only, so a folder that holds anything else (a user's notes, a subfolder) is refused, naming it."""
        if self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir()):
            if not overwrite and self.stopped_before_a_checkpoint():
                raise ConfigError(
                    f"run folder {self.path} holds a run that stopped before its first checkpoint (nothing to "
                    "resume); pass --overwrite to start it again, or --name NAME for a new run"
                )
            if not overwrite:
                raise ConfigError(
                    f"run folder {self.path} already exists; pass --resume {self.path} to continue it, "
                    "--name NAME for a new run, or --overwrite to replace it"
                )
            others = sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "")
                            for p in self.path.iterdir() if not is_run_file(p))
            if not any((self.path / f).exists() for f in _RUN_FILES):
                raise ConfigError(f"--overwrite: {self.path} does not look like a run folder (it holds "
                                  f"{_some(others)}); not deleting it")
            if others:
                raise ConfigError(
                    f"--overwrite: {self.path} holds files a run did not write ({_some(others)}); --overwrite removes "
                    "only a run's own files, and these would be lost with the folder: move them away, or pass --name "
                    "NAME for a new run"
                )

    def stopped_before_a_checkpoint(self) -> bool:
        """The folder holds a run's files only, none of them a checkpoint (a run killed while it set up)."""
        entries = [p for p in self.path.iterdir() if p.name != LOCK]
        return (bool(entries) and all(is_run_file(p) for p in entries)
                and not (self.last.exists() or self.previous.exists()))

    def make(self) -> None:
        """Create the folder empty but for its lock: a previous run's files are removed (when planned with
        ``overwrite``), and nothing else (:meth:`_check_new` refused a folder holding anything else)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for entry in self.path.iterdir():
            if entry.name != LOCK and is_run_file(entry):
                entry.unlink()

    @classmethod
    def existing(cls, path: str | Path) -> RunFolder:
        """The run folder at ``path`` (for ``--resume``): it must hold a config and a last.pt."""
        folder = cls(Path(path))
        if not folder.config.is_file():
            raise ConfigError(f"--resume {path}: no {CONFIG} there; pass the folder of a run (runs/NAME)")
        if not folder.last.is_file() and not folder.previous.is_file():
            raise ConfigError(f"--resume {path}: no {LAST} there (the run stopped before its first checkpoint): nothing "
                              "to resume; start it again with --overwrite (the same command without --resume)")
        return folder

    # ---- one writer ------------------------------------------------------------------
    @classmethod
    def claim(cls, out_dir: str | Path, name: str, *, overwrite: bool = False) -> tuple[RunFolder, FolderLock]:
        """A new run's folder, created and locked (see :mod:`~ofakd.run_folder.lock`), checked under the lock
        as :meth:`plan` checks it: a folder another run writes is refused, ``overwrite`` included."""
        folder = cls._place(out_dir, name)
        made = missing_folders(folder.path)
        with writing(folder.path):
            folder.path.mkdir(parents=True, exist_ok=True)
        lock = folder._lock(remove_folders=made, overwrite=overwrite)  # a run writing there: say so first
        try:
            folder._check_new(overwrite)  # under the lock: no run can start or end here meanwhile
        except BaseException:
            lock.release()
            raise
        remove_temporaries(folder.path)
        return folder, lock

    @classmethod
    def claim_existing(cls, path: str | Path) -> tuple[RunFolder, FolderLock]:
        """The run folder at ``path`` (for ``--resume``), locked; its files must be files (a ``last.pt`` that
        is a folder is found now, not at the first save)."""
        folder = cls(Path(path))
        if not folder.config.is_file():
            raise ConfigError(f"--resume {path}: no {CONFIG} there; pass the folder of a run (runs/NAME)")
        lock = folder._lock()  # before the checks below: a run writing the folder is the first thing to say
        try:
            cls.existing(path)
            for name in (*_RUN_FILES, PREVIOUS):
                entry = folder.path / name
                if (entry.exists() or entry.is_symlink()) and not entry.is_file():
                    raise ConfigError(f"{entry} is not a file (a folder or a broken link); a run writes {name} there: "
                                      f"move it away, then --resume {path} again")
        except BaseException:
            lock.release()
            raise
        remove_temporaries(folder.path)  # what a write that a crash interrupted left (the lock is ours now)
        return folder, lock

    def _lock(self, *, remove_folders: list[Path] | None = None, overwrite: bool = False) -> FolderLock:
        lock = FolderLock(self.lock_file, f"run folder {self.path}", remove_folders=remove_folders or ())
        try:
            return lock.acquire()
        except FolderLocked as err:
            if overwrite:
                raise FolderLocked(f"{err}; --overwrite does not delete a folder another process writes") from None
            raise
        except OSError as err:
            raise write_error(err, err.filename or self.lock_file) from None


def _some(names: list[str], shown: int = 4) -> str:
    """``a, b, c, d and 3 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
