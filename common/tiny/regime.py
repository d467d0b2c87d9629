"""The end of the early regime (docs/theory.md §10): predicted from the statistics alone, measured on
training runs at several learning rates.

Predicted: for each weight kind with next-order terms (common/theory/leading_terms.py), the ratio
    ρ(τ) = ‖next-order terms‖ / ‖leading term‖       (continuous time τ = ηs)
estimates the relative error of the leading-term prediction; τ* is where ρ reaches the threshold.
ρ is a norm of a polynomial in τ with matrix coefficients, so it is evaluated from the Gram matrix of
the terms (one set of V×V inner products, then any number of τ for free).

Measured: the trainer logs each weight's relative error to its path-exact prediction
(`…_path_rel_err`, common/theory/path_exact.py), which is the higher-order terms alone; τ* is where the worst
layer's error first reaches the threshold (interpolated log-linearly between log points).
"""
import math

import torch

from common.theory.leading_terms import POWER_NAME, continuous_coefficients, next_order_matrices, theory_matrices
from common.theory.weight_kinds import KIND, WEIGHT_KINDS, parse_log_key



def predicted_ratio_curves(stats, n_layers: int, taus) -> dict:
    """{kind: [ρ(τ) for τ in taus]} for the kinds that have next-order terms."""
    curves = {}
    leading = theory_matrices(stats)
    for kind, terms in next_order_matrices(stats, n_layers).items():
        matrices = [m.double().reshape(-1) for _, m in terms]
        gram = torch.stack(matrices) @ torch.stack(matrices).T
        lead_norm = float(leading[kind].double().norm())
        curve = []
        for tau in taus:
            c = continuous_coefficients(tau)
            w = torch.tensor([c[name] for name, _ in terms], dtype=torch.float64)
            curve.append(float((w @ gram @ w).clamp_min(0).sqrt()) / (c[POWER_NAME[KIND[kind].power]] * lead_norm))
        curves[kind] = curve
    return curves


def first_crossing(taus, values, threshold: float):
    """The first τ at which `values` reaches `threshold`, interpolated linearly in log τ between the
    points around it (None when it never does; the first τ when it starts above)."""
    previous = None
    for tau, value in zip(taus, values):
        if value is not None and value >= threshold:
            if previous is None:
                return float(tau)
            (t0, v0) = previous
            fraction = (threshold - v0) / (value - v0)
            return float(math.exp(math.log(t0) + fraction * (math.log(tau) - math.log(t0))))
        if value is not None:
            previous = (tau, value)
    return None


def measured_errors(logs: list, lr: float) -> dict:
    """{kind: (taus, worst-layer path-exact relative error)} from a training log."""
    result = {}
    for entry in logs:
        per_kind = {}
        for key, value in entry.items():
            parsed = parse_log_key(key)
            if parsed and parsed.reference == "path" and parsed.rel_err and value is not None:
                per_kind[parsed.kind] = max(per_kind.get(parsed.kind, 0.0), float(value))
        for kind, value in per_kind.items():
            taus, values = result.setdefault(kind, ([], []))
            taus.append(lr * entry["step"])
            values.append(value)
    return result


def regime_summary(threshold: float, predicted: dict, taus, measured: dict) -> dict:
    """The regime.json content: per kind the predicted τ* and the measured τ* per learning rate."""
    summary = {"threshold": threshold}
    for kind in (k.name for k in WEIGHT_KINDS):
        curve = predicted.get(kind)
        summary[kind] = {
            "predicted_tau": first_crossing(taus, curve, threshold) if curve is not None else None,
            "measured_tau": {str(lr): (first_crossing(*errors[kind], threshold) if kind in errors else None)
                             for lr, errors in measured.items()}}
    return summary


def regime_markdown(summary: dict, lrs, n_layers: int) -> str:
    fmt = lambda v: "—" if v is None else f"{v:.3g}"
    lines = [f"# End of the early regime (threshold {summary['threshold']:g}, {n_layers} layers)", "",
             "τ = ηs at which each weight leaves its leading term: predicted from the statistics "
             "(‖next-order terms‖/‖leading term‖ reaches the threshold) and measured (the worst layer's "
             "relative error to the path-exact prediction reaches it). — : not reached, or no derived "
             "next-order term (docs/theory.md §10).", "",
             "| weight | predicted τ* | " + " | ".join(f"measured τ*, η = {lr:g}" for lr in lrs) + " |",
             "|---|---:|" + "---:|" * len(lrs)]
    for kind in (k.name for k in WEIGHT_KINDS):
        row = summary[kind]
        lines.append(f"| {kind} | {fmt(row['predicted_tau'])} | "
                     + " | ".join(fmt(row["measured_tau"][str(lr)]) for lr in lrs) + " |")
    return "\n".join(lines) + "\n"


def regime_figure(summary: dict, predicted: dict, taus, measured: dict, stem) -> list:
    """Per weight kind: relative error against τ (log-log), one curve per learning rate, the
    predicted ratio overlaid, the threshold and both τ* marked."""
    from common.plotting import plt, save_figure
    kinds = [k for k in WEIGHT_KINDS]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.8), squeeze=False)
    threshold = summary["threshold"]
    taus_measured = [t for errors in measured.values() for ts, _ in errors.values() for t in ts]
    for ax, kind in zip(axes[0], kinds):
        for i, (lr, errors) in enumerate(measured.items()):
            if kind.name in errors:
                color = f"C{i}"
                ax.plot(*errors[kind.name], color=color, marker=".", label=f"measured, η = {lr:g}")
                tau = summary[kind.name]["measured_tau"][str(lr)]
                if tau is not None:
                    ax.axvline(tau, color=color, linestyle=":", linewidth=1)
        if kind.name in predicted:
            shown = [(t, r) for t, r in zip(taus, predicted[kind.name]) if t <= 2 * max(taus_measured or [max(taus)])]
            ax.plot(*zip(*shown), color="black", linestyle="--", label="predicted ‖next‖/‖leading‖")
            if summary[kind.name]["predicted_tau"] is not None:
                ax.axvline(summary[kind.name]["predicted_tau"], color="black", linestyle="--", linewidth=1)
        ax.axhline(threshold, color="grey", linewidth=1)
        ax.set(xscale="log", yscale="log", xlabel="τ = ηs", title=f"{kind.role}  {kind.name}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("relative error to the path-exact prediction")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, stem)


def check_settings(lrs, threshold: float, tau_max: float) -> list:
    """The learning rates as floats, or a UserError naming what is wrong."""
    from common.io import UserError
    if not isinstance(lrs, (list, tuple)) or not lrs or not all(
            isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 for lr in lrs):
        raise UserError(f"--lrs must be a non-empty list of positive learning rates, e.g. --lrs=0.3,1.0,3.0 "
                        f"(got {lrs!r})")
    if not 0 < threshold < 1:
        raise UserError(f"--threshold must lie strictly between 0 and 1 (got {threshold})")
    if not tau_max > 0:
        raise UserError(f"--tau_max must be positive (got {tau_max})")
    return [float(lr) for lr in lrs]


def run_regime(config: dict) -> str:
    """tiny_regime.py's body: predict, train at each learning rate (common/tiny/training.py's Trainer, the
    path-exact tracker on, a log point every step), measure, write the four outputs into `out_dir`
    (replaced as a whole only when everything succeeded).  Returns a one-line summary."""
    from pathlib import Path

    from common.io import atomic_directory, write_json
    from common.theory.statistics import CorpusStatistics, compute_statistics
    from common.tiny.training import TrainConfig, Trainer, load_training_data

    from common.device import configure_numerics

    lrs = check_settings(config["lrs"], config["threshold"], config["tau_max"])
    settings = {k: config[k] for k in ("data_dir", "seq_len", "n_layers", "batch_size", "grad_accum",
                                       "max_sequences", "seed", "device", "progress", "deterministic")}
    configure_numerics(settings["deterministic"])
    tokens = load_training_data(TrainConfig.from_settings(settings))[0]
    vocab_size = int(tokens.max()) + 1
    steps_per_epoch = len(tokens) // (config["batch_size"] * config["grad_accum"])
    stats = compute_statistics(tokens[:, :-1].long(), tokens[:, 1:].long(), vocab_size,
                               keep=CorpusStatistics.TENSOR_FIELDS + ("context_input",))
    # the curve's τ grid: geometric, far enough past tau_max that a late predicted τ* is still found
    taus = [config["tau_max"] * 10 ** (k / 40) for k in range(-120, 81)]
    predicted = predicted_ratio_curves(stats, config["n_layers"], taus)
    with atomic_directory(config["out_dir"]) as tmp:
        measured = {}
        for lr in lrs:
            steps = max(1, math.ceil(config["tau_max"] / lr - 1e-9))
            cfg = TrainConfig.from_settings(dict(
                settings, out_dir=str(Path(tmp) / "runs" / f"lr_{lr:g}"), lr=lr, max_steps=steps,
                epochs=max(1, math.ceil(steps / max(steps_per_epoch, 1))), log_every=1 / max(steps_per_epoch, 1),
                save_every=0.0, keep_checkpoints=1, report_top=0, path_exact=True))
            trainer = Trainer(cfg)
            trainer.run()
            measured[lr] = measured_errors(trainer.logs, lr)
        summary = regime_summary(config["threshold"], predicted, taus, measured)
        write_json(Path(tmp) / "regime.json", summary)
        regime_figure(summary, predicted, taus, measured, Path(tmp) / "regime")
        (Path(tmp) / "regime.md").write_text(regime_markdown(summary, lrs, config["n_layers"]), encoding="utf-8")
    fmt = lambda v: "none" if v is None else f"{v:.3g}"
    return (f"regime in {config['out_dir']}: predicted τ* " + ", ".join(
        f"{k.name} {fmt(summary[k.name]['predicted_tau'])}" for k in WEIGHT_KINDS) + "; measured τ* (η = "
        + f"{lrs[0]:g}) " + ", ".join(f"{k.name} {fmt(summary[k.name]['measured_tau'][str(lrs[0])])}"
                                      for k in WEIGHT_KINDS))
