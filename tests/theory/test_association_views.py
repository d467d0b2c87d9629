"""Association views (common/theory/association_views.py, docs/theory.md §2) against Python loops over the
token pairs: the normalised view, the discounted lift lift⁻ of every statistic and weight (its effective
supports by loops), the one rule shared by the rows and the strongest-pairs table, a rare token that no
longer leads every lift row, MASK (never an output) never a partner on an output axis, and the share of rows
led by frequent tokens."""
import math

import pytest
import torch

from common.theory.association_views import (LIFT_KEY_POWER, LiftSupport, frequent_partner_share, normalised_rows,
                                              statistic_view, strongest_association_tokens, strongest_pair_table,
                                              strongest_pairs, token_frequency, weight_view)
from common.theory.statistics import compute_statistics
from common.theory.weight_kinds import TOKEN_STATISTICS
from conftest import markov_tokens


def brute_force_counts(x, y, vocab_size):
    """count of each input token and of each (input, next token) pair, by Python loops."""
    inputs, pairs = [0] * vocab_size, [[0] * vocab_size for _ in range(vocab_size)]
    for a, b in zip(x.flatten().tolist(), y.flatten().tolist()):
        inputs[a] += 1
        pairs[a][b] += 1
    return inputs, pairs


@pytest.fixture(scope="module")
def markov_stats():
    x, y = markov_tokens(60, 12, 9, seed=4)
    # one more token than the chain uses: it never occurs, so its normalised rows must be 0, not NaN
    vocab_size = 10
    return x, y, vocab_size, compute_statistics(x, y, vocab_size)


def brute_force_lift_lower(x, y, V, min_count):
    """{a: (lift⁻, b) of a's best pair} for every token a seen min_count times whose row shows a pair:
    n (c − 2√c) / (count(a) count(b)) over partners seen min_count times as outputs with c > 4, by Python loops."""
    inputs, pairs = brute_force_counts(x, y, V)
    outputs = [sum(pairs[a][b] for a in range(V)) for b in range(V)]
    n = x.numel()
    best = {}
    for a in range(V):
        if inputs[a] < min_count:
            continue
        scores = {b: n * (pairs[a][b] - 2 * pairs[a][b] ** 0.5) / (inputs[a] * outputs[b])
                  for b in range(V) if outputs[b] >= min_count and pairs[a][b] > 4}
        if scores:
            b = max(scores, key=lambda b: (scores[b], -b))
            best[a] = (scores[b], b)
    return best, inputs, outputs, pairs


def test_strongest_association_tokens_and_pairs_match_brute_force(markov_stats):
    x, y, V, stats = markov_stats
    min_count = sorted(brute_force_counts(x, y, V)[0])[V // 2]      # leaves out the rarer half of the tokens
    best, inputs, outputs, pairs = brute_force_lift_lower(x, y, V, min_count)
    top = max(score for score, _ in best.values())
    expected = sorted(best, key=lambda a: (-round(best[a][0] / top, 9), -inputs[a], a))
    assert 2 < len(expected) < V
    assert strongest_association_tokens(stats, V, min_count) == expected
    assert strongest_association_tokens(stats, 3, min_count) == expected[:3]
    n = x.numel()
    table = strongest_pair_table(stats, 3, min_count)
    for row, a in zip(table, expected):
        b = best[a][1]
        assert (row["a"], row["b"], row["pairs"], row["count"]) == (a, b, pairs[a][b], inputs[a])
        assert row["conditional"] == pytest.approx(pairs[a][b] / inputs[a], rel=1e-10)
        assert row["lift"] == pytest.approx(n * pairs[a][b] / (inputs[a] * outputs[b]), rel=1e-10)
        assert row["lift_lower"] == pytest.approx(best[a][0], rel=1e-10)
    assert strongest_pairs(stats, 3, min_count) == [
        (r["a"], r["b"], pytest.approx(r["conditional"] - 1 / V), r["count"]) for r in table]


def test_normalised_view_is_each_row_divided_by_the_frequency(markov_stats):
    x, y, V, stats = markov_stats
    inputs, pairs = brute_force_counts(x, y, V)
    n = x.numel()
    for statistic in TOKEN_STATISTICS:
        raw, normalised = statistic_view(stats, statistic.field, "raw"), statistic_view(stats, statistic.field)
        assert torch.equal(raw, getattr(stats, statistic.field).double())
        for a in range(V):
            expected = raw[a] / (inputs[a] / n) if inputs[a] else torch.zeros(V, dtype=torch.float64)
            torch.testing.assert_close(normalised[a], expected, rtol=1e-12, atol=1e-15)
    # for B̄ the normalised view is the conditional P̂(y=b | x=a) − 1/V
    conditional = torch.tensor([[pairs[a][b] / inputs[a] - 1 / V if inputs[a] else 0.0 for b in range(V)]
                                for a in range(V)], dtype=torch.float64)
    torch.testing.assert_close(statistic_view(stats, "bigram"), conditional, rtol=0, atol=1e-12)
    assert not statistic_view(stats, "bigram")[V - 1].any()
    # the same function serves trained weights: any matrix with token rows
    weight = torch.randn(V, V)
    torch.testing.assert_close(normalised_rows(weight, stats.input_frequency)[2],
                               weight[2].double() / (inputs[2] / n))


def brute_force_lift(x, y, stats, field, matrix, min_count, z=2.0):
    """lift⁻ [V, V] of `matrix` lining up with statistic `field` (module docstring of association_views),
    every count and effective support N by Python loops over tokens and pairs: X / (P̂(a) D[b]) ·
    (1 − z/√N) where X > 0, N > z² and both tokens are seen min_count times on their axes, else −inf;
    D[b] = P̂(b), P̂(b)² for Q̄, Σ_j P̂(b, j) P̂(y=j) for (B̄Φ̄)ᵀ."""
    V, n = stats.bigram.shape[0], x.numel()
    inputs, pairs = brute_force_counts(x, y, V)
    outputs = [sum(pairs[a][b] for a in range(V)) for b in range(V)]
    keys = (stats.position_map.numel() + 1) / 2                   # (T + 1)/2 keys per causal query
    f = [[max(float(stats.context[j, k]) * n, 0.0) * keys for k in range(V)] for j in range(V)]
    counts = {"input": inputs, "output": outputs}
    row_axis, column_axis = {"bigram": ("input", "output"), "interchangeability": ("output", "output"),
                             "context": ("output", "input"), "value_map": ("input", "input"),
                             "attention_map": ("input", "input")}[field]
    power = 2 if field == "attention_map" else 1
    divisor = [(counts[column_axis][b] / n) ** power for b in range(V)]
    if field == "value_map":          # the frequency of b weighted by that of its successors
        divisor = [sum(pairs[b][j] / n * outputs[j] / n for j in range(V)) for b in range(V)]
    out = torch.full((V, V), -float("inf"), dtype=torch.float64)
    for a in range(V):
        for b in range(V):
            if field == "bigram":
                N = pairs[a][b]
            elif field == "context":
                N = f[a][b]
            elif field == "interchangeability":
                S = sum(pairs[i][a] * pairs[i][b] for i in range(V))
                var = sum(pairs[i][a] * pairs[i][b] * (pairs[i][a] + pairs[i][b]) for i in range(V))
                N = S * S / var if var > 0 else 0.0
            elif field == "value_map":
                S = sum(f[j][a] * pairs[b][j] for j in range(V))
                var = sum(f[j][a] ** 2 * pairs[b][j] + pairs[b][j] ** 2 * f[j][a] for j in range(V))
                N = S * S / var if var > 0 else 0.0
            else:
                N = 1 / (1 / f[a][b] + 1 / inputs[b]) if f[a][b] > 0 and inputs[b] > 0 else 0.0
            X = float(matrix[a, b])
            if (counts[row_axis][a] >= min_count and counts[column_axis][b] >= min_count and X > 0 and N > z * z):
                out[a, b] = X / ((counts[row_axis][a] / n) * divisor[b]) * (1 - z / math.sqrt(N))
    return out


def test_lift_of_every_statistic_and_weight_matches_brute_force(markov_stats):
    """Every statistic's lift view (B̄ and Σ_B read through their co-occurrence parts P̂(x=a, y=b) and
    Σ_i P̂(i, j) P̂(i, j')) and a weight lining up with each, against brute_force_lift."""
    x, y, V, stats = markov_stats
    inputs, pairs = brute_force_counts(x, y, V)
    n = x.numel()
    min_count = sorted(inputs)[V // 2]
    joint = torch.tensor(pairs, dtype=torch.float64) / n
    co_occurrence = {"bigram": joint, "interchangeability": joint.T @ joint}
    weight = torch.randn(V, V, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for field in ("bigram", "interchangeability", "context", "value_map", "attention_map"):
        statistic = co_occurrence.get(field, getattr(stats, field).double())
        expected = brute_force_lift(x, y, stats, field, statistic, min_count)
        lifted = statistic_view(stats, field, "lift", min_count)
        assert torch.isfinite(expected).any() and not torch.isfinite(expected).all(), field   # some shown, not all
        assert torch.equal(torch.isfinite(lifted), torch.isfinite(expected)), field
        torch.testing.assert_close(lifted[torch.isfinite(lifted)], expected[torch.isfinite(expected)], rtol=1e-9, atol=0)
        # a weight that learns the statistic: the same frequencies and supports, its own entries
        expected = brute_force_lift(x, y, stats, field, weight, min_count)
        lifted = weight_view(weight, stats, field, "lift", min_count)
        assert torch.equal(torch.isfinite(lifted), torch.isfinite(expected)), field
        torch.testing.assert_close(lifted[torch.isfinite(lifted)], expected[torch.isfinite(expected)], rtol=1e-9, atol=0)


def test_the_strongest_pair_heads_its_own_row_even_when_its_partner_ends_sequences(markov_stats):
    """The issue's `pablo → galindo`: b follows a in every occurrence of a and ends its sequence there, so
    b is seen min_count times as an output but fewer as an input; the former row view (partners counted as
    inputs) dropped b from a's row while the table ranked a → b first.  One rule: the table's pair heads a's
    B̄ row in the lift view, with the table's lift⁻, and the page's and report's rows read the same rule."""
    x, y, V, _ = markov_stats
    a, b = V, V + 1                                  # two new tokens: `a b` ends 12 sequences
    x, y = x.clone(), y.clone()
    x[:12, -1], y[:12, -1] = a, b
    stats = compute_statistics(x, y, V + 2)
    inputs, _ = brute_force_counts(x, y, V + 2)
    assert inputs[b] == 0 and inputs[a] == 12
    table = strongest_pair_table(stats, V + 2)
    assert (table[0]["a"], table[0]["b"], table[0]["pairs"], table[0]["count"]) == (a, b, 12, 12)
    lifted = statistic_view(stats, "bigram", "lift")
    for row in table:
        assert int(lifted[row["a"]].argmax()) == row["b"]
        assert float(lifted[row["a"]].max()) == pytest.approx(row["lift_lower"], rel=1e-12)
    n = x.numel()
    assert table[0]["lift_lower"] == pytest.approx((12 - 2 * 12 ** 0.5) * n / (12 * 12), rel=1e-12)


def rare_token_corpus():
    """A Markov corpus of 24 tokens plus a rare token r (id 24) put at 10 random positions inside the
    sequences (so seen 10 times as an input and as an output)."""
    x, y = markov_tokens(200, 16, 24, seed=7)
    g = torch.Generator().manual_seed(1)
    tokens = torch.cat([x, y[:, -1:]], dim=1)
    inside = tokens[:, 1:-1].clone()
    flat = inside.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[:10]] = 24
    tokens[:, 1:-1] = inside
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous(), 25


def test_a_rare_token_does_not_lead_every_lift_row():
    """Divided by P̂(a) P̂(b) alone (the former lift), a token seen 10 times led most rows of Σ_B
    (its entries are mostly the centring's Σ_i P̂(i)²/V², over a tiny P̂(r)); discounted by the
    noise of the counts they rest on, it leads few rows of any view."""
    x, y, V = rare_token_corpus()
    stats = compute_statistics(x, y, V)
    counts = token_frequency(stats) * stats.n_positions
    rare = V - 1
    assert 10 <= float(counts[rare]) <= 11
    rows = [a for a in range(V - 1)]

    def led(view, field):
        shown = view[rows].clone()
        if field == "interchangeability":
            shown[torch.arange(len(rows)), torch.tensor(rows)] = -float("inf")
        return float((shown.argmax(dim=1) == rare).double().mean())

    frequency = token_frequency(stats)
    for field in ("interchangeability", "context", "value_map", "attention_map"):
        matrix = getattr(stats, field).double()
        former = matrix / (frequency[:, None] * frequency[None, :] ** LIFT_KEY_POWER.get(field, 1))
        now = led(statistic_view(stats, field, "lift"), field)
        assert now <= 0.1, (field, now)
        if field == "interchangeability":
            assert led(former, field) > 0.5


def test_frequent_partner_share_by_brute_force(markov_stats):
    x, y, V, stats = markov_stats
    min_count = 20
    inputs, pairs = brute_force_counts(x, y, V)
    frequent = sorted(range(V), key=lambda a: (-inputs[a], a))[:2]
    rows = [a for a in range(V) if inputs[a] >= min_count]
    outputs = [sum(pairs[a][b] for a in range(V)) for b in range(V)]      # B̄'s partners are outputs
    led = sum(max((b for b in range(V) if outputs[b] >= min_count), key=lambda b: (pairs[a][b], -b)) in frequent
              for a in rows)
    assert frequent_partner_share(stats.bigram, stats, "bigram", "raw", 2, min_count) == pytest.approx(led / len(rows))


def test_mask_is_never_a_partner_on_an_output_axis(markov_stats):
    """A masked run's statistics (docs/theory.md §16): MASK, the last id, is an input at the masked
    positions and never an output.  It has no lift row of Σ_B or Φ̄ and is no lift partner of B̄ or Σ_B;
    its Q̄ row (what a MASK query attends to) and (B̄Φ̄)ᵀ row are shown."""
    from common.theory.association_views import output_axis_fields
    x, y, V, _ = markov_stats
    mask = V
    x = x.clone()
    x[:, ::3] = mask                                  # a third of the inputs masked; targets unchanged
    stats = compute_statistics(x, y, V + 1)
    assert output_axis_fields(rows=True) == ("interchangeability", "context")
    assert output_axis_fields(rows=False) == ("bigram", "interchangeability")
    for field in ("bigram", "interchangeability", "context", "value_map", "attention_map"):
        lifted = statistic_view(stats, field, "lift")
        if field in output_axis_fields(rows=False):
            assert not torch.isfinite(lifted[:, mask]).any(), field
        if field in output_axis_fields(rows=True):
            assert not torch.isfinite(lifted[mask]).any(), field
    assert torch.isfinite(statistic_view(stats, "attention_map", "lift")[mask]).any()
    assert torch.isfinite(statistic_view(stats, "bigram", "lift")[mask]).any()
