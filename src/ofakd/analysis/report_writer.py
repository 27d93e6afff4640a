"""``write_report``: a markdown table and a curves PNG for a set of finished runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..run_folder.atomic import write_text, writing
from .report_plots import plot_curves
from .report_table import NAMED, runs_table, summary_table
from .runs import Run, differing_keys, find_runs, group_runs


@dataclass
class Report:
    """What :func:`write_report` wrote, and the runs it read."""

    markdown: Path
    curves: Path
    runs: list[Run]
    text: str


def render_markdown(runs: Sequence[Run], curves_name: str | None = "curves.png") -> str:
    """The report text: a table per configuration (seeds as mean ± std), then one row per run."""
    groups = group_runs(runs)
    differing = [f"`{key}`" for key in differing_keys(groups) if key not in NAMED]
    lines = [
        "# ofakd report",
        "",
        f"{len(runs)} run(s) in {len(groups)} configuration(s); runs whose resolved configs (config.yaml) agree "
        "in everything but the seed are seeds of one configuration (mean ± sample std). Top-1 and top-5 in %.",
        "",
        *([f"The configurations differ in {', '.join(differing)} (a column each).", ""] if differing else []),
        summary_table(groups),
        "## Runs",
        "",
        runs_table(groups),
    ]
    if curves_name:
        lines += ["## Curves", "", f"![accuracy and loss curves]({curves_name})", ""]
    return "\n".join(lines)


def write_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    markdown_name: str = "report.md",
    curves_name: str = "curves.png",
) -> Report:
    """Read finished runs (or folders of runs) and write ``out/report.md`` and ``out/curves.png``."""
    runs = find_runs(run_dirs)
    out = Path(out)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    curves = plot_curves(runs, out / curves_name)
    text = render_markdown(runs, curves_name)
    markdown = out / markdown_name
    write_text(markdown, text)
    return Report(markdown=markdown, curves=curves, runs=runs, text=text)
