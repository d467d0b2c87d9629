"""The association report (common/tiny/report.py): the strongest-association tokens, the normalised view,
the planted pairs and the view the file says it shows (docs/theory.md §2)."""
import re

import datasets
import pytest
import torch

from common.io import UserError
from common.theory.leading_terms import predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.theory.association_views import (LIFT_KEY_POWER, frequent_partner_share, statistic_view,
                                              strongest_association_tokens, strongest_pair_table, token_frequency,
                                              weight_view)
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
    lifted = statistic_view(stats, "context", "lift")[bird]
    best = [vocabulary[i] for i in lifted.topk(3).indices.tolist() if torch.isfinite(lifted[i])]
    context_row = next(line for line in section(report, "bird").splitlines() if line.startswith("| Φ̄ |"))
    assert best and re.findall(r"`([^`]+)`", context_row) == best
    # Q̄ and the W that learns it: divided by P̂(a) P̂(b)², so their rows follow that order
    for label, matrix in [("Q̄", stats.attention_map), ("W (layer 1)", model.layers[1].W)]:
        lifted = weight_view(matrix, stats, "attention_map", "lift")[bird]
        best = [vocabulary[i] for i in lifted.topk(3).indices.tolist() if torch.isfinite(lifted[i])]
        line = next(line for line in section(report, "bird").splitlines() if line.startswith(f"| {label} |"))
        assert re.findall(r"`([^`]+)`", line) == best


def row_values(line):
    """[(word, value)] of a report row."""
    return [(w, float(v)) for w, v in re.findall(r"`([^`]+)` ([-\d.e+]+)", line)]


def test_report_lift_rows_are_the_views_rows_and_head_with_the_strongest_pair(story_report_inputs):
    """One rule: every lift row of the report (statistics and trained weights) lists the top partners of
    association_views' lift view, with its values, leaving out what it does not show; and the strongest
    pair a → b of the table heads a's B̄ row with the table's lift⁻ (the issue: `pablo → galindo` led the
    table while pablo's row showed only negative filler)."""
    model, stats, vocabulary, tokens = story_report_inputs
    table = strongest_pair_table(stats, 3)
    words = ",".join(vocabulary[r["a"]] for r in table)
    report = association_report(model, stats, vocabulary, tokens, top=4, n_tokens=1, words=words, view="lift")
    matrices = [(s.field, s.symbol, None) for s in TOKEN_STATISTICS]
    matrices += [(field, name, weight) for field, weights in trained_weights_by_statistic(model).items()
                 for name, weight in weights]
    for row in table:
        a = row["a"]
        text = section(report, vocabulary[a])
        for field, label, weight in matrices:
            lifted = statistic_view(stats, field, "lift") if weight is None else weight_view(weight, stats, field, "lift")
            line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
            values = lifted[a].clone()
            if field == "interchangeability" and weight is None:
                values[a] = -float("inf")
            top = [i for i in values.topk(4).indices.tolist() if torch.isfinite(values[i])]
            assert [w for w, _ in row_values(line)] == [vocabulary[i] for i in top], (label, vocabulary[a])
            assert [v for _, v in row_values(line)] == pytest.approx([float(values[i]) for i in top], rel=6e-3)
        first = row_values(next(line for line in text.splitlines() if line.startswith("| B̄ |")))[0]
        assert first == (vocabulary[row["b"]], pytest.approx(row["lift_lower"], rel=6e-3))


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
    least twofold from the raw view, and below 40% (B̄ and Q̄ keep about a third: the discount by the pair
    count's noise favours well-supported template pairs such as `near → the`, which are real)."""
    vocabulary, stats = demo_stats
    predicted = predicted_weights(stats, 1.0, 20)
    matrices = [(s.field, getattr(stats, s.field)) for s in TOKEN_STATISTICS]
    matrices += [("bigram", predicted["W_O"]), ("value_map", predicted["V"]), ("attention_map", predicted["W"])]
    for field, matrix in matrices:
        raw = frequent_partner_share(matrix, stats, field, "raw", 10)
        lift = frequent_partner_share(matrix, stats, field, "lift", 10)
        assert lift <= raw / 2 and lift < 0.4, (field, raw, lift)
    # Q̄ needs its second P̂(b): divided by P̂(a) P̂(b) only, frequent keys still lead most rows
    frequency = token_frequency(stats)
    counts = frequency * stats.n_positions
    once = stats.attention_map.double() / (frequency[:, None] * frequency[None, :])
    once[:, counts < 10] = -float("inf")
    rows = torch.nonzero(counts >= 10).flatten()
    frequent = frequency.argsort(descending=True)[:10]
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


@pytest.mark.parametrize("view", ["raw", "lift"])
def test_masked_runs_report_labels_the_mask_row_and_never_offers_it_as_an_output(story_report_inputs, view):
    """A masked run (docs/theory.md §16) on a fake vocabulary: the words + `<mask>` as the last id, a third
    of the inputs masked.  The report heads MASK's section "`<mask>` (MASK)", shows its input rows (B̄,
    (B̄Φ̄)ᵀ, Q̄ and the weights), says Σ_B and Φ̄ have no MASK row, and lists MASK as no partner of B̄, W_O or
    Σ_B in any section."""
    from types import SimpleNamespace
    from common.tiny.report import mask_id_of
    _, _, vocabulary, tokens = story_report_inputs
    V = len(vocabulary)
    x, y = tokens[:, :-1].clone(), tokens[:, 1:]
    x[:, ::3] = V
    stats = compute_statistics(x, y, V + 1)
    model = AttentionOnlyTransformer(V + 1, 16, 1)
    with torch.no_grad():
        model.W_O.copy_(predicted_weights(stats, 0.5, 20)["W_O"])
        model.W_O[:, V] = 1.0          # a MASK column that would lead every raw W_O row if offered
    masked_vocabulary = vocabulary + ["<mask>"]
    assert mask_id_of(SimpleNamespace(objective="masked"), masked_vocabulary) == V
    assert mask_id_of(SimpleNamespace(objective="causal"), masked_vocabulary) is None
    report = association_report(model, stats, masked_vocabulary, tokens, top=3, n_tokens=2, view=view, mask_id=V)
    assert re.findall(r"^## `(.+)`", report, flags=re.M)[-1] == "<mask>"
    assert "## `<mask>` (MASK)" in report
    mask = report[report.index("## `<mask>` (MASK)"):]
    for symbol in ("Σ_B", "Φ̄"):
        assert f"| {symbol} |" in mask and "MASK is never an output: no row" in next(
            line for line in mask.splitlines() if line.startswith(f"| {symbol} |"))
    for label in ("B̄", "Q̄", "W_O"):
        line = next(line for line in mask.splitlines() if line.startswith(f"| {label} |"))
        assert row_values(line), label
    for line in report.splitlines():
        if line.startswith(("| B̄ |", "| W_O |", "| Σ_B |")):
            assert "`<mask>`" not in line, line


def test_the_weight_table_counts_only_the_steps_w_and_p_trained(story_report_inputs):
    """A run whose first stage held W and P at zero: the table's relative errors are those of
    theory_entry with that stage (W and P predicted from the steps they trained), not of a run without it."""
    from common.theory.alignment import theory_entry
    model, stats, vocabulary, tokens = story_report_inputs

    def error_cell(report, key):
        return re.search(rf"\| `{key}` \| [-\d.]+ \| ([^|]+) \|", report).group(1).strip()

    plain = association_report(model, stats, vocabulary, tokens, top=1, n_tokens=1, lr=0.5, step=20)
    staged = association_report(model, stats, vocabulary, tokens, top=1, n_tokens=1, lr=0.5, step=20,
                                uniform_attention_steps=10)
    expected = theory_entry(model, stats, 0.5, 20, 10)["layer_0_W_Q_bar_rel_err"]
    assert error_cell(staged, "layer_0_W_Q_bar") == f"{expected:.3g}"
    assert error_cell(plain, "layer_0_W_Q_bar") != error_cell(staged, "layer_0_W_Q_bar")
    # V and W_O trained throughout: the same in both
    assert error_cell(plain, "layer_0_V_B_bar_Phi_bar") == error_cell(staged, "layer_0_V_B_bar_Phi_bar")
