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
        """Copy a finished teacher run's files here and write its record, with the probe of the cache it gives
        (:func:`teacher_probe`)."""
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
        record["probe"] = teacher_probe(folder)
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


PROBE_ARGS = ["--data.train_subset", "5000", "--data.val_subset", "2000", "--epochs", "1", "--data.loader", "batched"]
"""The probe's recording: one epoch of the low-data regime's views (5,000 training images, data seed 0)."""


def teacher_probe(teacher_dir: Path, recipe: Path | None = None) -> dict:
    """What a teacher-output cache recorded from the stored teacher holds: ``ofakd cache record`` of one epoch of the
    low-data regime's views from ``teacher_dir`` (as ``--teacher-run``), its manifest's ``weights_sha256`` (the teacher
    it saw) and its first batch of logits. A teacher rebuilt from the stored files anywhere gives the same cache when
    the two agree (the logits within float16 rounding and the CPU's arithmetic)."""
    import tempfile

    from ofakd.cache import TeacherCache
    from ofakd.cli import main

    recipe = recipe or Path(__file__).resolve().with_name("converged.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["cache", "record", "--config", str(recipe), "--device", "cpu", "--teacher-run", str(teacher_dir),
                *PROBE_ARGS, "--out", str(Path(tmp) / "cache")]
        code = main(argv)
        if code != 0:
            raise RuntimeError(f"ofakd {' '.join(argv)} exited {code}")
        cache = TeacherCache(Path(tmp) / "cache")
        logits = cache.read(0, 0)
        return {"args": PROBE_ARGS, "weights_sha256": cache.manifest["teacher"]["weights_sha256"],
                "fingerprint": cache.manifest["dataset"]["fingerprint"],
                "first_batch_logits": [[round(float(v), 4) for v in row] for row in logits.tolist()]}


def main(argv: list[str] | None = None) -> None:
    """``python bench/records.py probe`` adds the cache probe to every stored teacher's record that lacks one."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["probe"])
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    for folder in sorted((Path(args.results) / "teachers").iterdir()):
        record = read_json(folder / "record.json")
        if record is not None and "probe" not in record:
            record["probe"] = teacher_probe(folder)
            write_json(folder / "record.json", record)
            print(f"probed {folder.name}: weights {record['probe']['weights_sha256'][:12]}")


if __name__ == "__main__":
    main()
