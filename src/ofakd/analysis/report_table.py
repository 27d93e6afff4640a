"""Markdown tables of finished runs: one row per configuration, seeds as mean ± std, a column for each setting
in which the configurations differ (``method.eps``, ``train.lr``, ...)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from .runs import GROUP_KEYS, RunGroup, differing_keys

MISSING = "—"


def mean_std(values: Sequence[float]) -> tuple[float, float | None] | None:
    """(mean, sample standard deviation) of the values; std is None for one value; None for none."""
    if not values:
        return None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def fmt_number(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def fmt_count(value: float) -> str:
    """Parameter counts: 11.69M, 312.5k, 0."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def fmt_duration(seconds: float) -> str:
    """Wall time: 42.0s, 3m 05s, 2h 07m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_mean_std(
    values: Sequence[float], fmt: Callable[[float], str] = fmt_number, collapse_equal: bool = False
) -> str:
    """``mean ± std`` over seeds: just the value for one run (or equal values with
    ``collapse_equal``), ``—`` for none."""
    stats = mean_std(values)
    if stats is None:
        return MISSING
    mean, std = stats
    if std is None or (collapse_equal and all(v == values[0] for v in values)):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


NAMED = ("method.name", "teacher.name", "student.name", "data.name")
"""Settings the fixed columns (method, teacher, student, dataset) already show."""


def setting_text(value) -> str:
    """A config value as YAML flow text: ``[1.0, 1.5]``, ``{img_size: 32}``, ``null``, ``0.1``."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(setting_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {setting_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def setting_columns(groups: Sequence[RunGroup]) -> list[tuple[str, Callable[[RunGroup], str]]]:
    """One (header, cell) column per setting in which the groups differ; ``—`` where a group has no such key."""
    return [
        (key, lambda g, key=key: _text(setting_text(g.settings[key])) if key in g.settings else MISSING)
        for key in differing_keys(groups) if key not in NAMED
    ]


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(value).replace("|", "\\|")


# (header, cell of a group) for the summary table.
COLUMNS: list[tuple[str, Callable[[RunGroup], str]]] = [
    ("method", lambda g: _text(g.config["method"])),
    ("teacher", lambda g: _text(g.config["teacher"])),
    ("student", lambda g: _text(g.config["student"])),
    ("dataset", lambda g: _text(g.config["dataset"])),
    ("seeds", lambda g: ", ".join(_text(s) for s in g.seeds)),
    ("best top-1", lambda g: fmt_mean_std(g.values("best_top1"))),
    ("final top-1", lambda g: fmt_mean_std(g.values("final_top1"))),
    ("best top-5", lambda g: fmt_mean_std(g.values("best_top5"))),
    ("final top-5", lambda g: fmt_mean_std(g.values("final_top5"))),
    ("student params", lambda g: fmt_mean_std(g.values("student_params"), fmt_count, True)),
    ("branch params", lambda g: fmt_mean_std(g.values("branch_params"), fmt_count, True)),
    ("epochs", lambda g: fmt_mean_std(g.values("epochs"), lambda v: f"{v:g}", True)),
    ("wall time", lambda g: fmt_mean_std(g.values("wall_time_s"), fmt_duration)),
    ("images/s", lambda g: fmt_mean_std(g.values("images_per_s"), lambda v: f"{v:.0f}")),
]

# (header, cell of a run) for the per-run table.
RUN_COLUMNS: list[tuple[str, Callable]] = [
    ("run", lambda r: _text(r.name)),
    ("method", lambda r: _text(r.summary.get("method"))),
    ("seed", lambda r: _text(r.seed)),
    ("best top-1", lambda r: _cell(r.summary.get("best_top1"))),
    ("final top-1", lambda r: _cell(r.summary.get("final_top1"))),
    ("epochs", lambda r: _text(r.summary.get("epochs"))),
    ("folder", lambda r: _text(r.path)),
]


def _cell(value) -> str:
    return (
        fmt_number(float(value))
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else MISSING
    )


def table_rows(groups: Sequence[RunGroup]) -> list[dict[str, str]]:
    """The summary table as dicts ``{header: cell}``, one per group: the named columns, the differing
    settings, then the results."""
    named = len(GROUP_KEYS)
    columns = [*COLUMNS[:named], *setting_columns(groups), *COLUMNS[named:]]
    return [{header: cell(group) for header, cell in columns} for group in groups]


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; numeric-looking columns are right-aligned."""
    text = ("method", "teacher", "student", "dataset", "run", "folder")
    align = ["---" if h in text or "." in h else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def summary_table(groups: Sequence[RunGroup]) -> str:
    """Markdown table, one row per configuration; seeds of one configuration as mean ± std."""
    rows = table_rows(groups)
    headers = list(rows[0]) if rows else [h for h, _ in COLUMNS]
    return markdown(headers, [[row[h] for h in headers] for row in rows])


def runs_table(groups: Sequence[RunGroup]) -> str:
    """Markdown table, one row per run (in group order), with the differing settings after the method."""
    columns = setting_columns(groups)
    headers = [*[h for h, _ in RUN_COLUMNS[:2]], *[h for h, _ in columns], *[h for h, _ in RUN_COLUMNS[2:]]]
    rows = [[*[cell(run) for _, cell in RUN_COLUMNS[:2]], *[cell(g) for _, cell in columns],
             *[cell(run) for _, cell in RUN_COLUMNS[2:]]] for g in groups for run in g.runs]
    return markdown(headers, rows)
