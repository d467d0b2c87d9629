"""The topic-structure question of docs/theory.md §11 put to the Taylor series of training (§14), for
topic_series.py.  In training on the LDA corpus W's same-topic − different-topic contrast follows its
leading term early and later turns negative.  Is the turn in the series' partial sums — an early-regime
effect the theory explains — or beyond the series' radius of convergence, where no partial sum speaks?

The contrast (common/theory/topic_measures.py: mean over same-topic pairs − mean over different-topic
pairs) is linear, so the contrast of the partial sum Σ_{k≤K} c_k τ^k of W^l is Σ_{k≤K} γ_k τ^k with
γ_k = contrast(c_k[W^l]): one scalar power series per layer.  Its partial sums are read beside the
trained run's contrast (topic_structure.py's log, τ = ηs) and beside the radius of the whole series
(common/theory/series.py `radius_estimates`).
"""
import json
from pathlib import Path

import torch

from common.config import Settings
from common.io import UserError
from common.theory.series import coefficient_norms, gradient_flow_series, radius_estimates
from common.theory.topic_measures import binned_means, contrast, pair_bins, vocabulary_topics
from common.theory.weight_kinds import KIND


class TopicSeriesConfig(Settings, script="topic_series.py"):
    """topic_series.py's settings: its hyperparameter block's names, types and defaults (common/config.py
    `Settings`; the block is the one home of each comment)."""


def read_structure(structure_dir):
    """(topic_structure.json's content, its data folder) of a finished topic_structure.py run."""
    from common.io import read_json
    folder = Path(structure_dir)
    if not (folder / "topic_structure.json").exists() or not (folder / "data").is_dir():
        raise UserError(f"{folder} holds no topic_structure.py run (topic_structure.json and data/); "
                        f"run topic_structure.py --out_dir={folder} first")
    return read_json(folder / "topic_structure.json", "topic-structure result"), folder / "data"


def contrast_coefficients(coefficients: list, bins: torch.Tensor, n_layers: int) -> dict:
    """{layer: [γ_1, …, γ_K]}, γ_k = contrast(c_k[W^l]) (0 below W's leading power)."""
    return {layer: [contrast(binned_means(c[f"layers.{layer}.W"], bins)) for c in coefficients]
                for layer in range(n_layers)}


def partial_sums(gammas: list, taus, up_to: int) -> list:
    """Σ_{k ≤ up_to} γ_k τ^k at each τ."""
    return [sum(g * tau ** (k + 1) for k, g in enumerate(gammas[:up_to])) for tau in taus]


def first_negative(taus, values):
    """The first τ at which a contrast that was positive turns negative (linear interpolation between
    the points around the sign change), or None."""
    previous = None
    for tau, value in zip(taus, values):
        if value is None:
            continue
        if previous is not None and previous[1] > 0 >= value:
            t0, v0 = previous
            return float(t0 + (tau - t0) * v0 / (v0 - value))
        previous = (tau, value)
    return None


def trained_contrast(structure: dict, layer: int):
    """(τ = ηs, contrast of the trained W^l) at each log point of the topic-structure run."""
    lr = structure["settings"]["lr"]
    points = [(lr * entry["step"], contrast(entry[f"W_layer_{layer}"])) for entry in structure["trained"]]
    return [t for t, _ in points], [c for _, c in points]


def tau_grid(tau_max: float) -> list:
    """Geometric, from tau_max/300 to tau_max."""
    return [tau_max * 10 ** (k / 50) for k in range(-124, 1)]


def run_topic_series(cfg: TopicSeriesConfig) -> dict:
    """The body of topic_series.py (see its docstring); returns the result written."""
    from common.corpus.lda import TABLE_FILE
    from common.device import resolve_device
    from common.io import atomic_directory, write_json
    from common.theory.model import AttentionOnlyTransformer
    from common.tiny.regime import series_subsample
    from common.tiny.training import TrainConfig, load_training_data

    if cfg.order <= KIND["W"].power:
        raise UserError(f"--order must be at least {KIND['W'].power + 1} (got {cfg.order}): W's leading term "
                        f"is τ^{KIND['W'].power}, and the question is about the terms beyond it")
    if cfg.series_sequences < 0 or cfg.series_chunk < 1:
        raise UserError(f"--series_sequences must be ≥ 0 and --series_chunk ≥ 1 "
                        f"(got {cfg.series_sequences}, {cfg.series_chunk})")
    structure, data_dir = read_structure(cfg.structure_dir)
    settings = structure["settings"]
    tokens, vocabulary = load_training_data(TrainConfig(data_dir=str(data_dir), seq_len=settings["seq_len"]))[:2]
    table = json.loads((data_dir / TABLE_FILE).read_text(encoding="utf-8"))
    bins = pair_bins(vocabulary_topics(vocabulary, table))
    n_layers = settings["n_layers"]
    chosen = series_subsample(len(tokens), cfg.series_sequences, cfg.seed)
    model = AttentionOnlyTransformer(len(vocabulary), settings["seq_len"], n_layers)
    coefficients = gradient_flow_series(model, tokens[chosen, :-1].long(), tokens[chosen, 1:].long(), cfg.order,
                                        chunk_size=cfg.series_chunk, device=resolve_device(cfg.device),
                                        progress=cfg.progress)
    norms = coefficient_norms(coefficients)
    total = [sum(n[k] ** 2 for n in norms.values()) ** 0.5 for k in range(cfg.order)]
    radius = radius_estimates(total)
    gammas = contrast_coefficients(coefficients, bins, n_layers)
    trained_taus = trained_contrast(structure, 0)[0]
    taus = tau_grid(max(trained_taus) if trained_taus else 1.0)
    layers = {}
    for layer, gamma in gammas.items():
        t, c = trained_contrast(structure, layer)
        layers[str(layer)] = {
            "contrast_coefficients": gamma,
            "contrast_radius": radius_estimates([abs(g) for g in gamma], KIND["W"].power),
            "partial_sum_turn": {str(K): first_negative(taus, partial_sums(gamma, taus, K))
                                 for K in range(KIND["W"].power, cfg.order + 1)},
            "trained_turn": first_negative(t, c)}
    result = {"structure_dir": str(cfg.structure_dir), "lr": settings["lr"], "order": cfg.order,
              "sequences": len(chosen), "of": len(tokens), "radius": radius, "layers": layers}
    with atomic_directory(cfg.out_dir) as tmp:
        write_json(tmp / "topic_series.json", result)
        plot_topic_series(result, structure, taus, tmp / "topic_series")
    return result


def plot_topic_series(result: dict, structure: dict, taus, stem) -> list:
    """One panel per layer: the trained W's contrast against τ = ηs (markers) and the series' partial
    sums at each order (lines), the radius estimate shaded beyond."""
    import numpy as np

    from common.plotting import plt, save_figure
    layers = sorted(result["layers"], key=int)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.6 * len(layers), 3.9), squeeze=False)
    radius = result["radius"]["ratio"]
    for ax, layer in zip(axes[0], layers):
        row = result["layers"][layer]
        t, c = trained_contrast(structure, int(layer))
        orders = sorted(int(K) for K in row["partial_sum_turn"])
        cmap = plt.get_cmap("viridis")
        for i, K in enumerate(orders):
            ax.plot(taus, partial_sums(row["contrast_coefficients"], taus, K), color=cmap(i / max(1, len(orders) - 1)),
                    linewidth=1.2 if K in (orders[0], orders[-1]) else 0.7,
                    label=f"series to τ^{K}" if K in (orders[0], orders[-1]) else None)
        ax.plot(t, c, color="C3", marker=".", linestyle="none", label=f"trained (η = {result['lr']:g})")
        if row["trained_turn"] is not None:
            ax.axvline(row["trained_turn"], color="C3", linestyle=":", linewidth=1, label="trained turns negative")
        if radius is not None:
            ax.axvspan(radius, max(taus), color="grey", alpha=0.15, label="beyond the series' radius")
        ax.axhline(0, color="grey", linewidth=0.5)
        largest = max([abs(v) for v in c if v] + [1e-300])
        ax.set_yscale("symlog", linthresh=10.0 ** np.floor(np.log10(max(1e-300, 1e-3 * largest))))
        ax.set(xscale="log", xlabel="τ = ηs", title=f"W, layer {layer}: same − different topic",
               ylim=(-10 * largest, 10 * largest))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"the contrast of W against the Taylor series of training (c_1 … c_{result['order']}, "
                 f"{result['sequences']:,} sequences)")
    fig.tight_layout()
    return save_figure(fig, stem)


def summary_lines(result: dict) -> list:
    fmt = lambda v: "—" if v is None else f"{v:.3g}"
    radius = result["radius"]
    lines = [f"series c_1 … c_{result['order']} on {result['sequences']:,} of {result['of']:,} sequences; radius of "
             f"convergence ≈ {fmt(radius['ratio'])} (two-step ratio; root {fmt(radius['root'])}, "
             f"Domb–Sykes {fmt(radius['domb_sykes'])})"]
    for layer, row in sorted(result["layers"].items(), key=lambda item: int(item[0])):
        turns = ", ".join(f"K={K}: {fmt(v)}" for K, v in row["partial_sum_turn"].items())
        lines.append(f"  W layer {layer}: trained contrast turns negative at τ ≈ {fmt(row['trained_turn'])}; "
                     f"partial sums turn at {turns}")
    return lines
