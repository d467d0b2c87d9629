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


def random_weights(vocab_size, seq_len, n_layers, **variant):
    """A model of the given variant with every weight drawn at random (seed 0)."""
    model = AttentionOnlyTransformer(vocab_size, seq_len, n_layers, **variant)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


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
    model = random_weights(9, 6, 2)
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


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_masked_entries_keep_the_causal_keys(variant):
    # docs/theory.md §16: the same log keys as causal runs; the identity variant has no W_O (frozen) and its
    # layer_{l}_V_B_bar_Phi_bar holds cos(V, Φ̄ₘᵀ); relative errors use the variant's powers
    from common.theory.masked_statistics import masked_statistics
    from common.theory.masking import MaskingScheme, corrupt
    x, _ = markov_tokens(12, 6, 8)
    x_tilde, selected = corrupt(x, MaskingScheme(8, 8, mask_prob=0.4), torch.Generator().manual_seed(0))
    stats = masked_statistics(x_tilde, x, selected, 9, variant=variant)
    kwargs = dict(causal=False) if variant == "residual" else dict(causal=False, residual=False, output="identity")
    model = random_weights(9, 6, 2, **kwargs)
    lr, step = 0.3, 4
    entry = theory_entry(model, stats, lr, step)
    keys = [f"layer_{l}_{k}" for l in range(2) for k in ("V_B_bar_Phi_bar", "W_Q_bar", "P_p_bar")]
    keys = (["W_O_B_bar"] if variant == "residual" else []) + keys
    assert set(entry) == set(keys) | {f"{k}_rel_err" for k in keys}
    value = stats.value_map if variant == "residual" else stats.context.T
    assert entry["layer_1_V_B_bar_Phi_bar"] == pytest.approx(cosine(model.layers[1].V, value), abs=1e-12)
    assert entry["layer_0_P_p_bar"] == pytest.approx(cosine(model.layers[0].P, stats.position_map), abs=1e-12)
    # the prediction's scalar: identity V ηs, W η²Σk; residual V η²Σk, W η⁴Σk²(k−1)/2
    v_scale, w_scale = (lr * step, lr ** 2 * 6) if variant == "identity" else (lr ** 2 * 6, lr ** 4 * 11)
    for kind, scale, matrix in (("V", v_scale, value), ("W", w_scale, stats.attention_map)):
        weight = getattr(model.layers[0], kind).detach().double()
        expected = float((weight - scale * matrix).norm() / (scale * matrix).norm())
        assert entry[f"layer_0_{kind}_{'B_bar_Phi_bar' if kind == 'V' else 'Q_bar'}_rel_err"] == pytest.approx(expected, rel=1e-10)
    paths = path_entry(model, predicted_weights(stats, lr, step, variant=variant))
    path_keys = (["W_O"] if variant == "residual" else []) + [f"layer_{l}_{k}" for l in range(2) for k in "VWP"]
    assert set(paths) == {f"{k}_path" for k in path_keys} | {f"{k}_path_rel_err" for k in path_keys}
    if variant == "identity":   # at step 1 W's prediction (η²·0) is still zero; V's is not
        first = theory_entry(model, stats, lr, 1)
        assert first["layer_0_W_Q_bar_rel_err"] is None and first["layer_0_V_B_bar_Phi_bar_rel_err"] is not None
        assert [key for key, _, _ in named_weights(model)][0] == "layer_0_V_B_bar_Phi_bar"
