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
