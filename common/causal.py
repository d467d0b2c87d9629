"""Causal check of the leading terms (docs/theory.md §5, the release's tiny-causal): remove from one trained
weight A its projection on its theoretical matrix M,

    A ← A − ⟨A, M⟩_F / ‖M‖²_F · M,

and measure how much the loss on the training sequences rises; one weight at a time, the others
untouched. A large rise for a small removed fraction of ‖A‖² says the theory direction carries
what the weight does."""
import torch
import torch.nn.functional as F

from common.alignment import named_weights
from common.leading_terms import theory_matrices
from common.similarity import matrix_cosine


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
    from tqdm.auto import tqdm
    theory = theory_matrices(stats)
    baseline = mean_loss(model, tokens, batch_size)
    rows = []
    for key, kind, weight in tqdm(list(named_weights(model)), desc="ablations", disable=not progress):
        original = weight.detach().clone()
        cosine = matrix_cosine(original, theory[kind])
        weight.copy_(remove_projection(original, theory[kind]))
        loss = mean_loss(model, tokens, batch_size)
        weight.copy_(original)
        rows.append({"weight": key, "cosine": cosine, "removed_fraction": cosine ** 2, "loss": loss,
                     "loss_change": loss - baseline})
    return {"baseline_loss": baseline, "rows": rows}


def format_table(result: dict) -> str:
    lines = [f"baseline loss {result['baseline_loss']:.4f}",
             f"{'weight':<28} {'cosine':>8} {'‖A‖² removed':>13} {'loss':>9} {'Δloss':>9}"]
    for row in result["rows"]:
        lines.append(f"{row['weight']:<28} {row['cosine']:>8.4f} {100 * row['removed_fraction']:>12.1f}% "
                     f"{row['loss']:>9.4f} {row['loss_change']:>+9.4f}")
    return "\n".join(lines)
