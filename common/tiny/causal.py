"""Causal check of the leading terms (docs/theory.md §5, the release's tiny-causal): remove from one trained
weight A its projection on its theoretical matrix M,

    A ← A − ⟨A, M⟩_F / ‖M‖²_F · M,

and measure how much the loss on the training sequences rises; one weight at a time, the others
untouched. A large rise for a small removed fraction of ‖A‖² says the theory direction carries
what the weight does.

Every run the trainer writes with a leading-term theory (docs/theory.md §16): the weights and their
matrices are the model variant's (common/theory/weight_kinds.py: the identity variant has no W_O and V
lines up with Φ̄ₘᵀ), the statistics the run's own (common/tiny/training.py `statistics_of`), and the loss
the run's objective — next-token cross-entropy over every position, or for a masked run the mean
cross-entropy over the selected positions of one corruption of the evaluation sequences (their first T
tokens), drawn once from `corruption_seed` and shared by the baseline and every ablation, so that the
differences are the ablations' and not the corruption's."""
import torch
import torch.nn.functional as F

from common.io import UserError
from common.theory.alignment import named_weights
from common.theory.leading_terms import theory_matrices
from common.theory.masking import corrupt
from common.theory.similarity import matrix_cosine
from common.theory.weight_kinds import model_variant, parse_log_key

NEAR_UNIFORM = 0.99   # attention entropy, as a fraction of the uniform one, above which Δloss of W, P is moot


def remove_projection(weight: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    a, m = weight.detach().to(torch.float64), direction.detach().to(torch.float64)
    return (a - (a * m).sum() / (m * m).sum() * m).to(weight.dtype)


def run_objective(meta: dict):
    """The MaskingScheme of a masked run (None for next-token prediction) from its checkpoint's metadata, or
    one UserError line for a run without leading terms (nothing to ablate: common/tiny/training.py
    `leading_term_theory`)."""
    from common.tiny.training import TRAJECTORY_DEFAULTS, TrainConfig, leading_term_theory, masking_scheme
    cfg = TrainConfig.from_settings(dict(TRAJECTORY_DEFAULTS, **meta))
    if not leading_term_theory(cfg):
        raise UserError(f"this run has no leading-term theory (objective {cfg.objective}, attention "
                        f"{cfg.attention}, residual {cfg.residual}, output {cfg.output}): there is no theory "
                        f"direction to remove (docs/theory.md §16)")
    return masking_scheme(cfg, meta["vocab_size"]) if cfg.objective == "masked" else None


def evaluation_data(tokens: torch.Tensor, scheme=None, corruption_seed: int = 0):
    """(inputs, targets, selected) [N, T] the loss is evaluated on, from sequences `tokens` [N, T+1]:
    next-token x → y with every position selected (selected None); for a masked run (`scheme`) the first T
    tokens, corrupted once with a generator seeded by `corruption_seed` (targets: the clean tokens)."""
    tokens = tokens.long()
    if scheme is None:
        return tokens[:, :-1], tokens[:, 1:], None
    clean = tokens[:, :-1]
    x_tilde, selected = corrupt(clean, scheme, torch.Generator().manual_seed(corruption_seed))
    if not selected.any():
        raise UserError(f"the corruption of the {len(tokens)} evaluation sequences selected no position: "
                        f"evaluate on more sequences or with another --corruption_seed")
    return x_tilde, clean, selected


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def mean_loss(model, inputs: torch.Tensor, targets: torch.Tensor, selected=None, batch_size: int = 64) -> float:
    """Mean cross-entropy of `model` over the selected positions of (inputs, targets) [N, T] (every
    position when `selected` is None): Σ_selected CE / |S| over all the sequences, as the trainer's loss."""
    device = _device(model)
    total, count = 0.0, 0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start:start + batch_size].to(device))
        per_position = F.cross_entropy(logits.flatten(0, 1), targets[start:start + batch_size].to(device).flatten(),
                                       reduction="none").double()
        if selected is None:
            total, count = total + float(per_position.sum()), count + per_position.numel()
        else:
            chosen = selected[start:start + batch_size].to(device).flatten()
            total, count = total + float(per_position[chosen].sum()), count + int(chosen.sum())
    return total / count


@torch.no_grad()
def causal_ablation(model, stats, tokens: torch.Tensor, batch_size: int = 64, progress: bool = False,
                    scheme=None, corruption_seed: int = 0) -> dict:
    """{'baseline_loss', 'objective', 'rows': [{weight, cosine, removed_fraction, loss, loss_change}],
    'attention'}: `stats` the run's statistics (of the model's variant), `scheme` a masked run's
    MaskingScheme (run_objective), the loss that of evaluation_data(tokens, scheme, corruption_seed)."""
    from common.progress import progress_bar
    theory = theory_matrices(stats, model_variant(model))
    inputs, targets, selected = evaluation_data(tokens, scheme, corruption_seed)
    baseline = mean_loss(model, inputs, targets, selected, batch_size)
    rows = []
    for key, kind, weight in progress_bar(list(named_weights(model)), desc="ablations", disable=not progress):
        original = weight.detach().clone()
        cosine = matrix_cosine(original, theory[kind])
        weight.copy_(remove_projection(original, theory[kind]))
        loss = mean_loss(model, inputs, targets, selected, batch_size)
        weight.copy_(original)
        rows.append({"weight": key, "cosine": cosine, "removed_fraction": cosine ** 2, "loss": loss,
                     "loss_change": loss - baseline})
    result = {"baseline_loss": baseline, "objective": "next-token" if scheme is None else "masked", "rows": rows,
              "attention": attention_summary(model, inputs, batch_size)}
    if scheme is not None:
        result.update(corruption_seed=corruption_seed, selected_positions=int(selected.sum()))
    return result


@torch.no_grad()
def attention_summary(model, inputs: torch.Tensor, batch_size: int = 64) -> list:
    """Per layer, how far attention is from uniform on `inputs` [N, T]: the mean within-row spread
    (standard deviation over the keys a query sees: s ≤ t, or every s without the causal mask) of the
    attention logits S[t, s], recovered from log A (softmax ignores a row's shift), and the mean entropy
    of a row as a fraction of the uniform one (log of its number of keys; causal rows t ≥ 1).  Early in
    training the logits are tiny and attention is uniform, so removing W's or P's theory direction cannot
    change the loss yet, however well W and P line up with Q̄ and p̄."""
    device = _device(model)
    spread = torch.zeros(model.n_layers, dtype=torch.float64)
    entropy = torch.zeros(model.n_layers, dtype=torch.float64)
    rows = 0
    causal = getattr(model, "is_causal", True)
    for start in range(0, len(inputs), batch_size):
        x = inputs[start:start + batch_size].to(device).long()
        T = x.shape[1]
        allowed = torch.ones(T, T, dtype=torch.bool, device=device)
        allowed = allowed.tril()[1:] if causal else allowed                            # causal: rows t ≥ 1
        counts = allowed.sum(-1).double()                                            # keys of each row
        for l, A in enumerate(model.attention_patterns(x)):
            A = (A[:, 1:] if causal else A).double()
            log_a = A.clamp_min(1e-300).log().masked_fill(~allowed, 0.0)
            mean = log_a.sum(-1) / counts
            variance = ((log_a - mean[..., None]) ** 2).masked_fill(~allowed, 0.0).sum(-1) / counts
            spread[l] += variance.sqrt().sum().cpu()
            entropy[l] += (-(A * log_a).sum(-1) / counts.log()).sum().cpu()
        rows += x.shape[0] * allowed.shape[0]
    return [{"layer": l, "logit_spread": float(spread[l] / rows), "entropy_of_uniform": float(entropy[l] / rows)}
            for l in range(model.n_layers)]


def format_table(result: dict) -> str:
    """The ablation table; W and P rows carry their layer's attention spread and entropy, with a
    warning when attention is still near uniform (then a zero Δloss says nothing about W and P)."""
    attention = {a["layer"]: a for a in result.get("attention", [])}
    objective = ("masked: mean over the selected positions of one corruption (seed "
                 f"{result['corruption_seed']})" if result.get("objective") == "masked" else "next-token")
    lines = [f"baseline loss {result['baseline_loss']:.4f} ({objective})",
             f"{'weight':<28} {'cosine':>8} {'‖A‖² removed':>13} {'loss':>9} {'Δloss':>9}   attention of its layer"]
    uniform = []
    for row in result["rows"]:
        parsed = parse_log_key(row["weight"])
        note = ""
        if parsed and parsed.kind in ("W", "P") and parsed.layer in attention:
            a = attention[parsed.layer]
            note = f"   logit spread {a['logit_spread']:.2g}, entropy {a['entropy_of_uniform']:.4f} of uniform"
            if a["entropy_of_uniform"] > NEAR_UNIFORM:
                uniform.append(parsed.layer)
        lines.append(f"{row['weight']:<28} {row['cosine']:>8.4f} {100 * row['removed_fraction']:>12.1f}% "
                     f"{row['loss']:>9.4f} {row['loss_change']:>+9.4f}{note}")
    if uniform:
        layers = ", ".join(str(l) for l in sorted(set(uniform)))
        lines.append(f"note: attention in layer(s) {layers} is still near uniform (entropy > {NEAR_UNIFORM} of "
                     f"uniform): the attention logits are tiny, so removing W's or P's theory direction cannot "
                     f"change the loss yet — a Δloss near 0 there does not mean those directions do not matter.")
    return "\n".join(lines)
