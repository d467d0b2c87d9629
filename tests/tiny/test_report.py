"""The association report (common/tiny/report.py): the strongest-association tokens, the normalised view,
the planted pairs and the view the file says it shows (docs/theory.md §2)."""
import re

import datasets
import pytest
import torch

from common.io import UserError
from common.theory.leading_terms import predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.tiny.report import (association_report, lifted_rows, normalised_rows, statistic_view,
                           strongest_association_tokens, strongest_pairs, token_frequency)
from common.theory.statistics import compute_statistics
from common.corpus.tokenize import story_sequences, tokenize_natural
from common.theory.weight_kinds import TOKEN_STATISTICS
from conftest import PLANTED, tiny_stories


def brute_force_counts(x, y, vocab_size):
    """count of each input token and of each (input, next token) pair, by Python loops."""
    inputs, pairs = [0] * vocab_size, [[0] * vocab_size for _ in range(vocab_size)]
    for a, b in zip(x.flatten().tolist(), y.flatten().tolist()):
        inputs[a] += 1
        pairs[a][b] += 1
    return inputs, pairs


@pytest.fixture(scope="module")
def markov_stats():
    from conftest import markov_tokens
    x, y = markov_tokens(60, 12, 9, seed=4)
    # one more token than the chain uses: it never occurs, so its normalised rows must be 0, not NaN
    vocab_size = 10
    return x, y, vocab_size, compute_statistics(x, y, vocab_size)


def test_strongest_association_tokens_match_brute_force(markov_stats):
    x, y, V, stats = markov_stats
    inputs, pairs = brute_force_counts(x, y, V)
    strength = {a: max(pairs[a]) / inputs[a] - 1 / V for a in range(V) if inputs[a]}
    min_count = sorted(inputs)[V // 2]              # leaves out the rarer half of the tokens
    eligible = [a for a in strength if inputs[a] >= min_count]
    expected = sorted(eligible, key=lambda a: (-round(strength[a], 9), -inputs[a], a))
    assert 2 < len(expected) < V
    assert strongest_association_tokens(stats, V, min_count) == expected
    assert strongest_association_tokens(stats, 3, min_count) == expected[:3]
    pairs_found = strongest_pairs(stats, 3, min_count)
    for (a, b, value, count), a_expected in zip(pairs_found, expected):
        assert a == a_expected and count == inputs[a]
        assert pairs[a][b] == max(pairs[a]) and value == pytest.approx(strength[a], abs=1e-12)


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


@pytest.fixture(scope="module")
def story_report_inputs():
    stories, vocabulary, _, _ = tokenize_natural(datasets.Dataset.from_dict({"text": tiny_stories(64)}))
    tokens = story_sequences(stories, 16, len(vocabulary)).long()
    stats = compute_statistics(tokens[:, :-1], tokens[:, 1:], len(vocabulary))
    # a model whose weights are the §3 leading terms after 20 steps of η = 0.5: W_O = 10·B̄, …
    model = AttentionOnlyTransformer(len(vocabulary), 16, 2)
    predicted = predicted_weights(stats, 0.5, 20)
    with torch.no_grad():
        model.W_O.copy_(predicted["W_O"])
        for layer in model.layers:
            for kind in ("V", "W", "P"):
                getattr(layer, kind).copy_(predicted[kind])
    return model, stats, vocabulary, tokens


def section(report, word):
    start = report.index(f"## `{word}`")
    end = report.find("\n## ", start + 1)
    return report[start:end if end > 0 else None]


def first_value(line):
    """The first partner's value of a report row (`word value` or `word value (normalised)`)."""
    return [float(v) for v in re.search(r"\| `\w+` ([-\d.e+]+)(?: \(([-\d.e+]+)\))?", line).groups() if v]


@pytest.mark.parametrize("view", ["normalised", "raw", "both"])
def test_report_shows_the_planted_pairs_in_the_view_it_names(story_report_inputs, view):
    model, stats, vocabulary, tokens = story_report_inputs
    V = len(vocabulary)
    report = association_report(model, stats, vocabulary, tokens, top=3, n_tokens=2, words="bird,unicorn,dog",
                                lr=0.5, step=20, view=view)
    assert f"View: **{view}**" in report and report.count("View: **") == 1
    assert "Not in the vocabulary: unicorn." in report
    for animal, verb in PLANTED.items():
        if f"## `{animal}`" in report:
            text = section(report, animal)
            assert f"| B̄ | a → next token | `{verb}`" in text and f"| W_O | trained, as B̄ | `{verb}`" in text
    bird = section(report, "bird")
    bigram_row = next(line for line in bird.splitlines() if line.startswith("| B̄ |"))
    values = first_value(bigram_row)
    bird_id = vocabulary.index("bird")
    raw = float(stats.bigram[bird_id, vocabulary.index("flew")])
    # bird is always followed by flew: P̂(flew | bird) − 1/V = 1 − 1/V in the normalised view
    expected = {"raw": [raw], "normalised": [1 - 1 / V], "both": [raw, 1 - 1 / V]}[view]
    assert values == pytest.approx(expected, rel=2e-3)


def test_report_lists_frequent_and_strongest_tokens(story_report_inputs):
    model, stats, vocabulary, tokens = story_report_inputs
    report = association_report(model, stats, vocabulary, tokens, top=2, n_tokens=3)
    counts = torch.bincount(tokens.flatten(), minlength=len(vocabulary))
    headers = re.findall(r"^## `(.+)`$", report, flags=re.M)
    frequent = [vocabulary[i] for i in counts.argsort(descending=True, stable=True)[:3].tolist()]
    strongest = [vocabulary[i] for i in strongest_association_tokens(stats, 3)]
    assert headers == frequent + [w for w in strongest if w not in frequent]
    # the strongest-association tokens are followed by one token every time they occur
    bigram = statistic_view(stats, "bigram")
    for word in strongest:
        assert float(bigram[vocabulary.index(word)].max()) == pytest.approx(1 - 1 / len(vocabulary))


def test_unknown_view_is_refused(story_report_inputs):
    model, stats, vocabulary, tokens = story_report_inputs
    with pytest.raises(UserError, match="report_view must be one of normalised, raw, both, lift"):
        association_report(model, stats, vocabulary, tokens, view="pmi")


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


def test_report_lift_view_ranks_partners_by_lift(story_report_inputs):
    model, stats, vocabulary, tokens = story_report_inputs
    report = association_report(model, stats, vocabulary, tokens, top=3, n_tokens=1, words="bird", view="lift")
    assert "View: **lift**" in report and "ranked by that lift" in report
    bird = vocabulary.index("bird")
    frequency = token_frequency(stats)
    lifted = lifted_rows(stats.context[bird:bird + 1], frequency[bird:bird + 1], frequency * stats.n_positions)[0]
    best = [vocabulary[i] for i in lifted.topk(3).indices.tolist()]
    context_row = next(line for line in section(report, "bird").splitlines() if line.startswith("| Φ̄ |"))
    assert re.findall(r"`([^`]+)`", context_row) == best
