"""The topic ablation grid (common/tiny/topic_ablation.py, docs/results.md §3): the cells, the probe batch of
the explanation test, the uniform-attention ratio against a loop, and the verdicts."""
import pytest
import torch

from common.io import UserError
from common.theory.masking import MaskingScheme, corrupt
from common.theory.model import AttentionOnlyTransformer
from common.theory.topic_measures import pair_bins
from common.tiny.topic_ablation import (TopicAblationConfig, cells, hypothesis_summary, probe_batch, uniform_ratio,
                                        verdicts)
from conftest import TOPICS, brute_bin


def test_the_grid_has_sixteen_cells_and_starts_deep_no_residual_cells_off_zero():
    grid = cells(TopicAblationConfig())
    assert len(grid) == 16 and len({c["name"] for c in grid}) == 16
    assert {(c["objective"], c["attention"], c["n_layers"], c["residual"]) for c in grid} == {
        (o, a, d, r) for o in ("masked", "causal") for a in ("all", "causal") for d in (1, 3) for r in (True, False)}
    for c in grid:
        assert c["output"] == ("trained" if c["residual"] else "identity")
        assert c["init_std"] == (0.1 if (not c["residual"] and c["n_layers"] == 3) else 0.0)
    with pytest.raises(UserError, match="--objectives"):
        cells(TopicAblationConfig(objectives=["bert"]))
    with pytest.raises(UserError, match="--depths"):
        cells(TopicAblationConfig(depths=[0]))


def test_probe_batch_is_one_seeded_draw_or_the_next_token_shift():
    sequences = torch.randint(0, 6, (4, 9), generator=torch.Generator().manual_seed(0))
    scheme = MaskingScheme(6, 6)
    probe = probe_batch("masked", sequences, scheme, seed=3)
    corrupted, selected = corrupt(sequences[:, :-1], scheme, torch.Generator().manual_seed(3))
    assert torch.equal(probe["inputs"], corrupted) and torch.equal(probe["selected"], selected)
    assert torch.equal(probe["clean"], sequences[:, :-1]) and torch.equal(probe["targets"], sequences[:, :-1])
    causal = probe_batch("causal", sequences, None, seed=3)
    assert torch.equal(causal["inputs"], sequences[:, :-1]) and torch.equal(causal["targets"], sequences[:, 1:])
    assert causal["selected"] is None


@pytest.mark.parametrize("causal", [True, False])
def test_uniform_ratio_against_a_loop(causal):
    tokens = torch.randint(0, 6, (5, 7), generator=torch.Generator().manual_seed(1))
    model = AttentionOnlyTransformer(6, 7, 3, init_std=0.5, causal=causal)
    sums = {"same_topic": [], "different_topic": []}
    for n in range(5):
        for t in range(7):
            for s in (range(t) if causal else range(7)):
                name = brute_bin(int(tokens[n, t]), int(tokens[n, s]))
                if name in sums:
                    sums[name].append(1 / (t + 1) if causal else 1 / 7)
    expected = (sum(sums["same_topic"]) / len(sums["same_topic"])) / (
        sum(sums["different_topic"]) / len(sums["different_topic"]))
    assert uniform_ratio(model, pair_bins(TOPICS), tokens) == pytest.approx(expected)
    if not causal:
        assert expected == pytest.approx(1.0)


def _entry(step, ratios, queries):
    entry = {"step": step, "loss": 1.0}
    for layer, (r, q) in enumerate(zip(ratios, queries)):
        entry[f"attention_layer_{layer}"] = {"same_token": 0.1, "same_topic": 0.01 * r, "different_topic": 0.01}
        entry[f"query_topic_layer_{layer}"] = {"all_positions": q, "loss_positions": q, "gradient_weighted": q}
    return entry


def test_verdicts_read_the_last_ratio_against_uniform_and_the_first_query_topic():
    cell = {"name": "c", "n_layers": 3, "uniform_ratio": 1.0, "residual": True, "init_std": 0.0,
            "log": [_entry(10, [1.0, 1.0, 1.0], [0.1, 0.9, 0.9]), _entry(20, [1.03, 0.95, 1.002], [0.2, 0.9, 0.2])]}
    rows = verdicts(cell)
    assert [r["observed"] for r in rows] == ["rises", "turns", "flat"]
    assert [r["predicted"] for r in rows] == ["rises", "turns", "turns"]
    assert [r["agrees"] for r in rows] == [True, True, False]
    assert rows[0]["ratios"] == pytest.approx([1.0, 1.03]) and rows[2]["query_topic_last"] == 0.2
    shifted = verdicts(dict(cell, uniform_ratio=1.03))            # read against the uniform ratio
    assert [r["observed"] for r in shifted] == ["flat", "turns", "turns"]
    summary = hypothesis_summary([dict(cell, verdicts=rows)])
    assert summary["from_zero"] == {"moved": 2, "agree": 2, "disagree": []} and summary["random_init"]["moved"] == 0
    # without the residual nothing of the query bypasses the attention: its topic is not carried
    plain = verdicts(dict(cell, residual=False))
    assert [r["carried"] for r in plain] == [0.0, 0.0, 0.0] and [r["predicted"] for r in plain] == ["rises"] * 3
