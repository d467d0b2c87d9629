"""Causal check of the leading terms (docs/theory.md §5, the release's tiny-causal): remove from one trained
weight A its projection on its theoretical matrix M,

    A ← A − ⟨A, M⟩_F / ‖M‖²_F · M,

and measure how much the loss on the training sequences rises; one weight at a time, the others
untouched. A large rise for a small removed fraction of ‖A‖² says the theory direction carries
what the weight does."""
import torch
import torch.nn.functional as F

from common.theory.alignment import named_weights
from common.theory.leading_terms import theory_matrices
from common.theory.similarity import matrix_cosine
from common.theory.weight_kinds import parse_log_key

NEAR_UNIFORM = 0.99   # attention entropy, as a fraction of the uniform one, above which Δloss of W, P is moot


def remove_projection(weight: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    a, m = weight.detach().to(torch.float64), direction.detach().to(torch.float64)
    return (a - (a * m).sum() / (m * m).sum() * m).to(weight.dtype)


@torch.no_grad()
def mean_loss(model, tokens: torch.Tensor, batch_size: int = 64) -> float:
    """Mean cross-entropy over every position of `tokens` [N, T+1]."""
    device = model.W_O.device
    total = 0.0
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start:start + batch_size].to(device).long()
        logits = model(batch[:, :-1])
        total += float(F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"))
    return total / (len(tokens) * (tokens.shape[1] - 1))


@torch.no_grad()
def causal_ablation(model, stats, tokens: torch.Tensor, batch_size: int = 64, progress: bool = False) -> dict:
    """{'baseline_loss', 'rows': [{weight, cosine, removed_fraction, loss, loss_change}]}."""
    from common.progress import progress_bar
    theory = theory_matrices(stats)
    baseline = mean_loss(model, tokens, batch_size)
    rows = []
    for key, kind, weight in progress_bar(list(named_weights(model)), desc="ablations", disable=not progress):
        original = weight.detach().clone()
        cosine = matrix_cosine(original, theory[kind])
        weight.copy_(remove_projection(original, theory[kind]))
        loss = mean_loss(model, tokens, batch_size)
        weight.copy_(original)
        rows.append({"weight": key, "cosine": cosine, "removed_fraction": cosine ** 2, "loss": loss,
                     "loss_change": loss - baseline})
    return {"baseline_loss": baseline, "rows": rows, "attention": attention_summary(model, tokens, batch_size)}


@torch.no_grad()
def attention_summary(model, tokens: torch.Tensor, batch_size: int = 64) -> list:
    """Per layer, how far attention is from uniform on `tokens`: the mean within-row spread (standard
    deviation over s ≤ t) of the attention logits S[t, s], recovered from log A (softmax ignores a
    row's shift), and the mean entropy of A[t, :t+1] as a fraction of the uniform log(t+1), t ≥ 1.
    Early in training the logits are tiny and attention is uniform, so removing W's or P's theory
    direction cannot change the loss yet, however well W and P line up with Q̄ and p̄."""
    device = model.W_O.device
    spread = torch.zeros(model.n_layers, dtype=torch.float64)
    entropy = torch.zeros(model.n_layers, dtype=torch.float64)
    rows = 0
    for start in range(0, len(tokens), batch_size):
        x = tokens[start:start + batch_size, :-1].to(device).long()
        T = x.shape[1]
        allowed = torch.ones(T, T, dtype=torch.bool, device=device).tril()[1:]       # rows t ≥ 1
        counts = allowed.sum(-1).double()                                            # t + 1
        for l, A in enumerate(model.attention_patterns(x)):
            A = A[:, 1:].double()
            log_a = A.clamp_min(1e-300).log().masked_fill(~allowed, 0.0)
            mean = log_a.sum(-1) / counts
            variance = ((log_a - mean[..., None]) ** 2).masked_fill(~allowed, 0.0).sum(-1) / counts
            spread[l] += variance.sqrt().sum().cpu()
            entropy[l] += (-(A * log_a).sum(-1) / counts.log()).sum().cpu()
        rows += x.shape[0] * (T - 1)
    return [{"layer": l, "logit_spread": float(spread[l] / rows), "entropy_of_uniform": float(entropy[l] / rows)}
            for l in range(model.n_layers)]


def format_table(result: dict) -> str:
    """The ablation table; W and P rows carry their layer's attention spread and entropy, with a
    warning when attention is still near uniform (then a zero Δloss says nothing about W and P)."""
    attention = {a["layer"]: a for a in result.get("attention", [])}
    lines = [f"baseline loss {result['baseline_loss']:.4f}",
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
