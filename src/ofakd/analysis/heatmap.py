"""Heatmap PNG of a CKA matrix: layer names on the axes, a colour bar, values in the cells."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from ..run_folder.atomic import atomic_write  # noqa: E402
from .result import CKAResult  # noqa: E402


def heatmap_figsize(rows: int, cols: int) -> tuple[float, float]:
    """Figure size in inches for a rows × cols matrix (room for labels and the colour bar)."""
    cell = 0.8 if max(rows, cols) <= 8 else max(0.35, 6.4 / max(rows, cols))
    return (round(3.2 + cell * cols, 2), round(2.4 + cell * rows, 2))


def colour_range(matrix: np.ndarray) -> tuple[float, float]:
    """(low, high) of the colour scale: the finite values' own range, so that 0.92 and 0.98 get different colours
    (a fixed 0-1 scale paints them alike); widened to 0.01 around a single value, [0, 1] when none is finite."""
    finite = matrix[np.isfinite(matrix)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low < 0.01:
        middle = (low + high) / 2
        low, high = middle - 0.005, middle + 0.005
    return low, high


def plot_cka_heatmap(
    result: CKAResult,
    path: str | Path,
    *,
    dpi: int = 100,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
    cmap: str = "magma",
    annotate: bool = True,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Write ``result`` as a heatmap PNG: rows model A's layers in the console table's order (the first at the top),
    columns model B's.

    The image is exactly ``figsize × dpi`` pixels (``figsize`` defaults to :func:`heatmap_figsize`). The colour
    scale spans ``value_range`` (default: the values' own range, :func:`colour_range`), which the title states;
    NaN cells are blank.
    """
    rows, cols = result.matrix.shape
    figsize = figsize or heatmap_figsize(rows, cols)
    low, high = value_range or colour_range(result.matrix)
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(result.matrix, cmap=cmap, vmin=low, vmax=high, origin="upper", aspect="auto")
    rotate = cols > 4 or any(len(name) > 8 for name in result.names_b)
    ax.set_xticks(
        range(cols), result.names_b, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_yticks(range(rows), result.names_a)
    ax.set_xlabel(result.model_b)
    ax.set_ylabel(result.model_a)
    samples = f", {result.num_samples} samples" if result.num_samples else ""
    ax.set_title(title or f"Linear CKA ({result.layers}{samples}); colours span {low:.3f}-{high:.3f}")
    fig.colorbar(image, ax=ax, label=f"CKA ({low:.3f}-{high:.3f})")
    if annotate:
        cell_inches = min((figsize[0] - 3.2) / cols, (figsize[1] - 2.4) / rows)
        size = max(4.0, min(10.0, cell_inches * 72.0 / 3.2))
        for i in range(rows):
            for j in range(cols):
                value = result.matrix[i, j]
                if math.isnan(value):
                    continue
                colour = "black" if (value - low) / (high - low) > 0.6 else "white"  # dark text on the bright end
                ax.text(j, i, f"{value:.2f}" if high - low >= 0.1 else f"{value:.3f}", ha="center", va="center",
                        color=colour, fontsize=size)
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))  # a failed write: 74, old file kept
    return path
