"""The tuning benchmark: does ``ofakd tune`` find a configuration that beats the best fixed method?

On the converged benchmark's low-data regime (Fashion-MNIST, students on the fixed 5,000-image subset, 30 epochs,
the recipe ``bench/converged.yaml``, the committed teachers of ``bench/results/converged/teachers/{cnn,vit}``), for
CNN -> MLP and ViT -> CNN: ``ofakd tune`` over kd, dkd, dist, ofa and ofa+dist with their declared options and the
lr (``--budget`` trials; Hyperband on the holdout top-1; 500 of the 5,000 images held out to score trials on), then
the tuned configuration's final runs on the converged seeds (each trained on all 5,000 images and evaluated, like
every converged cell, by its last epoch's weights on all 10,000 test images). The table puts that beside the best
fixed method of the converged table (read from its records with ``converged_report``), with Welch's t-test and
the tuning's cost in student-epochs.

    python bench/tune.py [--out bench-out/tune] [--budget 30] [--device cpu]   # resumable: run it again
    python bench/tune.py --smoke                                                 # tiny sizes (the test's)
    python bench/tune.py --report-only bench/results/tune/tune.json              # the table again, from the records

The full size needs the converged benchmark's teachers in the result store (``python bench/accuracy.py
--converged`` trains them); without them it says so and stops. ``--smoke`` trains tiny teachers of its own.
Several workers may share a pair's study: start the same command again in another process (the one that
finishes a study last runs its final runs; the other says so, and a later run of the command writes the table).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from converged import (
    CNN_STUDENT,
    DATA_LOADER,
    MLP_STUDENT,
    RECIPE,
    SIZES,
    TEACHERS,
    Model,
    Regime,
    Size,
    finished,
    folder,
    teacher_cell,
    teacher_job,
)
from converged_report import MISSING, collect, markdown_table
from pool import register_models, run_ofakd
from records import RESULTS, Store, digest
from stats import welch

PAIRS = {"cnn->mlp": ("cnn", MLP_STUDENT), "vit->cnn": ("vit", CNN_STUDENT)}
"""The pairs tuned: (teacher key, student) as in the converged benchmark."""


@dataclass(frozen=True)
class TuneSize:
    converged: str
    """The converged size whose low regime, teachers and seeds this one uses."""
    budget: int
    holdout: int
    """Training images held out to score the trials on."""
    epochs: int | None = None
    """Epochs of every trial and final run (None: the regime's)."""
    batch_size: int | None = None
    """Batch size (None: the recipe's 128)."""


TUNE_SIZES = {
    "full": TuneSize("converged", budget=30, holdout=500),
    "smoke": TuneSize("converged-smoke", budget=3, holdout=32, epochs=2, batch_size=32),
}


def low_regime(size: Size) -> Regime:
    return next(r for r in size.regimes if r.key == "low")


def teacher_dir(store: Store, size: Size, key: str) -> Path | None:
    """The store's teacher ``key`` when its record matches the converged grid, else None."""
    return store.teacher_dir(key) if store.teacher(key, digest(teacher_cell(size, TEACHERS[key]))) else None


def ensure_smoke_teachers(out: Path, size: Size, store: Store, device: str) -> None:
    """Train the smoke size's teachers into ``store`` as the converged benchmark would (1 epoch on 256 images)."""
    for key in dict.fromkeys(t for t, _ in PAIRS.values()):
        job = teacher_job(out, size, TEACHERS[key], device, store)
        if job is None:
            continue
        for step in job.steps:
            if run_ofakd(step.argv) != 0:
                raise SystemExit(f"training the smoke teacher {key} failed")
        job.after(job)


def tune_argv(out: Path, pair: str, student: Model, teacher: Path, regime: Regime, size: Size, tsize: TuneSize,
              device: str) -> list[str]:
    """``ofakd tune`` of one pair: the converged recipe and data path, the regime's images, the size's seeds."""
    argv = ["tune", "--config", RECIPE, "--data.loader", DATA_LOADER, "--device", device, "--teacher-run", str(teacher),
            "--student", student.name, *student.set_args(), "--set", f"data.train_subset={regime.train_subset}",
            "--set", f"data.val_subset={size.val_subset}", "--epochs", str(tsize.epochs or regime.epochs),
            "--budget", str(tsize.budget), "--holdout", str(tsize.holdout), "--out", str(out / folder(pair)),
            "--final-seeds", *map(str, size.seeds)]
    if tsize.batch_size is not None:
        argv += ["--set", f"train.batch_size={tsize.batch_size}"]
    return argv


def test_top1(run: Path, size: Size, device: str) -> float:
    """The final weights of ``run`` on the test images (``ofakd eval --weights last``), as each converged cell."""
    target = run / "test.json"
    if not target.is_file():
        import contextlib

        subset = ["--set", "data.val_subset=null"] if size.test_subset is None else [
            "--set", f"data.val_subset={size.test_subset}"]
        with open(target.with_suffix(".tmp"), "w") as fh, contextlib.redirect_stdout(fh):
            code = run_ofakd(["eval", str(run), "--weights", "last", "--json", "--device", device, *subset])
        if code != 0:
            raise SystemExit(f"evaluating {run} failed")
        target.with_suffix(".tmp").replace(target)
    return float(json.loads(target.read_text())["top1"])


def tuning_cost(tune_dir: Path) -> dict:
    """Student-epochs of the trials and of the final runs, and the teacher cache's teacher-epochs."""
    import optuna

    from ofakd.tuning.folder import read_tune_json
    from ofakd.tuning.study import SURPLUS_ATTR, open_storage

    where = read_tune_json(tune_dir)
    study = optuna.load_study(study_name=where["study"], storage=open_storage(where["storage"], heartbeat_s=60))
    trials = [t for t in study.get_trials(deepcopy=False) if SURPLUS_ATTR not in t.user_attrs]
    finals = study.user_attrs.get("final") or []
    return {"trials": len(trials), "trial_epochs": sum(int(t.user_attrs.get("epochs", 0)) for t in trials),
            "final_epochs": sum(int(f.get("epochs_done") or 0) for f in finals),
            "cache_teacher_epochs": (study.user_attrs.get("teacher_cache") or {}).get("epochs", 0)}


def best_fixed(converged: dict, pair: str) -> dict | None:
    """The converged low-regime cell of ``pair`` with the highest mean test top-1 (None before any is recorded)."""
    cells = [c for key, c in converged["regimes"]["low"]["cells"].items()
             if key.startswith(f"{pair}|") and c["mean"] is not None]
    return max(cells, key=lambda c: c["mean"]) if cells else None


def run(args: argparse.Namespace) -> dict:
    tsize = TUNE_SIZES["smoke" if args.smoke else "full"]
    if args.budget is not None:
        tsize = replace(tsize, budget=args.budget)
    size = SIZES[tsize.converged]
    out = Path(args.out or f"bench-out/tune-{'smoke' if args.smoke else 'full'}")
    out.mkdir(parents=True, exist_ok=True)
    store = Store(Path(args.results) if args.results else out / "results" if args.smoke else RESULTS)
    register_models()
    if args.smoke:
        ensure_smoke_teachers(out, size, store, args.device)
    missing = [key for key in dict.fromkeys(t for t, _ in PAIRS.values()) if teacher_dir(store, size, key) is None]
    if missing:
        raise SystemExit(
            f"the converged benchmark's teacher(s) {', '.join(missing)} are not in {store.root / 'teachers'} yet (or "
            "belong to another grid): `python bench/accuracy.py --converged` trains and commits them there; run this "
            "benchmark after they appear")
    regime = low_regime(size)
    rows = {}
    for pair, (teacher_key, student) in PAIRS.items():
        tune_dir = out / folder(pair)
        code = run_ofakd(tune_argv(out, pair, student, teacher_dir(store, size, teacher_key), regime, size, tsize,
                                   args.device))
        if code != 0:
            raise SystemExit(f"ofakd tune of {pair} failed (exit {code}); run the same command again to resume")
        finals = [tune_dir / "final" / f"s{seed}" for seed in size.seeds]
        if not all(finished(run) for run in finals):  # another worker (process) of this study runs them
            print(f"{pair}: another worker runs the final runs; run this command again once it is done")
            continue
        best = load_best(tune_dir)
        tops = [test_top1(run, size, args.device) for run in finals]
        rows[pair] = {"best": best, "test_top1": tops, "mean": statistics.fmean(tops),
                      "std": statistics.stdev(tops) if len(tops) > 1 else None, "cost": tuning_cost(tune_dir),
                      "epochs": tsize.epochs or regime.epochs}
    result = {"size": "smoke" if args.smoke else "full", "budget": tsize.budget, "holdout": tsize.holdout,
              "train_images": regime.train_subset, "seeds": list(size.seeds), "pairs": rows}
    return write_result(with_fixed(result, store, size), out)


def with_fixed(result: dict, store: Store, size: Size) -> dict:
    """``result`` with, per tuned pair, the best fixed method of the converged table as the store holds it now and
    Welch's t of the tuned runs against it."""
    converged = collect(store, size)
    result = {**result, "fixed": {}}
    for pair, row in result["pairs"].items():
        fixed = best_fixed(converged, pair)
        result["fixed"][pair] = fixed and {"variant": fixed["variant"], "mean": fixed["mean"], "std": fixed["std"],
                                           "top1": fixed["top1"], "test": welch(row["test_top1"], fixed["top1"])}
    return result


def report_only(args: argparse.Namespace) -> dict:
    """The table again from a finished benchmark's ``tune.json`` (the tuned runs as recorded) and the converged store
    as it is now: no study is opened, nothing trains, so it works on any machine and after format changes."""
    source = Path(args.report_only)
    try:
        result = json.loads(source.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read the tuning benchmark's result {source} ({error}); give the tune.json a finished "
                         "run wrote (bench/results/tune/tune.json is the committed one)") from None
    kind = result.get("size", "full") if isinstance(result, dict) else None
    if kind not in TUNE_SIZES or not isinstance(result.get("pairs"), dict):
        raise SystemExit(f"{source} is not a tuning benchmark's tune.json (its size is {kind!r}; it needs 'pairs'); "
                         "give the tune.json a finished run wrote")
    size = SIZES[TUNE_SIZES[kind].converged]
    store = Store(Path(args.results) if args.results else source.parent / "results" if kind == "smoke" else RESULTS)
    out = Path(args.out or source.parent)
    out.mkdir(parents=True, exist_ok=True)
    return write_result(with_fixed(result, store, size), out)


def write_result(result: dict, out: Path) -> dict:
    text = render(result)
    (out / "tune.md").write_text(text)
    (out / "tune.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(text)
    print(f"wrote {out / 'tune.md'} and {out / 'tune.json'}")
    return result


def load_best(tune_dir: Path) -> dict:
    """The tuned method, options and lr as best.yaml holds them."""
    from ofakd.config import load_config

    cfg = load_config(str(tune_dir / "best.yaml"))
    return {"method": cfg.method.name, "lr": cfg.train.lr, "options": cfg.method.options}


def render(result: dict) -> str:
    rows = []
    for pair, row in result["pairs"].items():
        fixed = result["fixed"].get(pair)
        tuned = f"{row['mean']:.2f}" + (f" ± {row['std']:.2f}" if row["std"] is not None else "")
        best = row["best"]
        test = fixed and fixed.get("test")
        cost = row["cost"]
        rows.append([
            pair, f"{best['method']}, lr {best['lr']:.3g}", tuned,
            MISSING if not fixed else f"{fixed['variant']}: {fixed['mean']:.2f}"
            + (f" ± {fixed['std']:.2f}" if fixed["std"] is not None else ""),
            MISSING if not test or "p" not in test else f"{test['diff']:+.2f} (p {test['p']:.3f})",
            f"{cost['trial_epochs']} + {cost['final_epochs']} ({(cost['trial_epochs'] + cost['final_epochs']) / row['epochs']:.1f} runs)",
        ])
    return "\n".join([
        f"# Tuning benchmark ({result['size']})",
        "",
        f"Low-data regime: students on {result['train_images']} training images; `ofakd tune` with a budget of "
        f"{result['budget']} trials scored on {result['holdout']} of them held out; the tuned configuration's final "
        f"runs on seeds {', '.join(map(str, result['seeds']))} (all {result['train_images']} images), test top-1 of "
        "their last epoch on the test images, beside the best fixed method of the converged table (`—`: not "
        "recorded yet). Cost: student-epochs of the trials + of the final runs (in full runs).",
        "",
        markdown_table(["pair", "tuned", "tuned test top-1", "best fixed (converged)", "tuned - fixed (Welch)",
                        "cost, student-epochs"], rows),
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, teachers trained here (the test's)")
    parser.add_argument("--out", help="working folder (default bench-out/tune-full or bench-out/tune-smoke)")
    parser.add_argument("--device", default="cpu", help="torch device of every run")
    parser.add_argument("--budget", type=int, help="trials per pair (default: 30; smoke: 3)")
    parser.add_argument("--results", help="the converged result store (default: bench/results/converged; smoke: "
                        "OUT/results)")
    parser.add_argument("--report-only", metavar="TUNE_JSON",
                        help="rewrite the table from this tune.json's tuned runs and the converged store as it is now "
                        "(nothing trains; writes beside it unless --out)")
    args = parser.parse_args(argv)
    return report_only(args) if args.report_only else run(args)


if __name__ == "__main__":
    main()
