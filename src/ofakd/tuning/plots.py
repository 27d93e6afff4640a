"""The tuning's figures: optimisation history and parameter importances (PNG, matplotlib).

Importances are Optuna's (fANOVA, :func:`optuna.importance.get_param_importances`): over every complete trial for
the parameters all of them share (the method and the lr), and per method over its own complete trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import optuna  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from ..run_folder.atomic import atomic_write  # noqa: E402

MIN_TRIALS_FOR_IMPORTANCE = 3


def plot_history(trials: Sequence[FrozenTrial], path: Path) -> Path:
    """Holdout top-1 of each trial by number (pruned ones at their last epoch, as crosses), a colour per method,
    and the best complete trial so far as a line."""
    fig = Figure(figsize=(9, 4.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    methods = list(dict.fromkeys(t.user_attrs.get("method", "?") for t in trials))
    colours = matplotlib.colormaps["tab10"]
    for k, method in enumerate(methods):
        for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
            shown = [t for t in trials if t.user_attrs.get("method") == method and t.state == state
                     and t.value is not None]
            if shown:
                ax.scatter([t.number for t in shown], [t.value for t in shown], marker=marker, color=colours(k % 10),
                           label=f"{method}{' (pruned)' if state == TrialState.PRUNED else ''}")
    best, xs, ys = None, [], []
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and t.value is not None:
            best = t.value if best is None else max(best, t.value)
        if best is not None:
            xs.append(t.number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", linewidth=1.2, label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("holdout top-1 (%)")
    ax.set_title("Optimisation history")
    ax.grid(True, alpha=0.3)
    if methods:
        ax.legend(fontsize="small", loc="lower right")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def importances(trials: Sequence[FrozenTrial], skip: Sequence[str] = ()) -> dict[str, float] | None:
    """fANOVA importance of each parameter of the complete ``trials`` but ``skip`` (conditional ones included);
    None when there are too few trials to say."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    params = sorted({p for t in complete for p in t.params if p not in skip})
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE or not params:
        return None
    study = optuna.create_study(direction="maximize")
    study.add_trials(complete)
    try:
        found = optuna.importance.get_param_importances(
            study, params=params, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # no parameter shared by all, or no variation to explain
        return None
    return dict(found) or None


def plot_importances(panels: dict[str, dict[str, float]], path: Path) -> Path:
    """One bar chart per panel (``{"all trials": {...}, "kd": {...}}``) of parameter -> importance."""
    shown = {title: values for title, values in panels.items() if values}
    fig = Figure(figsize=(4.2 * max(len(shown), 1), 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, max(len(shown), 1), squeeze=False)[0]
    if not shown:
        axes[0].text(0.5, 0.5, f"too few complete trials\n(at least {MIN_TRIALS_FOR_IMPORTANCE} per panel)",
                     ha="center", va="center")
        axes[0].set_axis_off()
    for ax, (title, values) in zip(axes, shown.items()):
        keys = sorted(values, key=values.get)
        ax.barh(keys, [values[k] for k in keys], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_title(title)
        ax.set_xlabel("importance (fANOVA)")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path
