"""The files of a run folder ``<out_dir>/<name>/`` and of an exported timm folder, and a run's safe name.

    runs/NAME/config.yaml        the run's whole config (what ``--resume`` and ``ofakd eval`` read)
    runs/NAME/metrics.jsonl      one JSON record per logged step and per evaluation
    runs/NAME/last.pt            everything to resume (``checkpoint``); last.prev.pt: the one before
    runs/NAME/best.safetensors   the best epoch's student weights and recipe (``best_weights``)
    runs/NAME/summary.json       the run's results
    EXPORT/config.json           timm's model config (``ofakd export --format timm``)
    EXPORT/model.safetensors     the bare student's weights, as timm loads them
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LAST = "last.pt"
BEST = "best.safetensors"
SUMMARY = "summary.json"
_RUN_FILES = (CONFIG, METRICS, LAST, BEST, SUMMARY)

EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
"""The files of a folder written by ``ofakd export --format timm`` (timm's own names)."""


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.pt`` -> ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


PREVIOUS = previous_path(LAST).name
"""The last.pt before the latest one (kept in case the latest is damaged)."""


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

    @classmethod
    def plan(cls, out_dir: str | Path, name: str, *, overwrite: bool = False) -> RunFolder:
        """The folder a new run will use, checked but not yet created (see :meth:`make`): an existing
        run there is an error unless ``overwrite``."""
        folder = cls(Path(out_dir) / sanitize_name(name))
        if folder.path.is_symlink():
            raise ConfigError(
                f"run folder {folder.path} is a symbolic link; a run writes only inside --out-dir: choose another "
                "--name or remove the link"
            )
        if folder.path.is_dir() and any(folder.path.iterdir()):
            if not overwrite:
                raise ConfigError(
                    f"run folder {folder.path} already exists; pass --resume {folder.path} to continue it, "
                    "--name NAME for a new run, or --overwrite to replace it"
                )
            if not any((folder.path / f).exists() for f in _RUN_FILES):
                raise ConfigError(f"--overwrite: {folder.path} does not look like a run folder; not deleting it")
        elif folder.path.exists() and not folder.path.is_dir():
            raise ConfigError(f"run folder {folder.path} is a file; choose another --name or --out-dir")
        return folder

    def make(self) -> None:
        """Create the folder empty (replacing a previous run's files when planned with ``overwrite``)."""
        if self.path.is_dir() and any(self.path.iterdir()):
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def existing(cls, path: str | Path) -> RunFolder:
        """The run folder at ``path`` (for ``--resume``): it must hold a config and a last.pt."""
        folder = cls(Path(path))
        if not folder.config.is_file():
            raise ConfigError(f"--resume {path}: no {CONFIG} there; pass the folder of a run (runs/NAME)")
        if not folder.last.is_file() and not folder.previous.is_file():
            raise ConfigError(f"--resume {path}: no {LAST} there (the run ended before its first epoch); start it again")
        return folder
