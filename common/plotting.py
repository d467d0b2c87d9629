"""Figures: every figure is written as PNG and PDF, atomically, with a non-interactive backend."""
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from common.io import atomic_path  # noqa: E402


def save_figure(fig, stem) -> list:
    """Write `fig` to `<stem>.png` and `<stem>.pdf`; returns the two paths.  The PDF carries no creation
    date, so the same figure gives the same bytes (reruns and resumed runs compare equal)."""
    stem = Path(stem)
    paths = []
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=150, bbox_inches="tight",
                        metadata={"CreationDate": None} if suffix == ".pdf" else None)
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


# --- training curves (Tiny Stories pipeline: cosine with theory against epoch)


def _layer_mean(values):
    """Mean over layers per log point; a point where no layer has a value (a relative error before its
    prediction becomes non-zero) stays a gap (NaN) instead of warning."""
    import numpy as np

    counts = np.isfinite(values).sum(0)
    return np.where(counts > 0, np.nansum(values, 0) / np.maximum(counts, 1), np.nan)


def fitted_limits(values, upper=None, pad: float = 0.06) -> tuple:
    """(low, high) of an axis fitted to the finite `values` with `pad` of their range on each side (a
    flat series gets ±0.01 of its level); `upper` caps the top (a cosine is at most 1)."""
    import numpy as np

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (0.0, 1.0 if upper is None else upper)
    low, high = float(finite.min()), float(finite.max())
    margin = pad * (high - low) if high > low else 0.01 * max(abs(high), 1e-12)
    top = high + margin if upper is None else min(high + margin, upper + 0.2 * margin)
    return low - margin, top


def training_curves(logs: list, stem, title=None) -> list:
    """training_curves_figure written to `<stem>.png/.pdf`."""
    return save_figure(training_curves_figure(logs, title), stem)


def training_curves_figure(logs: list, title=None):
    """Cosine-vs-epoch curves per weight kind (a line for the mean over layers and a band for their
    range), and a second panel of relative errors to the §3 prediction when the log has them.
    Reads the release's keys (`W_O_B_bar`, `layer_{l}_W_Q_bar`, `layer_{l}_V_B_bar_Phi_bar`) and
    ours.  The cosine axis is fitted to the cosines drawn (they often lie within a few hundredths of 1),
    and each panel's legend sits below it, off the curves."""
    import numpy as np

    from common.theory.weight_kinds import WEIGHT_KINDS, parse_log_key

    x = np.array([entry.get("epoch", entry.get("step", i)) for i, entry in enumerate(logs)], dtype=float)
    series, path_series = {}, {}   # (kind, is relative error) → [values per layer]
    for key in logs[0] if logs else {}:
        parsed = parse_log_key(key)
        if parsed:   # against the path-exact prediction (§10) drawn dashed beside the whole-corpus one
            values = [np.nan if e.get(key) is None else float(e[key]) for e in logs]
            (path_series if parsed.reference == "path" else series).setdefault(
                (parsed.kind, parsed.rel_err), []).append(values)
    if not series:
        raise ValueError("the log has no cosine keys (W_O_B_bar, layer_{l}_W_Q_bar, …)")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = []   # every cosine drawn (means, bands, path-exact means): the cosine axis is fitted to them
    colors = dict(zip([k.name for k in WEIGHT_KINDS], plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, relative in zip(axes, (False, True)):
        for weight_kind in WEIGHT_KINDS:
            kind, name, theory = weight_kind.name, weight_kind.role, weight_kind.symbol
            if (kind, relative) not in series:
                continue
            label = f"{name}  {kind} vs its prediction" if relative else f"{name}  cos({kind}, {theory})"
            values = np.array(series[kind, relative])
            if not relative:
                drawn += [values.ravel()] + [np.array(path_series.get((kind, relative), [])).ravel()]
            ax.plot(x, _layer_mean(values), color=colors[kind], label=label, marker="." if len(x) < 30 else None)
            if len(values) > 1:
                with warnings.catch_warnings():   # a point no layer has a value for stays a gap, silently
                    warnings.simplefilter("ignore", RuntimeWarning)
                    band = np.nanmin(values, 0), np.nanmax(values, 0)
                ax.fill_between(x, *band, color=colors[kind], alpha=0.25, linewidth=0)
            if (kind, relative) in path_series:
                ax.plot(x, _layer_mean(np.array(path_series[kind, relative])), color=colors[kind], linestyle="--",
                        label=f"{kind} vs its path-exact prediction")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="cosine with the leading-term matrix", title="alignment with theory")
    axes[0].set_ylim(*fitted_limits(np.concatenate(drawn), upper=1.0))
    below = dict(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    axes[0].legend(**below)
    if any(relative for _, relative in series):
        axes[1].set(ylabel="‖A − Â‖ / ‖Â‖", title="relative error to the §3 prediction", yscale="log")
        axes[1].legend(**below)
    else:
        axes[1].text(0.5, 0.5, "no relative errors in this log\n(release format)", ha="center", va="center",
                     transform=axes[1].transAxes)
        axes[1].set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)  # training curves
    return fig
