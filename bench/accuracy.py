"""Accuracy benchmark: three heterogeneous teacher -> student pairs on Fashion-MNIST, every method, several seeds.

Pairs (all at 3x32x32, recipe ``bench-fashion-mnist``):

- ``cnn->vit``: CNN teacher (timm ``test_resnet``) -> ViT student (4 blocks, 64 wide, patch 8)
- ``vit->cnn``: ViT teacher (6 blocks, 96 wide, patch 8) -> CNN student (timm ``test_convnext``)
- ``cnn->mlp``: the same CNN teacher -> MLP-Mixer student (4 blocks, 64 wide, patch 4)

For each pair: the teacher's top-1 (``ofakd train``, once), then the student trained from scratch
(``vanilla``) and with KD, DKD, DIST, FitNet, OFA and RSD, one run per init seed (``--seed``; the
data seed is fixed at 0, so every seed sees the same data order and one teacher-output cache per
teacher serves them all). Logits-only methods (KD, DKD, DIST, OFA) read the teacher's logits from
``ofakd cache record``; FitNet and RSD need teacher features and run the teacher live.

Everything goes through the ``ofakd`` commands (train, cache record, distill, report), run by two
worker processes with one thread each. Output in OUT (default ``bench-out/accuracy-MODE``):
``runs/``, ``teachers/``, ``caches/``, ``report/PAIR/{report.md,curves.png}`` (``ofakd report``),
and ``accuracy.md`` / ``accuracy.json``: the pair x method table (final top-1 mean ± std over seeds).
Finished runs (``complete`` in their ``summary.json``) are skipped when the benchmark is run again
with the same OUT, and an interrupted teacher resumes from its ``last.pt``; use ``--fresh`` (or a new
OUT) after changing a mode's sizes.

    python bench/accuracy.py            # full: 32 min measured on 2 loaded CPU cores (docs/benchmarks.md)
    python bench/accuracy.py --quick    # ~3 min on 2 idle cores (8 min at load 5): pipeline check only
    python bench/accuracy.py --smoke    # ~1 min: 1 epoch on 128 images, one seed (the test's mode)

The converged benchmark (issue 16: teachers on all 60,000 images, students to a plateau, 4 pairs x
9 variants x 2 regimes x 3 seeds, Welch's t-tests, teacher-vs-student CKA) is ``--converged``; see
bench/converged.py for what runs and bench/converged_main.py for its output:

    python bench/accuracy.py --converged --out DIR [--device cuda] [--workers N]   # resumable
    python bench/accuracy.py --converged --out DIR --report-only   # tables from the runs finished so far
    python bench/accuracy.py --converged --out DIR --ablation      # + the OFA ablation (after the grid)
    python bench/accuracy.py --converged --out DIR --successors    # + PAT (after the grid and the ablation)
    python bench/accuracy.py --converged --out DIR --successors --successors-first   # PAT after the low regime
    python bench/accuracy.py --converged --smoke                   # its smallest size (the test's)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pool import MLP_NAME, Step, init_worker, run_job_args

RECIPE = "bench-fashion-mnist"
METHODS = ("vanilla", "kd", "dkd", "dist", "fitnet", "ofa", "rsd")
CACHED = {"kd", "dkd", "dist", "ofa"}
"""Methods that read the teacher's logits from the teacher-output cache (the rest: vanilla needs no
teacher, FitNet and RSD need its features and run it live)."""
METHOD_OPTIONS: dict[str, dict] = {"ofa": {"ofa_weight": 0.1}}
"""Per-method options beside the methods' defaults: OFA's branch weight 0.1, the authors' CIFAR value
(also what `ofakd demo` uses)."""



@dataclass(frozen=True)
class Model:
    name: str
    kwargs: dict

    @property
    def key(self) -> str:
        return self.name.replace("_patch16_224", "")


CNN_TEACHER = Model("test_resnet", {})
VIT_TEACHER = Model("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 6, "embed_dim": 96, "num_heads": 3})
VIT_STUDENT = Model("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 4, "embed_dim": 64, "num_heads": 2})
CNN_STUDENT = Model("test_convnext", {})
MLP_STUDENT = Model(MLP_NAME, {})

PAIRS = {  # name -> (teacher, student, teacher run folder name)
    "cnn->vit": (CNN_TEACHER, VIT_STUDENT, "cnn-teacher"),
    "vit->cnn": (VIT_TEACHER, CNN_STUDENT, "vit-teacher"),
    "cnn->mlp": (CNN_TEACHER, MLP_STUDENT, "cnn-teacher"),
}


@dataclass(frozen=True)
class Mode:
    train_subset: int
    val_subset: int
    epochs: int
    seeds: tuple[int, ...]
    teacher_subset: int
    teacher_epochs: int


MODES = {
    "full": Mode(train_subset=2000, val_subset=1000, epochs=3, seeds=(0, 1, 2), teacher_subset=10000, teacher_epochs=4),
    "quick": Mode(train_subset=600, val_subset=500, epochs=2, seeds=(0, 1, 2), teacher_subset=3000, teacher_epochs=2),
    "smoke": Mode(train_subset=128, val_subset=64, epochs=1, seeds=(0,), teacher_subset=128, teacher_epochs=1),
}


def folder_name(pair: str) -> str:
    return pair.replace("->", "-to-")


def finished(run_dir: Path) -> bool:
    """A run that went through all its epochs (``summary.json`` is also written after each epoch)."""
    try:
        return bool(json.loads((run_dir / "summary.json").read_text()).get("complete"))
    except (OSError, ValueError):
        return False


# ---- the jobs ----

def _common(mode: Mode) -> list[str]:
    return ["--config", RECIPE, "--device", "cpu", "--data.val_subset", str(mode.val_subset)]


def _model_set(model: Model) -> list[str]:
    return ["--set", f"student.kwargs={json.dumps(model.kwargs)}"]


def teacher_jobs(out: Path, mode: Mode) -> list[tuple[str, list[str], str]]:
    jobs, seen = [], set()
    for teacher, _, folder in PAIRS.values():
        if folder in seen:
            continue
        seen.add(folder)
        run_dir = out / "teachers" / folder
        if finished(run_dir):
            continue
        log = str(out / "logs" / f"teacher-{folder}.log")
        if (run_dir / "last.pt").is_file():  # interrupted: continue it exactly
            jobs.append((f"teacher {folder}", ["train", "--resume", str(run_dir), "--device", "cpu"], log))
            continue
        argv = ["train", *_common(mode), "--model", teacher.name, *_model_set(teacher), "--seed", "0",
                "--epochs", str(mode.teacher_epochs), "--data.train_subset", str(mode.teacher_subset),
                "--out-dir", str(out / "teachers"), "--name", folder, "--overwrite"]
        jobs.append((f"teacher {folder}", argv, log))
    return jobs


def cache_jobs(out: Path, mode: Mode) -> list[tuple[str, list[str], str]]:
    jobs = []
    for folder in dict.fromkeys(f for _, _, f in PAIRS.values()):
        cache = out / "caches" / folder
        if (out / "logs" / f"cache-{folder}.done").is_file():
            continue
        argv = ["cache", "record", *_common(mode), "--teacher-run", str(out / "teachers" / folder),
                "--epochs", str(mode.epochs), "--data.train_subset", str(mode.train_subset),
                "--out", str(cache), "--overwrite"]
        jobs.append((f"cache {folder}", argv, str(out / "logs" / f"cache-{folder}.log")))
    return jobs


def student_jobs(out: Path, mode: Mode, methods=METHODS) -> list[tuple[str, list[str], str]]:
    jobs = []
    for pair, (_, student, folder) in PAIRS.items():
        for method in methods:
            for seed in mode.seeds:
                name = f"{method}-s{seed}"
                run_dir = out / "runs" / folder_name(pair) / name
                if finished(run_dir):
                    continue
                argv = ["distill", *_common(mode), "--method", method, "--student", student.name,
                        *_model_set(student), "--seed", str(seed), "--epochs", str(mode.epochs),
                        "--data.train_subset", str(mode.train_subset),
                        "--out-dir", str(run_dir.parent), "--name", name, "--overwrite"]
                if method != "vanilla":
                    argv += ["--teacher-run", str(out / "teachers" / folder)]
                if method in CACHED:
                    argv += ["--teacher-cache", str(out / "caches" / folder)]
                for key, value in METHOD_OPTIONS.get(method, {}).items():
                    argv += ["--set", f"method.{key}={json.dumps(value)}"]
                jobs.append((f"{pair} {name}", argv, str(out / "logs" / folder_name(pair) / f"{name}.log")))
    # live-teacher runs are the slowest: start them first so the two workers finish together
    jobs.sort(key=lambda job: job[1][job[1].index("--method") + 1] in CACHED)
    return jobs


def run_stage(pool, title: str, jobs, out: Path) -> None:
    if not jobs:
        return
    print(f"== {title}: {len(jobs)} job(s)", flush=True)
    failed = []
    steps = [(label, [Step(argv)], log) for label, argv, log in jobs]
    for done, (label, rc, seconds) in enumerate(pool.imap_unordered(run_job_args, steps), 1):
        print(f"   [{done}/{len(jobs)}] {label}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f}s",
              flush=True)
        if rc != 0:
            failed.append(label)
        elif label.startswith("cache "):
            (out / "logs" / f"cache-{label.split()[1]}.done").touch()
    if failed:
        raise SystemExit(f"{len(failed)} job(s) failed: {', '.join(failed)} (logs in {out / 'logs'})")


# ---- the tables ----

def collect(out: Path, mode: Mode) -> list[dict]:
    """One row per (pair, teacher or method): final/best top-1 over seeds and wall time, from the runs' summaries."""
    from ofakd.analysis.runs import find_runs, group_runs

    rows = []
    for pair, (teacher, student, folder) in PAIRS.items():
        (tgroup,) = group_runs(find_runs([out / "teachers" / folder]))
        rows.append(_row(pair, f"teacher ({teacher.key})", tgroup, "-"))
        groups = {g.config["method"]: g for g in group_runs(find_runs([out / "runs" / folder_name(pair)]))}
        for method in METHODS:
            if method in groups:
                source = "none" if method == "vanilla" else ("cache" if method in CACHED else "live")
                rows.append(_row(pair, method, groups[method], source, student.key))
    scratch = {r["pair"]: r["final_top1"] for r in rows if r["method"] == "vanilla"}
    for r in rows:
        if not r["method"].startswith("teacher") and r["pair"] in scratch:
            r["delta_vs_scratch"] = round(r["final_top1"] - scratch[r["pair"]], 2)
    return rows


def _row(pair: str, method: str, group, teacher_source: str, student: str | None = None) -> dict:
    from ofakd.analysis.report_table import fmt_duration, fmt_mean_std, mean_std

    final, best, wall = group.values("final_top1"), group.values("best_top1"), group.values("wall_time_s")
    return {
        "pair": pair,
        "method": method,
        "student": student or group.config["student"],
        "seeds": group.seeds,
        "final_top1": round(mean_std(final)[0], 2),
        "final_top1_std": None if mean_std(final)[1] is None else round(mean_std(final)[1], 2),
        "final": fmt_mean_std(final),
        "best": fmt_mean_std(best),
        "wall": fmt_mean_std(wall, fmt_duration),
        "wall_time_s": [round(w, 1) for w in wall],
        "params": group.values("student_params")[0],
        "teacher": teacher_source,
    }


def render(rows: list[dict], mode_name: str, mode: Mode, total_s: float, out: Path) -> str:
    from ofakd.analysis.report_table import fmt_count, fmt_duration, markdown

    pairs = list(PAIRS)
    wide_headers = ["pair", "teacher", *METHODS]
    wide = []
    for pair in pairs:
        cells = {r["method"]: r["final"] for r in rows if r["pair"] == pair}
        teacher = next(r["final"] for r in rows if r["pair"] == pair and r["method"].startswith("teacher"))
        best = max((r for r in rows if r["pair"] == pair and r["method"] in METHODS), key=lambda r: r["final_top1"])
        cells[best["method"]] = f"**{cells[best['method']]}**"
        wide.append([pair, teacher, *[cells.get(m, "—") for m in METHODS]])
    long_headers = ["pair", "method", "student", "params", "final top-1", "best top-1", "Δ vs scratch",
                    "wall time / run", "teacher logits"]
    long = [[r["pair"], r["method"], r["student"], fmt_count(r["params"]), r["final"], r["best"],
             "—" if "delta_vs_scratch" not in r else f"{r['delta_vs_scratch']:+.2f}", r["wall"], r["teacher"]]
            for r in rows]
    seeds = ", ".join(map(str, mode.seeds))
    return "\n".join([
        f"# Accuracy benchmark ({mode_name})",
        "",
        f"Fashion-MNIST at 3x32x32; students: {mode.train_subset} training images, {mode.epochs} epochs, "
        f"init seeds {seeds} (data seed 0); teachers: {mode.teacher_subset} images, {mode.teacher_epochs} "
        f"epochs; validation: {mode.val_subset} test-split images (a random subset drawn with the fixed seed 0). "
        f"Final top-1 in % as mean ± sample std over seeds (bold: best student per pair). "
        f"Whole benchmark: {fmt_duration(total_s)} wall time.",
        "",
        markdown(wide_headers, wide),
        markdown(long_headers, long),
        f"Curves and per-run tables: {out / 'report'}/PAIR/report.md and curves.png (`ofakd report`).",
        "",
    ])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny subsets, 2 epochs: a few minutes on 2 CPU cores")
    size.add_argument("--smoke", action="store_true", help="1 epoch on 128 images, one seed: about a minute (the test)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: bench-out/accuracy-MODE)")
    parser.add_argument("--workers", type=int, default=2, help="parallel worker processes, one thread each")
    parser.add_argument("--fresh", action="store_true", help="delete OUT first instead of reusing finished runs")
    parser.add_argument("--converged", action="store_true",
                        help="the converged benchmark (issue 16): teachers on all 60,000 images, 4 pairs x 9 variants "
                        "x 2 regimes x 3 seeds, significance tests, CKA; with --smoke its smallest size")
    parser.add_argument("--report-only", action="store_true",
                        help="--converged: write the tables from the runs finished so far and exit")
    parser.add_argument("--ablation", action="store_true",
                        help="--converged: also run the OFA ablation (eps, w_ofa, stages, T; bench/converged.py ABLATION) "
                        "in the low-data regime, after the main grid")
    parser.add_argument("--successors", action="store_true",
                        help="--converged: also run the methods published after OFA-KD (PAT; bench/converged.py "
                        "SUCCESSORS) in the low-data regime, after the grid and the ablation")
    parser.add_argument("--successors-first", action="store_true",
                        help="--converged --successors: run the successors' cells right after the low-data regime's grid, "
                        "before the full-data regime and the ablation")
    parser.add_argument("--device", default="cpu", help="--converged: torch device of every run (cpu, cuda)")
    parser.add_argument("--results", metavar="DIR",
                        help="--converged: the result store (default: bench/results/converged in the repository; "
                        "with --smoke, OUT/results)")
    args = parser.parse_args(argv)
    if args.converged:
        from converged_main import run

        return run(args)

    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = MODES[mode_name]
    out = Path(args.out or f"bench-out/accuracy-{mode_name}")
    if args.fresh and out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers before torch loads

    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.workers, initializer=init_worker) as pool:
        run_stage(pool, "teachers", teacher_jobs(out, mode), out)
        run_stage(pool, "teacher-output caches", cache_jobs(out, mode), out)
        run_stage(pool, "students", student_jobs(out, mode), out)
    total = time.perf_counter() - start

    from ofakd.cli import main as ofakd_main

    for pair in PAIRS:
        with open(out / "logs" / f"report-{folder_name(pair)}.log", "w") as fh, contextlib.redirect_stdout(fh):
            rc = ofakd_main(["report", str(out / "teachers" / PAIRS[pair][2]), str(out / "runs" / folder_name(pair)),
                             "--out", str(out / "report" / folder_name(pair)), "--quiet"])
        if rc != 0:
            raise SystemExit(f"ofakd report failed for {pair} (exit {rc})")
    rows = collect(out, mode)
    text = render(rows, mode_name, mode, total, out)
    (out / "accuracy.md").write_text(text)
    (out / "accuracy.json").write_text(json.dumps({"mode": mode_name, "total_s": round(total, 1), "rows": rows},
                                                  indent=2) + "\n")
    print()
    print(text)
    print(f"wrote {out / 'accuracy.md'}, {out / 'accuracy.json'} and {out / 'report'}/*/{{report.md,curves.png}}")
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # spawn re-imports this file as __mp_main__
    main()
