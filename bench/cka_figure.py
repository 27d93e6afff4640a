"""Teacher-vs-student stage CKA heatmaps: one figure per pair, a row per regime, a panel per student variant."""

from __future__ import annotations

from pathlib import Path


def plot(data: dict, size, path: Path) -> list[Path]:
    """Heatmaps of ``data["cka"]`` (mean over seeds) with the values written in, one PNG per CKA pair
    (``path`` with the pair in its name); none when there is no CKA yet. The colour scale spans the values
    shown (the same for every panel of a figure), so that 0.92 and 0.98 are told apart; the colour bar says
    its range."""
    entries = data.get("cka") or {}
    written = []
    for pair in size.cka_pairs:
        mine = {k: e for k, e in entries.items() if e["pair"] == pair}
        if mine:
            written.append(_plot_pair(pair, mine, size, path.with_name(f"{path.stem}-{pair.replace('->', '-to-')}{path.suffix}")))
    return written


def _plot_pair(pair: str, entries: dict, size, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [r.key for r in size.regimes if any(e["regime"] == r.key for e in entries.values())]
    variants = [v for v in size.cka_variants if any(e["variant"] == v for e in entries.values())]
    values = [v for e in entries.values() for row in e["matrix"] for v in row]
    low, high = min(values), max(values)
    if high - low < 1e-6:
        low, high = low - 0.01, high + 0.01
    fig, axes = plt.subplots(len(regimes), len(variants), figsize=(3.1 * len(variants), 2.9 * len(regimes)),
                             squeeze=False, constrained_layout=True)
    image = None
    for i, regime in enumerate(regimes):
        for j, variant in enumerate(variants):
            ax = axes[i][j]
            entry = entries.get(f"{pair}|{regime}|{variant}")
            if entry is None:
                ax.axis("off")
                continue
            matrix = entry["matrix"]
            image = ax.imshow(matrix, vmin=low, vmax=high, cmap="viridis", origin="upper")
            for r, row in enumerate(matrix):
                for c, value in enumerate(row):
                    ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if value > (low + high) / 2 else "white")
            ax.set_xticks(range(len(matrix[0])), [f"S{k + 1}" for k in range(len(matrix[0]))])
            ax.set_yticks(range(len(matrix)), [f"T{k + 1}" for k in range(len(matrix))])
            ax.set_title(f"{variant} ({regime}, {entry['seeds']} seed{'s' if entry['seeds'] > 1 else ''})", fontsize=9)
            if j == 0:
                ax.set_ylabel("teacher stage")
            if i == len(regimes) - 1:
                ax.set_xlabel("student stage")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=f"linear CKA (colour range {low:.2f}–{high:.2f})")
    fig.suptitle(f"Teacher-vs-student stage CKA, {pair} (Fashion-MNIST test images)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
