"""Figures: every figure is written as PNG and PDF, atomically, with a non-interactive backend."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from common.io import atomic_path  # noqa: E402


def save_figure(fig, stem) -> list:
    """Write `fig` to `<stem>.png` and `<stem>.pdf`; returns the two paths."""
    stem = Path(stem)
    paths = []
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


# --- heatmaps (Pythia pipeline: layer × revision, head × revision)
def heatmap_grid(panels, stem, ncols=None, xlabel="", ylabel="", title=None, cmap="viridis") -> list:
    """Panels of heatmaps on one shared colour scale, written to `<stem>.png/.pdf`.

    `panels`: list of (title, values [rows × columns], row labels, column labels). Cells carry their
    value when a panel is small enough to read."""
    import numpy as np

    ncols = ncols or min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    values = [np.asarray(p[1], dtype=float) for p in panels]
    vmin = min(0.0, min(float(np.nanmin(v)) for v in values))
    vmax = max(float(np.nanmax(v)) for v in values)
    width = max(3.0, 0.45 * max(v.shape[1] for v in values) + 1.5)
    height = max(2.5, 0.35 * max(v.shape[0] for v in values) + 1.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (panel_title, _, row_labels, column_labels), v in zip(axes.flat, panels, values):
        image = ax.imshow(v, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
        ax.set_xticks(range(len(column_labels)), column_labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=7)
        ax.set(title=panel_title, xlabel=xlabel, ylabel=ylabel)
        if v.size <= 300:
            for (i, j), value in np.ndenumerate(v):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if value < (vmin + vmax) / 2 else "black")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    if title:
        fig.suptitle(title, y=1.0 + 0.12 / nrows)
    return save_figure(fig, stem)
