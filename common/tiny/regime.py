"""The end of the early regime (docs/theory.md §10, §14): predicted from the Taylor series of training,
measured on training runs at several learning rates.

Predicted: the series θ(τ) = Σ c_k τ^k of full-batch gradient flow on the training sequences (or a
seeded subsample of them; common/theory/series.py) gives, for every weight (each kind, each layer),
    ρ(τ) = ‖Σ_{j>p} c_j τ^j‖ / ‖c_p τ^p‖          (p: the kind's leading power)
the remainder beyond the leading term relative to it: the predicted relative error of the leading-term
prediction.  A kind's τ* is where its worst layer's ρ reaches the threshold.  The growth of the
coefficients estimates the radius of convergence (`radius_estimates`): where the series of training
stops converging, an end of the early regime that needs no threshold.

Measured: the trainer logs each weight's relative error to its path-exact prediction
(`…_path_rel_err`, common/theory/path_exact.py), which is the higher-order terms alone; τ* is where the
worst layer's error first reaches the threshold (interpolated log-linearly between log points).

Suggested: the learning rate and step count of a run that reaches a chosen fraction of the predicted end
of the early regime (the earliest kind's τ*), in `suggest_steps` steps, as a command to paste.
"""
import math
import time
from dataclasses import asdict

import torch

from common.config import Settings
from common.io import UserError
from common.theory.series import (coefficient_norms, gradient_flow_series, kind_of, layer_of, radius_estimates,
                                  remainder_ratio)
from common.theory.weight_kinds import WEIGHT_KINDS, model_variant, parse_log_key, weight_kinds


class RegimeConfig(Settings, script="tiny_regime.py"):
    """tiny_regime.py's settings: its hyperparameter block's names, types and defaults (common/config.py
    `Settings`; the block is the one home of each comment)."""


def tau_grid(tau_max: float) -> list:
    """The predicted curves' τ grid: geometric, from tau_max/1000 to 100 × tau_max (a late τ* is still found)."""
    return [tau_max * 10 ** (k / 40) for k in range(-120, 81)]


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


def predicted_curves(coefficients: list, taus, variant: str = "residual") -> dict:
    """{kind: {layer (None for W_O): [ρ(τ) for τ in taus]}} from the series' coefficients of a model
    `variant` (common/theory/weight_kinds.py: the leading power of each kind); a kind the variant does not
    train (W_O frozen to the identity) has no curve."""
    curves = {kind.name: {} for kind in WEIGHT_KINDS}
    for name in coefficients[0]:
        curves[kind_of(name, variant).name][layer_of(name)] = remainder_ratio(coefficients, name, taus, variant)
    return curves


def worst_layer(curves: dict) -> list:
    """The largest ρ over the layers at each τ (what the measured worst-layer error is compared with)."""
    return [max(values) for values in zip(*curves.values())]


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


def kind_norms(norms: dict, kind: str) -> list:
    """‖c_k‖ of every weight of one kind together (all layers); [] when the model has none."""
    names = [name for name in norms if name.rsplit(".", 1)[-1] == kind]
    return [math.sqrt(sum(norms[name][k] ** 2 for name in names)) for k in range(len(norms[names[0]]))] if names else []


def regime_summary(threshold: float, coefficients: list, taus, measured: dict, series: dict,
                   variant: str = "residual") -> dict:
    """The regime.json content: per kind the predicted τ* (worst layer, and each layer), the measured
    τ* per learning rate, the radius estimates and the coefficient norms of its weights; the
    whole-model radius and the series' settings (`series`: order, sequences) beside them.  A kind the
    model `variant` does not train (W_O frozen to the identity) has nulls."""
    curves = predicted_curves(coefficients, taus, variant)
    norms = coefficient_norms(coefficients)
    total = [math.sqrt(sum(n[k] ** 2 for n in norms.values())) for k in range(len(coefficients))]
    summary = {"threshold": threshold, "variant": variant}
    powers = {kind.name: kind.power for kind in weight_kinds(variant)}
    for kind in WEIGHT_KINDS:
        layers = curves[kind.name]
        if not layers:
            summary[kind.name] = {"predicted_tau": None, "predicted_tau_layers": [],
                                  "measured_tau": {str(lr): None for lr in measured},
                                  "radius": radius_estimates([]), "coefficient_norms": {}}
            continue
        summary[kind.name] = {
            "predicted_tau": first_crossing(taus, worst_layer(layers), threshold),
            "predicted_tau_layers": [first_crossing(taus, layers[layer], threshold) for layer in sorted(
                layers, key=lambda l: -1 if l is None else l)],
            "measured_tau": {str(lr): (first_crossing(*errors[kind.name], threshold) if kind.name in errors else None)
                             for lr, errors in measured.items()},
            "radius": radius_estimates(kind_norms(norms, kind.name), powers[kind.name]),
            "coefficient_norms": {name: values for name, values in norms.items()
                                  if name.rsplit(".", 1)[-1] == kind.name}}
    summary["radius"] = radius_estimates(total)
    summary["series"] = series
    return summary


def end_of_early_regime(summary: dict):
    """(kind, τ*) of the kind predicted to leave its leading term first (None when none does)."""
    predicted = [(summary[k.name]["predicted_tau"], k.name) for k in WEIGHT_KINDS
                 if summary[k.name]["predicted_tau"] is not None]
    return (min(predicted)[1], min(predicted)[0]) if predicted else (None, None)


def _significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def model_options(cfg: RegimeConfig) -> list:
    """The objective and model settings that differ from the trainer's defaults, as command-line options."""
    from common.config import ROOT, script_settings
    from common.tiny.training import TrainConfig
    defaults = script_settings(ROOT / TrainConfig._script)
    options = []
    for name in ("objective", "mask_prob", "mask_split", "attention", "residual", "output"):
        value = getattr(cfg, name)
        if value != defaults[name]:
            options.append(f"--{name}=" + (",".join(f"{v:g}" for v in value) if isinstance(value, (list, tuple))
                                          else f"{value:g}" if isinstance(value, float) else str(value)))
    return options


def suggestion(summary: dict, cfg: RegimeConfig):
    """{fraction, tau, lr, steps, kind, command}: a run of `suggest_steps` steps that reaches
    `suggest_fraction` × the predicted end of the early regime (None when no τ* is predicted).  τ = ηs,
    and discrete SGD follows the flow to relative O(η/τ) = O(1/steps) (docs/theory.md §14)."""
    kind, end = end_of_early_regime(summary)
    if end is None:
        return None
    tau = _significant(cfg.suggest_fraction * end)
    lr = _significant(tau / cfg.suggest_steps)
    steps = max(1, math.ceil(tau / lr - 1e-9))
    options = [f"--data_dir={cfg.data_dir}", f"--seq_len={cfg.seq_len}", f"--n_layers={cfg.n_layers}",
               f"--batch_size={cfg.batch_size}"] + (["--windows=True"] if cfg.windows else []) + (
              [f"--grad_accum={cfg.grad_accum}"] if cfg.grad_accum != 1 else []) + (
              [f"--max_sequences={cfg.max_sequences}"] if cfg.max_sequences else []) + model_options(cfg) + [
              f"--lr={lr:g}", f"--tau={tau:g}", "--out_dir=out/early_regime"]
    return {"fraction": cfg.suggest_fraction, "tau": tau, "lr": lr, "steps": steps, "kind": kind,
            "end_tau": end, "command": "python tiny_self_attn_natural.py " + " ".join(options)}


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3g}"


def regime_markdown(summary: dict, lrs, n_layers: int) -> str:
    smallest = str(min(lrs))
    series = summary["series"]
    lines = [f"# End of the early regime (threshold {summary['threshold']:g}, {n_layers} layers)", "",
             "τ = ηs at which each weight leaves its leading term: predicted from the Taylor series of "
             f"training (c_1 … c_{series['order']} on {series['sequences']:,} of {series['of']:,} training "
             "sequences; the remainder beyond the leading term reaches the threshold, worst layer and each "
             "layer) and measured (the worst layer's relative error to the path-exact prediction reaches "
             "it). — : not reached (docs/theory.md §10, §14).", "",
             "| weight | predicted τ* | per layer | " + " | ".join(f"measured τ*, η = {lr:g}" for lr in lrs)
             + f" | predicted / measured (η = {float(smallest):g}) |",
             "|---|---:|---|" + "---:|" * len(lrs) + "---:|"]
    for kind in (k.name for k in WEIGHT_KINDS):
        row = summary[kind]
        measured = row["measured_tau"][smallest]
        ratio = row["predicted_tau"] / measured if row["predicted_tau"] and measured else None
        lines.append(f"| {kind} | {_fmt(row['predicted_tau'])} | "
                     + " / ".join(_fmt(t) for t in row["predicted_tau_layers"]) + " | "
                     + " | ".join(_fmt(row["measured_tau"][str(lr)]) for lr in lrs) + f" | {_fmt(ratio)} |")
    radius = summary["radius"]
    lines += ["", f"Radius of convergence of the series (all weights; docs/theory.md §14): "
                  f"{_fmt(radius['ratio'])} (two-step ratio), {_fmt(radius['root'])} (root test), "
                  f"{_fmt(radius['domb_sykes'])} (Domb–Sykes)."]
    hint = summary.get("suggestion")
    if hint:
        lines += ["", f"A run to {hint['fraction']:g} × the predicted end of the early regime ({hint['kind']} at "
                      f"τ* = {hint['end_tau']:.3g}): τ = {hint['tau']:g} in {hint['steps']} steps of η = {hint['lr']:g}:",
                  "", "```", hint["command"], "```"]
    return "\n".join(lines) + "\n"


def regime_figure(summary: dict, curves: dict, taus, measured: dict, stem) -> list:
    """Per weight kind: relative error against τ (log-log), one curve per learning rate, the series'
    predicted ratio overlaid (worst layer thick, each layer thin), the threshold, both τ* and the
    radius estimate marked."""
    from common.plotting import plt, save_figure
    fig, axes = plt.subplots(1, len(WEIGHT_KINDS), figsize=(4.2 * len(WEIGHT_KINDS), 3.8), squeeze=False)
    threshold = summary["threshold"]
    taus_measured = [t for errors in measured.values() for ts, _ in errors.values() for t in ts]
    shown_max = 2 * max(taus_measured or [max(taus)])
    radius = summary["radius"]["ratio"]
    for ax, kind in zip(axes[0], WEIGHT_KINDS):
        if not curves[kind.name]:   # a kind this model variant does not train (W_O frozen to the identity)
            ax.text(0.5, 0.5, f"{kind.name}: not trained in this model", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for i, (lr, errors) in enumerate(measured.items()):
            if kind.name in errors:
                color = f"C{i}"
                ax.plot(*errors[kind.name], color=color, marker=".", label=f"measured, η = {lr:g}")
                tau = summary[kind.name]["measured_tau"][str(lr)]
                if tau is not None:
                    ax.axvline(tau, color=color, linestyle=":", linewidth=1, label=f"measured τ*, η = {lr:g}")
        shown = [i for i, t in enumerate(taus) if t <= shown_max]
        for layer, curve in curves[kind.name].items():
            if len(curves[kind.name]) > 1:
                ax.plot([taus[i] for i in shown], [curve[i] for i in shown], color="grey", linestyle="--",
                        linewidth=0.7)
        worst = worst_layer(curves[kind.name])
        ax.plot([taus[i] for i in shown], [worst[i] for i in shown], color="black", linestyle="--",
                label="series: ‖remainder‖/‖leading‖")
        if summary[kind.name]["predicted_tau"] is not None:
            ax.axvline(summary[kind.name]["predicted_tau"], color="black", linestyle="--", linewidth=1,
                       label="predicted τ*")
        if radius is not None and radius <= shown_max:
            ax.axvspan(radius, shown_max, color="grey", alpha=0.12, label="beyond the radius estimate")
        ax.axhline(threshold, color="grey", linewidth=1, label=f"threshold {threshold:g}")
        ax.set(xscale="log", yscale="log", xlabel="τ = ηs", title=f"{kind.role}  {kind.name}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("relative error to the leading term")
    # one legend for every panel: each label once, from whichever panel draws it (a τ* may be missing in some)
    legend = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    axes[0][0].legend(list(legend.values()), list(legend), fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)


def check_settings(cfg: RegimeConfig) -> list:
    """The learning rates as floats, or a UserError naming what is wrong."""
    lrs = cfg.lrs
    if not isinstance(lrs, (list, tuple)) or not lrs or not all(
            isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 for lr in lrs):
        raise UserError(f"--lrs must be a non-empty list of positive learning rates, e.g. --lrs=0.3,1.0,3.0 "
                        f"(got {lrs!r})")
    if not 0 < cfg.threshold < 1:
        raise UserError(f"--threshold must lie strictly between 0 and 1 (got {cfg.threshold})")
    if not cfg.tau_max > 0:
        raise UserError(f"--tau_max must be positive (got {cfg.tau_max})")
    highest = max(WEIGHT_KINDS, key=lambda k: k.power)
    if cfg.order <= highest.power:
        raise UserError(f"--order must be at least {highest.power + 1} (got {cfg.order}): {highest.name}'s "
                        f"leading term is τ^{highest.power}, and τ* needs a term of the series beyond it")
    for name, low in (("series_sequences", 0), ("series_chunk", 1), ("suggest_steps", 1), ("series_draws", 1)):
        if getattr(cfg, name) < low:
            raise UserError(f"--{name} must be at least {low} (got {getattr(cfg, name)})")
    if not cfg.suggest_fraction > 0:
        raise UserError(f"--suggest_fraction must be positive (got {cfg.suggest_fraction}; above 1 passes the end)")
    return [float(lr) for lr in lrs]


def series_subsample(n: int, size: int, seed: int) -> torch.Tensor:
    """Indices of the sequences the series is computed on: all (size 0 or ≥ n), else a seeded sample."""
    if size == 0 or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def series_batch(sequences: torch.Tensor, run, n_words: int, draws: int, seed: int):
    """(x, y, selected) the series is computed on, from sequences [N, T + 1]: for the next-token objective
    x → y at every position (selected None); for the masked objective the first T tokens corrupted `draws`
    times (generators seeded seed, seed + 1, …) and stacked, y the clean tokens — the objective averaged
    over those fixed draws, which approaches the expected objective the runs train on (docs/theory.md §16)
    as `draws` grows."""
    from common.theory.masking import corrupt
    from common.tiny.training import masking_scheme
    sequences = sequences.long()
    if run.objective != "masked":
        return sequences[:, :-1], sequences[:, 1:], None
    scheme, clean = masking_scheme(run, n_words), sequences[:, :-1]
    corrupted = [corrupt(clean, scheme, torch.Generator().manual_seed(seed + d)) for d in range(draws)]
    return (torch.cat([c[0] for c in corrupted]), clean.repeat(draws, 1), torch.cat([c[1] for c in corrupted]))


def run_regime(cfg: RegimeConfig, log=None) -> dict:
    """tiny_regime.py's body: the series, a training run at each learning rate (common/tiny/training.py's
    Trainer, the path-exact tracker on, a log point every step), the measured τ*, and the four outputs
    written into `out_dir` (replaced as a whole only when everything succeeded).  `log(line)` hears
    the runs' plans.  Returns the summary, with the measured seconds per training step
    (`seconds_per_step`, not written: it is not reproducible)."""
    from pathlib import Path

    from common.device import configure_numerics, resolve_device
    from common.io import atomic_directory, write_json
    from common.tiny.training import TrainConfig, Trainer, build_model, load_training_data
    from common.tiny.training import check_settings as check_train_settings

    lrs = check_settings(cfg)
    train_settings = {k: v for k, v in asdict(cfg).items() if k in
                      ("data_dir", "seq_len", "windows", "n_layers", "batch_size", "grad_accum", "max_sequences",
                       "init_std", "seed", "device", "progress", "deterministic", "objective", "mask_prob",
                       "mask_split", "attention", "residual", "output")}
    configure_numerics(cfg.deterministic)
    run_settings = TrainConfig.from_settings(train_settings)
    check_train_settings(run_settings)
    tokens, vocabulary = load_training_data(run_settings)[:2]
    torch.manual_seed(cfg.seed)
    masked = cfg.objective == "masked"
    model = build_model(run_settings, len(vocabulary) + masked)   # a masked model's vocabulary holds MASK too
    variant = model_variant(model)
    chosen = series_subsample(len(tokens), cfg.series_sequences, cfg.seed)
    x, y, selected = series_batch(tokens[chosen], run_settings, len(vocabulary), cfg.series_draws, cfg.seed)
    coefficients = gradient_flow_series(model, x, y, cfg.order, chunk_size=cfg.series_chunk,
                                        device=resolve_device(cfg.device), progress=cfg.progress, selected=selected)
    taus = tau_grid(cfg.tau_max)
    steps_per_epoch = max(1, len(tokens) // (cfg.batch_size * cfg.grad_accum))
    with atomic_directory(cfg.out_dir) as tmp:
        measured, seconds, steps = {}, 0.0, 0
        for lr in lrs:
            run = TrainConfig.from_settings(dict(
                train_settings, out_dir=str(Path(tmp) / "runs" / f"lr_{lr:g}"), lr=lr, tau=cfg.tau_max,
                log_every=1 / steps_per_epoch, save_every=0.0, keep_checkpoints=1, report_top=0, path_exact=True))
            trainer = Trainer(run, log=log, short_by_design=True)   # it measures the early regime itself
            start = time.perf_counter()
            trainer.run()
            seconds, steps = seconds + time.perf_counter() - start, steps + trainer.step
            measured[lr] = measured_errors(trainer.logs, lr)
        series = {"order": cfg.order, "sequences": len(chosen), "of": len(tokens)}
        if masked:
            series["draws"] = cfg.series_draws
        summary = regime_summary(cfg.threshold, coefficients, taus, measured, series, variant)
        summary["suggestion"] = suggestion(summary, cfg)
        write_json(Path(tmp) / "regime.json", summary)
        regime_figure(summary, predicted_curves(coefficients, taus, variant), taus, measured, Path(tmp) / "regime")
        (Path(tmp) / "regime.md").write_text(regime_markdown(summary, lrs, cfg.n_layers), encoding="utf-8")
    return dict(summary, seconds_per_step=seconds / max(steps, 1))


def summary_lines(summary: dict, lrs, out_dir) -> list:
    """What tiny_regime.py prints: predicted against measured τ* per kind, the radius, the suggestion."""
    smallest = str(float(min(lrs)))
    lines = [f"regime in {out_dir} (threshold {summary['threshold']:g}; series c_1 … c_{summary['series']['order']} "
             f"on {summary['series']['sequences']:,} of {summary['series']['of']:,} sequences):",
             f"  {'weight':<6} {'predicted τ*':>12}   measured τ* at η = " + " / ".join(f"{float(lr):g}" for lr in lrs)
             + f"   predicted/measured (η = {float(smallest):g})"]
    for kind in (k.name for k in WEIGHT_KINDS):
        row = summary[kind]
        measured = row["measured_tau"][smallest]
        ratio = row["predicted_tau"] / measured if row["predicted_tau"] and measured else None
        lines.append(f"  {kind:<6} {_fmt(row['predicted_tau']):>12}   "
                     + " / ".join(_fmt(row["measured_tau"][str(float(lr))]) for lr in lrs) + f"   {_fmt(ratio)}")
    radius = summary["radius"]
    lines.append(f"  radius of convergence of the series ≈ {_fmt(radius['ratio'])} (two-step ratio; root test "
                 f"{_fmt(radius['root'])}, Domb–Sykes {_fmt(radius['domb_sykes'])})")
    hint = summary.get("suggestion")
    if hint:
        minutes = hint["steps"] * summary["seconds_per_step"] / 60
        lines += [f"to reach {hint['fraction']:g} × the predicted end of the early regime ({hint['kind']} at τ* = "
                  f"{hint['end_tau']:.3g}): τ = {hint['tau']:g}, η = {hint['lr']:g}, {hint['steps']} steps "
                  f"(about {minutes:.1f} min at the {summary['seconds_per_step']:.2f} s per step measured here):",
                  f"  {hint['command']}"]
    return lines
