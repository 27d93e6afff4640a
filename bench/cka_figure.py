"""One figure of the teacher-vs-student stage CKA heatmaps: a row per regime, a panel per student variant."""

from __future__ import annotations

from pathlib import Path


def plot(data: dict, size, path: Path) -> Path | None:
    """Heatmaps of ``data["cka"]`` (mean over seeds) with the values written in; None when there is no CKA yet."""
    entries = data.get("cka") or {}
    if not entries:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [r.key for r in size.regimes if any(e["regime"] == r.key for e in entries.values())]
    variants = [v for v in size.cka_variants if any(e["variant"] == v for e in entries.values())]
    fig, axes = plt.subplots(len(regimes), len(variants), figsize=(3.1 * len(variants), 2.9 * len(regimes)),
                             squeeze=False, constrained_layout=True)
    image = None
    for i, regime in enumerate(regimes):
        for j, variant in enumerate(variants):
            ax = axes[i][j]
            entry = entries.get(f"{regime}|{variant}")
            if entry is None:
                ax.axis("off")
                continue
            matrix = entry["matrix"]
            image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower")
            for r, row in enumerate(matrix):
                for c, value in enumerate(row):
                    ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if value > 0.6 else "white")
            ax.set_xticks(range(len(matrix[0])), [f"S{k + 1}" for k in range(len(matrix[0]))])
            ax.set_yticks(range(len(matrix)), [f"T{k + 1}" for k in range(len(matrix))])
            ax.set_title(f"{variant} ({regime}, {entry['seeds']} seed{'s' if entry['seeds'] > 1 else ''})", fontsize=9)
            if j == 0:
                ax.set_ylabel("teacher stage")
            if i == len(regimes) - 1:
                ax.set_xlabel("student stage")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    fig.suptitle(f"Teacher-vs-student stage CKA, {size.cka_pair} (Fashion-MNIST test images)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
