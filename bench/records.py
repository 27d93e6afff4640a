"""The converged benchmark's result store: one small JSON record per finished run, kept in the repository.

Layout (``RESULTS`` for the full size; a smoke run keeps its own under its output folder)::

    teachers/KEY/            a run folder trimmed to what teaching needs: config.yaml, summary.json,
                             best.safetensors (the weights, a few MB) and record.json; students take it
                             as ``--teacher-run``, so a fresh clone distils from the very same teacher
    runs/REGIME/PAIR/VARIANT-sSEED.json   a student's record
    cka/REGIME/PAIR/VARIANT-sSEED.json    teacher-vs-student stage CKA of one student

A record holds what the tables need — final top-1 on the test images, the per-epoch validation curve — and
what it was made from: ``cell`` (the grid cell: recipe, data path, regime, models, method and options, seed,
the teacher's weights) and its digest ``cell_digest``, the digest of the run's resolved ``config.yaml``
(machine paths left out), epochs, wall time, device, ofakd's version and git commit. The benchmark skips a
run whose record exists with the cell's digest, reruns one whose cell changed, and ``--report-only`` reads
records alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parent / "results" / "converged"
FORMAT = 1
TEACHER_FILES = ("config.yaml", "summary.json", "best.safetensors")
MACHINE_KEYS = {"run": None, "teacher": ("checkpoint", "cache"), "student": ("checkpoint",), "train": ("device",),
                "data": ("root", "workers", "prefetch")}
"""Parts of a resolved config that name this machine's paths or resources, not what the run computes."""


def digest(value) -> str:
    """sha256 (first 16 hex digits) of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def config_digest(config_yaml: Path) -> str:
    """Digest of a run's resolved ``config.yaml`` without the machine's paths and resources (:data:`MACHINE_KEYS`)."""
    config = yaml.safe_load(config_yaml.read_text())
    for section, keys in MACHINE_KEYS.items():
        if keys is None:
            config.pop(section, None)
        elif isinstance(config.get(section), dict):
            for key in keys:
                config[section].pop(key, None)
    return digest(config)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance() -> dict:
    """ofakd's version and the repository's commit at the time a record is written."""
    import ofakd

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"ofakd": ofakd.__version__, "commit": commit}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def eval_curve(run: Path) -> list[float]:
    """Per-epoch validation top-1 of a run folder, from its ``metrics.jsonl``."""
    curve = []
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return curve
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("kind") == "eval" and isinstance(entry.get("top1"), (int, float)):
            curve.append(float(entry["top1"]))
    return curve


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


class Store:
    """The records under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- paths ----
    def teacher_dir(self, key: str) -> Path:
        return self.root / "teachers" / key

    def run_path(self, regime: str, pair_folder: str, variant: str, seed: int) -> Path:
        return self.root / "runs" / regime / pair_folder / f"{variant}-s{seed}.json"

    def cka_path(self, regime: str, pair_folder: str, variant: str, seed: int) -> Path:
        return self.root / "cka" / regime / pair_folder / f"{variant}-s{seed}.json"

    # ---- teachers ----
    def teacher(self, key: str, cell_digest: str | None = None) -> dict | None:
        """The teacher's record when its files are whole (weights matching the recorded sha256) and, if given, its
        cell digest matches."""
        folder = self.teacher_dir(key)
        record = read_json(folder / "record.json")
        if record is None or not all((folder / name).is_file() for name in TEACHER_FILES):
            return None
        if record.get("weights_sha256") != file_sha256(folder / "best.safetensors"):
            return None
        return record if cell_digest is None or record.get("cell_digest") == cell_digest else None

    def keep_teacher(self, key: str, run: Path, cell: dict, extra: dict | None = None) -> dict:
        """Copy a finished teacher run's files here and write its record."""
        folder = self.teacher_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        for name in TEACHER_FILES:
            shutil.copyfile(run / name, folder / name)
        summary = read_json(run / "summary.json") or {}
        record = {
            "format": FORMAT, "kind": "teacher", "key": key, "cell": cell, "cell_digest": digest(cell),
            "config_digest": config_digest(run / "config.yaml"), "weights_sha256": file_sha256(folder / "best.safetensors"),
            "test_top1": summary.get("final_top1"), "best_top1": summary.get("best_top1"),
            "test_images": summary.get("val_images"), "curve": eval_curve(run), "epochs": summary.get("epochs"),
            "params": summary.get("student_params"), "wall_time_s": summary.get("wall_time_s"),
            "device": summary.get("device"), "data_path": summary.get("data_path"), **provenance(), **(extra or {}),
        }
        write_json(folder / "record.json", record)
        return record

    # ---- students ----
    def run(self, regime: str, pair_folder: str, variant: str, seed: int, cell_digest: str | None = None) -> dict | None:
        record = read_json(self.run_path(regime, pair_folder, variant, seed))
        if record is None or (cell_digest is not None and record.get("cell_digest") != cell_digest):
            return None
        return record

    def keep_run(self, regime: str, pair_folder: str, variant: str, seed: int, run: Path, test: dict,
                 cell: dict) -> dict:
        """Write the record of a finished, evaluated student run (``test``: ``ofakd eval --json`` of its final weights)."""
        summary = read_json(run / "summary.json") or {}
        record = {
            "format": FORMAT, "kind": "student", "regime": regime, "pair": pair_folder, "variant": variant,
            "seed": seed, "cell": cell, "cell_digest": digest(cell), "config_digest": config_digest(run / "config.yaml"),
            "test_top1": test["top1"], "test_top5": test.get("top5"), "test_loss": test.get("mean_loss"),
            "test_images": test.get("count"), "curve": eval_curve(run), "val_images": summary.get("val_images"),
            "epochs": summary.get("epochs"), "params": summary.get("student_params"),
            "wall_time_s": summary.get("wall_time_s"), "images_per_s": summary.get("images_per_s"),
            "device": summary.get("device"), "data_path": summary.get("data_path"), **provenance(),
        }
        write_json(self.run_path(regime, pair_folder, variant, seed), record)
        return record

    # ---- CKA ----
    def cka(self, regime: str, pair_folder: str, variant: str, seed: int, cell_digest: str | None = None) -> dict | None:
        record = read_json(self.cka_path(regime, pair_folder, variant, seed))
        if record is None or (cell_digest is not None and record.get("cell_digest") != cell_digest):
            return None
        return record

    def keep_cka(self, regime: str, pair_folder: str, variant: str, seed: int, cka_json: Path, cell: dict) -> dict:
        data = json.loads(cka_json.read_text())
        record = {"format": FORMAT, "kind": "cka", "regime": regime, "pair": pair_folder, "variant": variant,
                  "seed": seed, "cell": cell, "cell_digest": digest(cell), "matrix": data["matrix"],
                  "names_teacher": data["names_a"], "names_student": data["names_b"], **provenance()}
        write_json(self.cka_path(regime, pair_folder, variant, seed), record)
        return record
