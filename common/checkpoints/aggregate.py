"""Several seeds of one suite (docs/theory.md §15): the layer similarities of every model, aggregated per
revision, layer and similarity, with a 95% t-interval over the models.

For the n models that have a revision:
    mean = (1/n) Σ x_i,   std = ( Σ (x_i − mean)² / (n − 1) )^{1/2},
    ci95 = mean ± t_{0.975, n−1} · std / √n
(Student's t over seeds: the models are treated as independent draws of the training run; with n = 1
there is no spread, and std and ci95 are null).  t_{p, ν} is found by bisection on the t distribution's
cumulative distribution function, integrated with Simpson's rule (nothing beyond numpy).

aggregate.json:
    {"models": [names], "interval": "…", "missing": {revision: [models without it]},
     "revisions": {revision: {"layer_0": {"attention": {"mean", "std", "ci95": [low, high], "n"},
                                          "no_mlp": …, "embedding": …}, …}}}
A revision some model lacks is kept, with its n, and listed under "missing"; the figures mark it.
Figures: aggregate_heatmaps (per similarity, the layer × revision mean and the interval's width beside it)
and aggregate_curves (per layer, each similarity over revisions with its interval as a band).
"""
import functools
import math
from pathlib import Path

from common.checkpoints.results import KINDS, TITLES, read_layer_results
from common.checkpoints.revisions import sort_revisions
from common.io import read_json, write_json

INTERVAL = "95% t-interval over models: mean ± t(0.975, n−1)·std/√n, std with n − 1; null when n = 1"


def t_cdf(t: float, df: int, intervals: int = 4000) -> float:
    """P(T ≤ t) for Student's t with `df` degrees of freedom: ½ + ∫₀ᵗ pdf, by Simpson's rule."""
    import numpy as np

    if t < 0:
        return 1.0 - t_cdf(-t, df, intervals)
    x = np.linspace(0.0, t, intervals + 1)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
    weights = np.ones(intervals + 1)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return 0.5 + float((weights * pdf).sum()) * t / (3 * intervals)


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """t_{p, df} (p > ½) by bisection on t_cdf."""
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def interval(values: list) -> dict:
    """{mean, std, ci95, n} of the values (module docstring)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": n}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def aggregate_layer_results(model_dirs: dict) -> dict:
    """The aggregate of {model name: its results folder} (module docstring's shape)."""
    per_model = {model: read_layer_results(folder) for model, folder in model_dirs.items()}
    revisions = sort_revisions({r for results in per_model.values() for r in results["attention"]})
    aggregate = {"models": list(model_dirs), "interval": INTERVAL, "missing": {}, "revisions": {}}
    for revision in revisions:
        having = [m for m in per_model if revision in per_model[m]["attention"]]
        if len(having) < len(per_model):
            aggregate["missing"][revision] = [m for m in per_model if m not in having]
        layers = len(per_model[having[0]]["attention"][revision])
        aggregate["revisions"][revision] = {
            f"layer_{l}": {kind: interval([per_model[m][kind][revision][l] for m in having]) for kind in KINDS}
            for l in range(layers)}
    return aggregate


def _label(revision: str, aggregate: dict) -> str:
    missing = aggregate["missing"].get(revision)
    return f"{revision} (n={len(aggregate['models']) - len(missing)})" if missing else revision


def plot_aggregate(aggregate: dict, output_dir) -> list:
    """aggregate_heatmaps and aggregate_curves (PNG and PDF) in `output_dir`."""
    import numpy as np

    from common.plotting import plt, save_figure

    revisions = list(aggregate["revisions"])
    layers = len(aggregate["revisions"][revisions[0]])
    labels = [_label(r, aggregate) for r in revisions]
    value = lambda kind, field: np.array(
        [[_field(aggregate["revisions"][r].get(f"layer_{l}", {}).get(kind), field) for r in revisions]
         for l in range(layers)], dtype=float)
    n_models = len(aggregate["models"])
    width = max(4.0, 0.45 * len(revisions) + 2)
    fig, axes = plt.subplots(len(KINDS), 2, figsize=(2 * width, 2.2 * len(KINDS) + 0.35 * layers * len(KINDS)),
                             squeeze=False)
    for row, kind in enumerate(KINDS):
        for column, (field, cmap, title) in enumerate((("mean", "viridis", "mean"),
                                                        ("width", "magma", "width of the 95% interval"))):
            ax = axes[row, column]
            data = value(kind, field)
            image = ax.imshow(data, aspect="auto", origin="lower", cmap=cmap)
            ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(layers), [str(l) for l in range(layers)], fontsize=7)
            ax.set(title=f"{TITLES[kind]}: {title}", xlabel="revision", ylabel="layer")
            fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"{n_models} models: rsa with the leading-term matrices; {INTERVAL}", fontsize=9)
    fig.tight_layout()
    paths = save_figure(fig, Path(output_dir) / "aggregate_heatmaps")

    fig, axes = plt.subplots(1, layers, figsize=(max(5.0, 0.35 * len(revisions) + 2) * layers, 3.6), squeeze=False)
    x = np.arange(len(revisions))
    partial = np.array([r in aggregate["missing"] for r in revisions])
    for l, ax in enumerate(axes[0]):
        for kind in KINDS:
            mean, low, high = (value(kind, f)[l] for f in ("mean", "low", "high"))
            line, = ax.plot(x, mean, label=TITLES[kind], marker="o", markersize=3)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            if partial.any():   # revisions some model lacks: hollow markers
                ax.plot(x[partial], mean[partial], linestyle="none", marker="o", markersize=8,
                        markerfacecolor="none", markeredgecolor="black")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set(title=f"layer {l}", xlabel="revision", ylabel="rsa (mean over models)")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{n_models} models, band: {INTERVAL}" + ("; circled: revisions some model lacks"
                                                            if partial.any() else ""), fontsize=9)
    fig.tight_layout()
    return paths + save_figure(fig, Path(output_dir) / "aggregate_curves")


def _field(entry, field: str) -> float:
    if entry is None:
        return float("nan")
    if field == "mean":
        return entry["mean"]
    if entry["ci95"] is None:
        return float("nan") if field == "width" else entry["mean"]
    low, high = entry["ci95"]
    return {"width": high - low, "low": low, "high": high}[field]


def plot_aggregate_results(results_dir) -> list:
    """The two aggregate figures again from {results_dir}/aggregate.json."""
    return plot_aggregate(read_json(Path(results_dir) / "aggregate.json", "aggregate"), results_dir)


def write_aggregate(output_dir, model_dirs: dict) -> list:
    """{output_dir}/aggregate.json and its two figures; returns the paths."""
    aggregate = aggregate_layer_results(model_dirs)
    path = Path(output_dir) / "aggregate.json"
    write_json(path, aggregate)
    return [path] + plot_aggregate(aggregate, output_dir)
