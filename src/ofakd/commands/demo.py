"""``ofakd demo``: teacher -> three students on the bundled digits, in a few CPU minutes, no network."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..run_folder import atomic_write, write_json
from .cli_args import HelpFormatter

NAME = "demo"
HELP = "train a CNN teacher on digits, then a ViT student from scratch, with KD and with OFA-KD"
DESCRIPTION = """\
A self-contained demonstration on scikit-learn's bundled 8x8 digits upsampled to 32 px (no
download): train a small CNN teacher (timm test_byobnet), then a 4-block ViT student
(vit_tiny_patch16_224 at 32 px, patch 4) three ways - from scratch (vanilla), with KD and with
OFA-KD - and print their validation top-1 and time. Everything goes to OUT (runs/demo): one run
folder per model, accuracy.png (the curves), results.json. The recipe is the shipped 'demo'
recipe; the numbers are what they are on your machine.

Cost, measured on 2026-12-07 on 2 CPU cores shared with two benchmarks: --quick 8 s (a smoke run:
1 epoch each on 128 images); the full demo (6 + 3 x 12 epochs on 1438 images) 304 s, 224
CPU-seconds; longer on a busier machine. Stopped (Ctrl-C, SIGTERM), it continues with --resume: finished parts
are kept, a stopped one resumes from its last checkpoint.

examples:
  ofakd demo --quick
  ofakd demo
  ofakd demo --resume
  ofakd demo --out /tmp/demo --device cpu
"""

STUDENT_METHODS = ("vanilla", "kd", "ofa")
TEACHER_TRAIN = {"epochs": 6, "lr": 4.0e-3, "warmup_epochs": 1}
"""How the teacher's run differs from the recipe's ``train:`` (the recipe is tuned for the students)."""
METHOD_OPTIONS: dict[str, dict] = {"ofa": {"ofa_weight": 0.1}}
"""Method options per student run (the methods' defaults otherwise). OFA uses the branch-loss weight
the authors used on CIFAR (0.1); with the default 1.0 the OFA student of this demo scored lower."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="folder for the demo's runs, plot and results")
    parser.add_argument("--quick", action="store_true",
                        help="a seconds-long smoke run (1 epoch each on a small subset): checks the pipeline, not accuracy")
    parser.add_argument("--device", default="auto", metavar="DEVICE", help="cpu, cuda, mps or auto")
    parser.add_argument("--teacher-epochs", type=int, metavar="N", help=f"teacher epochs (default: {TEACHER_TRAIN['epochs']}; 1 with --quick)")
    parser.add_argument("--student-epochs", type=int, metavar="N", help="student epochs (default: the demo recipe's train.epochs; 1 with --quick)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped demo in OUT with the same options: finished parts are kept, a "
                        "stopped one resumes from its last.pt (default: start over, replacing OUT's runs)")


def run(args: argparse.Namespace) -> int:
    from ..config.load import load_config, read_recipe
    from ..run_folder import RunRecord

    out = Path(args.out)
    recipe = read_recipe("demo")
    common = [("run.out_dir", str(out)), ("train.device", args.device)]
    if args.quick:
        common += [("data.train_subset", 128), ("data.val_subset", 64), ("train.eval_teacher", False),
                   ("train.warmup_epochs", 0)]  # (one epoch each: a warm-up would be the whole run)
    teacher_epochs = args.teacher_epochs or (1 if args.quick else TEACHER_TRAIN["epochs"])
    student_epochs = args.student_epochs or (1 if args.quick else recipe["train"]["epochs"])

    teacher_cfg = load_config("demo", [
        ("student", recipe["teacher"]), ("teacher", {}), ("method", {"name": "vanilla"}),
        *[(f"train.{k}", v) for k, v in TEACHER_TRAIN.items()],
        *common, ("train.epochs", teacher_epochs), ("run.name", "teacher"),
    ])
    print(f"== teacher: {teacher_cfg.student.name} on digits ({teacher_epochs} epochs)", flush=True)
    rows = [_row("teacher", "-", _part(teacher_cfg, args))]
    teacher_section = RunRecord.at(out / "teacher").teacher_section()
    for method in STUDENT_METHODS:
        cfg = load_config("demo", [
            ("teacher", teacher_section), ("method", {"name": method, **METHOD_OPTIONS.get(method, {})}),
            *common, ("train.epochs", student_epochs), ("run.name", f"student-{method}"),
        ])
        print(f"== student {cfg.student.name}: {method} ({student_epochs} epochs)", flush=True)
        rows.append(_row(f"student ({method})", method, _part(cfg, args)))

    table = _table(rows)
    print()
    print(table)
    for method, options in METHOD_OPTIONS.items():
        print(f"{method} options: {', '.join(f'{k} {v}' for k, v in options.items())} (the rest: defaults)")
    plot = _plot(out, [r["run"] for r in rows])
    write_json(out / "results.json", rows)
    print(f"\nruns, curves and results in {out}/ (accuracy plot: {plot})")
    return 0


def _part(cfg, args: argparse.Namespace) -> dict:
    """Train one part of the demo and return its summary. With ``--resume``: a finished run of the same config
    is kept as it is, a stopped one continues from its last.pt. A signal stops the demo naming ``--resume``."""
    from ..engine import fit
    from ..engine.preemption import Interrupted
    from ..run_folder import RunRecord

    run = RunRecord.at(Path(cfg.run.out_dir) / cfg.run.name)
    resume = None
    if args.resume and run.has_checkpoint:
        summary = run.summary() if run.has_summary else {}
        if summary.get("complete") and _same_config(run, cfg):
            print(f"{run.path}: finished before, kept", flush=True)
            return summary
        resume = run.path
    try:
        return fit(cfg, resume=resume, overwrite=resume is None)
    except Interrupted as err:
        same = [f"--out {args.out}", "--quick" if args.quick else "",
                f"--teacher-epochs {args.teacher_epochs}" if args.teacher_epochs else "",
                f"--student-epochs {args.student_epochs}" if args.student_epochs else ""]
        again = " ".join(["ofakd demo", *filter(None, same), "--resume"])
        raise Interrupted(f"{err}; or continue the whole demo with `{again}`") from err


def _same_config(run, cfg) -> bool:
    """Whether ``run`` (a RunRecord) was configured as ``cfg`` (the device aside); an error naming the fix if not."""
    from ..config.load import validate
    from ..errors import ConfigError

    saved = validate(run.config())
    if saved.model_copy(update={"train": saved.train.model_copy(update={"device": cfg.train.device})}) != cfg:
        raise ConfigError(f"{run.path} holds a demo run with other options (--quick, epochs); pass the same "
                          "options with --resume, or run without --resume to start over")
    return True


def _row(label: str, method: str, summary: dict) -> dict:
    return {
        "model": label,
        "arch": summary["student"],
        "method": method,
        "top1": summary["best_top1"],
        "final_top1": summary["final_top1"],
        "epochs": summary["epochs"],
        "time_s": summary["wall_time_s"],
        "params": summary["student_params"],
        "run": summary["name"],
    }


def _table(rows: list[dict]) -> str:
    head = f"{'model':<20} {'architecture':<22} {'params':>8} {'epochs':>6} {'best top-1':>10} {'time':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        top1 = "-" if r["top1"] is None else f"{r['top1']:.2f}"
        lines.append(f"{r['model']:<20} {r['arch']:<22} {r['params'] / 1e6:>7.2f}M {r['epochs']:>6} {top1:>10} "
                     f"{r['time_s']:>7.0f}s")
    return "\n".join(lines)


def _plot(out: Path, runs: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..run_folder import RunRecord

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in runs:
        evals = [r for r in RunRecord.at(out / name).metrics() if r.get("kind") == "eval"]
        ax.plot([r["epoch"] for r in evals], [r["top1"] for r in evals], marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("ofakd demo: digits, 32 px")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out / "accuracy.png"
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)
    return path
