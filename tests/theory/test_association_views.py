"""Association views (common/theory/association_views.py, docs/theory.md §2) against Python loops over the
token pairs: the normalised and lift views, the strongest pairs by discounted lift, the share of rows led by
frequent tokens."""
import pytest
import torch

from common.theory.association_views import (LIFT_KEY_POWER, frequent_partner_share, lifted_rows, normalised_rows,
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
    """{a: (lift⁻, b) of a's best pair} for every token a seen min_count times, partners seen min_count
    times as outputs: n (c − 2√c)₊ / (count(a) count(b)), by Python loops."""
    inputs, pairs = brute_force_counts(x, y, V)
    outputs = [sum(pairs[a][b] for a in range(V)) for b in range(V)]
    n = x.numel()
    best = {}
    for a in range(V):
        if inputs[a] < min_count:
            continue
        scores = {b: n * max(pairs[a][b] - 2 * pairs[a][b] ** 0.5, 0) / (inputs[a] * outputs[b])
                  for b in range(V) if outputs[b] >= min_count}
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


def test_lift_view_divides_by_both_frequencies_and_drops_rare_partners(markov_stats):
    x, y, V, stats = markov_stats
    inputs, pairs = brute_force_counts(x, y, V)
    n = x.numel()
    frequency = token_frequency(stats)
    counts = frequency * stats.n_positions
    min_count = sorted(inputs)[V // 2]
    lifted = lifted_rows(stats.bigram, frequency, counts, min_count)
    for a in range(V):
        for b in range(V):
            if inputs[b] < min_count:
                assert lifted[a, b] == -float("inf")
            elif inputs[a] == 0:
                assert lifted[a, b] == 0
            else:   # (P̂(a, b) − P̂(a)/V) / (P̂(a) P̂(b)) = P̂(b | a) / P̂(b) − 1/(V P̂(b))
                expected = (pairs[a][b] / inputs[a]) / (inputs[b] / n) - 1 / (V * inputs[b] / n)
                assert float(lifted[a, b]) == pytest.approx(expected, rel=1e-10)


def test_frequent_partner_share_by_brute_force(markov_stats):
    x, y, V, stats = markov_stats
    min_count = 20
    inputs, pairs = brute_force_counts(x, y, V)
    frequent = sorted(range(V), key=lambda a: (-inputs[a], a))[:2]
    rows = [a for a in range(V) if inputs[a] >= min_count]
    led = sum(max((b for b in range(V) if inputs[b] >= min_count), key=lambda b: (pairs[a][b], -b)) in frequent
              for a in rows)
    assert frequent_partner_share(stats.bigram, stats, "bigram", "raw", 2, min_count) == pytest.approx(led / len(rows))
