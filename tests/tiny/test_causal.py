"""common/tiny/causal.py: projection removal, the ablation table, and the attention summary."""
import math

import torch

from common.tiny.causal import attention_summary, causal_ablation, format_table, mean_loss, remove_projection
from common.theory.model import AttentionOnlyTransformer
from common.theory.statistics import compute_statistics


def test_remove_projection_leaves_the_orthogonal_part():
    torch.manual_seed(0)
    a, m = torch.randn(5, 5, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64)
    rest = remove_projection(a, m)
    assert abs(float((rest * m).sum())) < 1e-12
    assert torch.allclose(a - rest, (a * m).sum() / (m * m).sum() * m, atol=1e-12)


def test_uniform_attention_summary_and_warning(markov):
    x, y = markov(8, 6, 7)
    tokens = torch.cat([x, y[:, -1:]], 1)
    model = AttentionOnlyTransformer(7, 6, 2).double()          # zero weights: attention exactly uniform
    summary = attention_summary(model, tokens, batch_size=3)
    for layer in summary:
        assert layer["logit_spread"] < 1e-12 and abs(layer["entropy_of_uniform"] - 1) < 1e-12
    result = causal_ablation(model, compute_statistics(x, y, 7), tokens)
    assert result["baseline_loss"] == mean_loss(model, tokens) and abs(result["baseline_loss"] - math.log(7)) < 1e-12
    table = format_table(result)
    assert "still near uniform" in table and "layer(s) 0, 1" in table


def test_attention_summary_against_brute_force(markov):
    x, y = markov(4, 5, 6)
    tokens = torch.cat([x, y[:, -1:]], 1)
    torch.manual_seed(1)
    model = AttentionOnlyTransformer(6, 5, 1, init_std=1.0).double()
    summary = attention_summary(model, tokens, batch_size=2)[0]
    A = model.attention_patterns(x)[0]
    spreads, entropies = [], []
    for b in range(4):
        for t in range(1, 5):
            row = A[b, t, :t + 1]
            logits = row.log()
            spreads.append(float(logits.std(unbiased=False)))
            entropies.append(float(-(row * row.log()).sum() / math.log(t + 1)))
    assert abs(summary["logit_spread"] - sum(spreads) / len(spreads)) < 1e-10
    assert abs(summary["entropy_of_uniform"] - sum(entropies) / len(entropies)) < 1e-10
    assert summary["entropy_of_uniform"] < 0.99
    assert "still near uniform" not in format_table({"baseline_loss": 1.0, "rows": [
        {"weight": "layer_0_W_Q_bar", "cosine": 0.5, "removed_fraction": 0.25, "loss": 1.0, "loss_change": 0.0}],
        "attention": [dict(summary, layer=0)]})
