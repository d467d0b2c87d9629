"""Each weight against the theory (common/theory/alignment.py): the log keys of every weight, cosines and
relative errors against a brute-force computation on a model whose weights are set by hand."""
import pytest
import torch

from common.theory.alignment import named_weights, path_entry, theory_entry
from common.theory.leading_terms import predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.theory.statistics import compute_statistics
from conftest import markov_tokens


def cosine(a, b):
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def test_named_weights_cover_every_parameter_once():
    model = AttentionOnlyTransformer(7, 5, 2)
    seen = [weight for _, _, weight in named_weights(model)]
    assert len(seen) == len(list(model.parameters()))
    assert {id(w) for w in seen} == {id(p) for p in model.parameters()}
    keys = [key for key, _, _ in named_weights(model)]
    assert keys[0] == "W_O_B_bar" and "layer_1_W_Q_bar" in keys and "layer_0_P_p_bar" in keys


def test_theory_and_path_entries_against_brute_force():
    x, y = markov_tokens(12, 6, 9)
    stats = compute_statistics(x, y, 9)
    model = AttentionOnlyTransformer(9, 6, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    lr, step = 0.3, 4
    entry = theory_entry(model, stats, lr, step)
    predicted = predicted_weights(stats, lr, step)
    assert entry["W_O_B_bar"] == pytest.approx(cosine(model.W_O, stats.bigram), abs=1e-12)
    assert entry["layer_1_W_Q_bar"] == pytest.approx(cosine(model.layers[1].W, stats.attention_map), abs=1e-12)
    expected = float((model.layers[0].V.detach().double() - predicted["V"]).norm() / predicted["V"].norm())
    assert entry["layer_0_V_B_bar_Phi_bar_rel_err"] == pytest.approx(expected, rel=1e-10)
    # a zero prediction has no relative error
    assert theory_entry(model, stats, lr, 2)["layer_0_W_Q_bar_rel_err"] is None
    paths = path_entry(model, predicted)
    assert paths["layer_1_P_path"] == pytest.approx(cosine(model.layers[1].P, stats.position_map), abs=1e-12)
    assert paths["W_O_path_rel_err"] == pytest.approx(entry["W_O_B_bar_rel_err"], rel=1e-12)
