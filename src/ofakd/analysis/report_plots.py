"""PNG of accuracy and loss curves of finished runs, one line per run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..run_folder.atomic import atomic_write  # noqa: E402
from .runs import Run  # noqa: E402

PANELS = (
    ("Validation top-1 (%)", lambda run: run.eval_curve("top1")),
    ("Training loss (epoch mean)", lambda run: run.epoch_train_loss()),
    ("Validation loss", lambda run: run.eval_curve("loss")),
)


def run_label(run: Run) -> str:
    """Legend label: the run name and its seed."""
    return run.name if run.seed is None else f"{run.name} (seed {run.seed})"


def plot_curves(
    runs: Sequence[Run], path: str | Path, *, dpi: int = 100, figsize: tuple[float, float] | None = None
) -> Path:
    """Write validation top-1, training loss and validation loss against epoch, one line per run.

    Runs of one configuration (seeds) share a colour and differ in line style; the
    legend names each run. The image is ``figsize × dpi`` pixels.
    """
    figsize = figsize or (15.0, 4.8 + 0.25 * ((len(runs) + 2) // 3))
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    colours = matplotlib.colormaps["tab10" if len(runs) <= 10 else "tab20"]
    keys: list[tuple] = []
    styles = ("-", "--", ":", "-.")
    handles = []
    for index, run in enumerate(runs):
        if run.key not in keys:
            keys.append(run.key)
        group = keys.index(run.key)
        seed_rank = sum(1 for other in runs[:index] if other.key == run.key)
        colour = colours(group % colours.N)
        style = styles[seed_rank % len(styles)]
        for ax, (_, curve) in zip(axes, PANELS):
            xs, ys = curve(run)
            if xs:
                ax.plot(xs, ys, style, color=colour, marker="o", markersize=3, linewidth=1.5)
        handles.append(Line2D([], [], color=colour, linestyle=style, marker="o", markersize=3))
    for ax, (title, _) in zip(axes, PANELS):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    if runs:
        fig.legend(
            handles,
            [run_label(r) for r in runs],
            loc="outside lower center",
            ncols=min(3, len(runs)),
            fontsize="small",
        )
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    return path
