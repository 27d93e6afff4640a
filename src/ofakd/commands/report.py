"""``ofakd report``: a markdown table and accuracy/loss curves of finished runs."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "compare finished runs: markdown table (configurations as rows, seeds as mean ± std) and curves PNG"
DESCRIPTION = (
    "Read the summary.json, config.yaml and metrics.jsonl of finished runs and write OUT/report.md (one row "
    "per configuration - runs alike in everything but the seed - with several seeds as mean ± std and a column "
    "for each setting in which the configurations differ, then one row per run) and OUT/curves.png (validation top-1, training and validation loss, one line per run). "
    "A RUN_DIR may also be a folder holding run folders. A tune folder (`ofakd tune --out DIR`) gets its own "
    "report: OUT/report.md (protocol, search space, best configuration, best per method, cost, every trial) "
    "with OUT/history.png and OUT/importance.png."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run folders (each with summary.json), or folders of them",
    )
    parser.add_argument("--out", default="report", metavar="DIR", help="folder for report.md and curves.png")
    parser.add_argument("--quiet", action="store_true", help="do not print the table")


def run(args: argparse.Namespace) -> int:
    from ..tuning.folder import is_tune_folder

    tune_dirs = [d for d in args.run_dirs if is_tune_folder(d)]
    if tune_dirs:
        return _tune_report(tune_dirs, args)
    from ..analysis.report_writer import write_report

    report = write_report(args.run_dirs, args.out)
    if not args.quiet:
        print(report.text)
    print(f"wrote {report.markdown} and {report.curves} ({len(report.runs)} runs)")
    return 0


def _tune_report(tune_dirs: list[str], args: argparse.Namespace) -> int:
    from ..errors import OfakdError
    from ..tuning.study_report import write_tune_report

    if len(args.run_dirs) > 1:
        raise OfakdError(f"{tune_dirs[0]} is a tune folder: report it alone (`ofakd report {tune_dirs[0]}`), or its "
                         f"final runs as runs (`ofakd report {tune_dirs[0]}/final ...`)")
    report = write_tune_report(tune_dirs[0], args.out)
    if not args.quiet:
        print(report.text)
    print(f"wrote {report.markdown}, {report.history} and {report.importance}")
    return 0
