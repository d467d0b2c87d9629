"""The association report (common/tiny/report.py): the strongest-association tokens, the normalised view,
the planted pairs and the view the file says it shows (docs/theory.md §2)."""
import re

import datasets
import pytest
import torch

from common.io import UserError
from common.theory.leading_terms import predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.theory.association_views import (LIFT_KEY_POWER, frequent_partner_share, lifted_rows, normalised_rows,
                                              statistic_view, strongest_association_tokens, strongest_pair_table,
                                              strongest_pairs, token_frequency, weight_view)
from common.tiny.report import association_report, trained_weights_by_statistic
from common.theory.statistics import compute_statistics
from common.corpus.tokenize import story_sequences, tokenize_natural
from common.theory.weight_kinds import TOKEN_STATISTICS
from conftest import PLANTED, tiny_stories


def test_strongest_pairs_put_planted_pairs_before_template_pairs_of_frequent_tokens(story_report_inputs):
    """tiny_stories: `bird → flew` (and the other planted pairs) against template pairs that always occur
    but lead to a frequent token (`to → the`, `went → to`, `house → .`: P̂(b | a) = 1 as for the planted
    pairs, and a ranking by P̂(b | a) put them first, the more frequent first): lift⁻ ranks every planted
    pair before every one of them."""
    _, stats, vocabulary, _ = story_report_inputs
    table = strongest_pair_table(stats, len(vocabulary), min_count=5)
    named = [(vocabulary[r["a"]], vocabulary[r["b"]]) for r in table]
    last_planted = max(named.index(pair) for pair in PLANTED.items())
    frequent = set(vocabulary[:3])                      # ids are frequency ranks: `the`, `.`, `to`
    templates = [i for i, (a, b) in enumerate(named) if b in frequent and table[i]["conditional"] == 1.0]
    assert len(templates) >= 3 and min(templates) > last_planted
    # what a ranking by the conditional alone (the former one) puts first: a template pair
    by_conditional = sorted(table, key=lambda r: (-r["conditional"], -r["count"]))
    assert vocabulary[by_conditional[0]["b"]] in frequent


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
    # the strongest-association tokens are always followed by their best partner, a rare token
    bigram = statistic_view(stats, "bigram")
    for row in strongest_pair_table(stats, 3):
        assert float(bigram[row["a"], row["b"]]) == pytest.approx(1 - 1 / len(vocabulary))
        assert vocabulary[row["b"]] not in vocabulary[:3]


def test_unknown_view_is_refused(story_report_inputs):
    model, stats, vocabulary, tokens = story_report_inputs
    with pytest.raises(UserError, match="report_view must be one of normalised, raw, both, lift"):
        association_report(model, stats, vocabulary, tokens, view="pmi")


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
    # Q̄ and the W that learns it: divided by P̂(a) P̂(b)², so their rows follow that order
    for label, matrix in [("Q̄", stats.attention_map), ("W (layer 1)", model.layers[1].W)]:
        lifted = weight_view(matrix, stats, "attention_map", "lift")[bird]
        best = [vocabulary[i] for i in lifted.topk(3).indices.tolist()]
        line = next(line for line in section(report, "bird").splitlines() if line.startswith(f"| {label} |"))
        assert re.findall(r"`([^`]+)`", line) == best


def test_lift_of_every_statistic_and_weight_matches_brute_force(story_report_inputs):
    """lift[a, b] = M[a, b] / (P̂(a) P̂(b)^p), p = 2 for Q̄ and W and 1 otherwise, partners seen fewer than
    min_count times −inf, from token counts taken by a Python loop over the training inputs."""
    model, stats, vocabulary, tokens = story_report_inputs
    V, min_count = len(vocabulary), 30
    counts = [0] * V
    for a in tokens[:, :-1].flatten().tolist():
        counts[a] += 1
    n = sum(counts)
    assert 0 < sum(c < min_count for c in counts) < V - 3          # some partners are left out, not all
    matrices = [(s.field, s.symbol, getattr(stats, s.field)) for s in TOKEN_STATISTICS]
    matrices += [(field, name, weight) for field, weights in trained_weights_by_statistic(model).items()
                 for name, weight in weights]
    assert {symbol for _, symbol, _ in matrices} >= {"B̄", "Q̄", "W_O", "W (layer 0)", "V (layer 1)"}
    for field, symbol, matrix in matrices:
        power = LIFT_KEY_POWER.get(field, 1)
        assert power == (2 if symbol in ("Q̄", "W (layer 0)", "W (layer 1)") else 1)
        lifted = weight_view(matrix, stats, field, "lift", min_count)
        M = matrix.detach().double()
        for a in range(V):
            for b in range(V):
                if counts[b] < min_count:
                    expected = -float("inf")
                else:
                    expected = float(M[a, b]) / ((counts[a] / n) * (counts[b] / n) ** power) if counts[a] else 0.0
                assert float(lifted[a, b]) == pytest.approx(expected, rel=1e-10, abs=1e-300), (symbol, a, b)
        if symbol == TOKEN_STATISTICS[0].symbol:
            assert torch.equal(statistic_view(stats, field, "lift", min_count), lifted)


@pytest.fixture(scope="module")
def demo_stats():
    """`make demo`'s corpus and sequences: 3000 synthetic stories, each one's first 65 tokens."""
    from common.corpus.synthetic import generate_stories
    stories, vocabulary, _, _ = tokenize_natural(datasets.Dataset.from_dict({"text": generate_stories(3000, 42)}))
    tokens = story_sequences(stories, 64, len(vocabulary)).long()
    return vocabulary, compute_statistics(tokens[:, :-1], tokens[:, 1:], len(vocabulary))


def test_the_demos_strongest_pairs_are_its_planted_pairs(demo_stats):
    """The table of the 40 strongest pairs holds every planted noun with one of its verbs (`bird → flew`
    was missing when the table ranked by P̂(b | a), led by template pairs such as `near → the` at 0.999)."""
    from common.corpus.synthetic import PLANTED_VERBS
    vocabulary, stats = demo_stats
    pairs = [(vocabulary[r["a"]], vocabulary[r["b"]]) for r in strongest_pair_table(stats, 40)]
    planted = [(a, b) for a, b in pairs if b in PLANTED_VERBS.get(a, [])]
    assert {a for a, _ in planted} == set(PLANTED_VERBS) and ("bird", "flew") in planted
    assert ("near", "the") not in pairs
    conditional = statistic_view(stats, "bigram") + 1 / len(vocabulary)
    assert float(conditional[vocabulary.index("near"), vocabulary.index("the")]) > 0.99


def test_in_the_lift_view_frequent_tokens_lead_few_rows_of_any_kind(demo_stats):
    """The claim of the lift view, for every row kind (each statistic, and the leading-term weights that
    learn them): the share of rows whose top partner is one of the 10 most frequent tokens falls at
    least threefold from the raw view, and below a quarter."""
    vocabulary, stats = demo_stats
    predicted = predicted_weights(stats, 1.0, 20)
    matrices = [(s.field, getattr(stats, s.field)) for s in TOKEN_STATISTICS]
    matrices += [("bigram", predicted["W_O"]), ("value_map", predicted["V"]), ("attention_map", predicted["W"])]
    for field, matrix in matrices:
        raw = frequent_partner_share(matrix, stats, field, "raw", 10)
        lift = frequent_partner_share(matrix, stats, field, "lift", 10)
        assert lift <= raw / 3 and lift < 0.25, (field, raw, lift)
    # Q̄ needs its second P̂(b): divided by P̂(a) P̂(b) only, frequent keys still lead most rows
    once = lifted_rows(stats.attention_map, token_frequency(stats), token_frequency(stats) * stats.n_positions)
    counts = token_frequency(stats) * stats.n_positions
    rows = torch.nonzero(counts >= 10).flatten()
    frequent = token_frequency(stats).argsort(descending=True)[:10]
    assert float(torch.isin(once[rows].argmax(dim=1), frequent).double().mean()) > 0.5


def test_the_report_states_the_unknown_token_rate(story_report_inputs):
    model, stats, vocabulary, tokens = story_report_inputs
    report = association_report(model, stats, vocabulary, tokens, top=2, n_tokens=1)
    assert "Unknown-token rate: 0 (no <unk> in the vocabulary" in report
    # a vocabulary ending in <unk> (tiny_tokenize_natural.py --keep_unknown=True): its share of the tokens
    with_unknown = vocabulary[:-1] + ["<unk>"]
    unknown = len(vocabulary) - 1
    share = float((tokens == unknown).double().mean())
    assert share > 0
    report = association_report(model, stats, with_unknown, tokens, top=2, n_tokens=1)
    assert f"Unknown-token rate: {share:.2%} of the training tokens ({int((tokens == unknown).sum()):,} of " \
           f"{tokens.numel():,}) are <unk>" in report
