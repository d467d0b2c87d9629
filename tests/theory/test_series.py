"""The Taylor series of training (docs/theory.md §14): the jet computation against nested forward-mode
AD, an RK4 solution of the flow, the corpus statistics of §3, the hand-derived next-order terms of §10,
and its bad input."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from common.io import UserError
from common.theory.leading_terms import POWER_NAME, continuous_coefficients, next_order_matrices
from common.theory.model import AttentionOnlyTransformer
from common.theory.reference import nested_jvp_series
from common.theory.series import (coefficient_norms, gradient_flow_series, kind_of, partial_sum, radius_estimates,
                                  remainder_ratio)
from common.theory.statistics import CorpusStatistics, compute_statistics
from common.theory.weight_kinds import WEIGHT_KINDS


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("n_layers,order", [(1, 5), (3, 5)])
def test_jets_equal_nested_forward_mode(markov, n_layers, order):
    x, y = markov(7, 6, 9, seed=1)
    model = AttentionOnlyTransformer(9, 6, n_layers)
    jets = gradient_flow_series(model, x, y, order, chunk_size=3)
    nested = nested_jvp_series(model, x, y, order)
    assert len(jets) == order and set(jets[0]) == {name for name, _ in model.named_parameters()}
    for k in range(order):
        for name, expected in nested[k].items():
            assert jets[k][name].dtype == torch.float64
            if k + 1 < kind_of(name).power:          # below the leading power: exactly zero
                assert float(expected.abs().max()) < 1e-18 and not jets[k][name].any(), (k, name)
            else:
                assert relative(jets[k][name], expected) < 1e-12, (k + 1, name)


def test_chunks_and_shorter_sequences_do_not_change_the_series(markov):
    x, y = markov(9, 5, 8, seed=4)
    model = AttentionOnlyTransformer(8, 7, 2)            # seq_len 7 > T = 5: the position bias is cut
    whole, chunked = (gradient_flow_series(model, x, y, 5, chunk_size=size) for size in (9, 2))
    for k in range(5):
        for name in whole[k]:
            assert torch.allclose(whole[k][name], chunked[k][name], rtol=1e-12, atol=1e-22), (k, name)
    assert not whole[4]["layers.1.P"][5:].any()          # distances the data never has get no gradient


def test_leading_coefficients_are_the_statistics_of_section_3(markov):
    # docs/theory.md §3, continuous form: W_O = τB̄, V = τ²/2 (B̄Φ̄)ᵀ, W = τ⁴/8 Q̄, P = τ⁴/8 p̄, every layer
    x, y = markov(40, 8, 12, seed=5)
    stats = compute_statistics(x, y, 12)
    series = gradient_flow_series(AttentionOnlyTransformer(12, 8, 3), x, y, 4)
    unit = continuous_coefficients(1.0)
    assert [unit[POWER_NAME[k.power]] for k in WEIGHT_KINDS] == [1.0, 0.5, 1 / 8, 1 / 8]
    for name in series[0]:
        kind = kind_of(name)
        expected = unit[POWER_NAME[kind.power]] * getattr(stats, kind.statistic)
        assert relative(series[kind.power - 1][name], expected) < 1e-10, name
        assert all(not series[k][name].any() for k in range(kind.power - 1)), name


def rk4_flow(model, x, y, taus, step):
    """The full-batch gradient flow dθ/dτ = −∇L(θ) from zero by classical RK4, float64."""
    buffers = dict(model.named_buffers())

    def loss(params):
        logits = functional_call(model, (params, buffers), (x,))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def velocity(params):
        return {k: -g for k, g in grad(loss)(params).items()}

    def shifted(params, direction, h):
        return {k: params[k] + h * direction[k] for k in params}

    params = {name: torch.zeros_like(p, dtype=torch.float64) for name, p in model.named_parameters()}
    tau, solutions = 0.0, {}
    for target in taus:
        for _ in range(round((target - tau) / step)):
            k1 = velocity(params)
            k2 = velocity(shifted(params, k1, step / 2))
            k3 = velocity(shifted(params, k2, step / 2))
            k4 = velocity(shifted(params, k3, step))
            params = {k: params[k] + step / 6 * (k1[k] + 2 * k2[k] + 2 * k3[k] + k4[k]) for k in params}
        tau, solutions[target] = target, params
    return solutions


@pytest.mark.parametrize("n_layers", [1, 3])
def test_partial_sums_approach_the_flow_order_by_order(markov, n_layers):
    # docs/theory.md §14's table: at τ = 1 and 2 the error of every weight's partial sum falls with
    # every order added, and by at least 10× from the leading term to order 6
    x, y = markov(30, 6, 10, seed=3)
    model = AttentionOnlyTransformer(10, 6, n_layers).double()
    series = gradient_flow_series(model, x, y, 6)
    for tau, flow in rk4_flow(model, x, y, [1.0, 2.0], 0.01).items():
        for name, weight in flow.items():
            errors = [relative(partial_sum(series, name, tau, K), weight) for K in range(kind_of(name).power, 7)]
            assert all(later < earlier for earlier, later in zip(errors, errors[1:])), (tau, name, errors)
            assert errors[-1] * 10 < errors[0], (tau, name, errors)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_hand_derived_next_order_terms_are_the_series_coefficients(markov, n_layers):
    # docs/theory.md §10's order-2 terms (common/theory/leading_terms.py) against c_2, c_3: W_O's are
    # complete (L = 1, 3); V's one-layer terms are the whole of c_3 at every depth.  What they miss is
    # beyond: V's c_4, which the layers feed — many times larger at L = 3 than at L = 1.
    V, T = 30, 12
    x, y = markov(64, T, V, seed=11)
    stats = compute_statistics(x, y, V, keep=CorpusStatistics.TENSOR_FIELDS + ("context_input",))
    unit = continuous_coefficients(1.0)
    series = gradient_flow_series(AttentionOnlyTransformer(V, T, n_layers), x, y, 4, chunk_size=64)
    by_power = lambda terms, names: sum(unit[name] * matrix for name, matrix in terms if name in names)
    terms = next_order_matrices(stats, n_layers)
    assert relative(series[1]["W_O"], by_power(terms["W_O"], {"tau2"})) < 1e-10
    assert relative(series[2]["W_O"], by_power(terms["W_O"], {"tau3", "tau3_sq"})) < 1e-10
    value_terms = by_power(next_order_matrices(stats, 1)["V"], {"tau3", "tau3_sq"})
    for l in range(n_layers):
        assert relative(series[2][f"layers.{l}.V"], value_terms) < 1e-10, l
    if n_layers == 3:
        one_layer = gradient_flow_series(AttentionOnlyTransformer(V, T, 1), x, y, 4, chunk_size=64)
        missed = [float(series[3][f"layers.{l}.V"].norm() / one_layer[3]["layers.0.V"].norm()) for l in range(3)]
        assert min(missed) > 5, missed


def test_remainder_ratio_and_norms(markov):
    x, y = markov(10, 6, 9, seed=2)
    series = gradient_flow_series(AttentionOnlyTransformer(9, 6, 2), x, y, 6)
    taus = [0.5, 3.0, 20.0]
    for name in ("W_O", "layers.1.V", "layers.0.W"):
        power = kind_of(name).power
        direct = [float((partial_sum(series, name, tau) - partial_sum(series, name, tau, power)).norm()
                        / (series[power - 1][name] * tau ** power).norm()) for tau in taus]
        assert remainder_ratio(series, name, taus) == pytest.approx(direct, rel=1e-9)
    assert remainder_ratio(series[:4], "layers.0.W", taus) == [None] * 3      # nothing beyond τ⁴
    norms = coefficient_norms(series)
    assert norms["W_O"][0] == pytest.approx(float(series[0]["W_O"].norm()))
    assert len(norms["layers.0.P"]) == 6 and norms["layers.0.P"][:3] == [0.0, 0.0, 0.0]


def test_radius_estimates_of_known_series():
    # 1/(1 − τ/R)^2 has c_k = (k+1)/R^k: the two-step ratio (k+1)/(k−1)/R² → 1/R² with a 1/k correction that
    # the Domb–Sykes line removes; alternating sizes (even orders 1000× smaller) do not mislead the two-step ratio
    R = 7.0
    norms = [(k + 1) / R ** k for k in range(1, 13)]
    estimates = radius_estimates(norms)
    assert estimates["domb_sykes"] == pytest.approx(R, rel=0.02)
    assert estimates["ratio"] == pytest.approx(R, rel=0.15) and estimates["root"] == pytest.approx(R, rel=0.3)
    alternating = [n * (1e-3 if k % 2 == 0 else 1.0) for k, n in enumerate(norms, start=1)]
    assert radius_estimates(alternating)["ratio"] == pytest.approx(estimates["ratio"], rel=1e-9)
    assert radius_estimates([0.0, 0.0, 0.0, 1e-9], first=4) == {"ratio": None, "root": 1e-9 ** -0.25,
                                                                   "domb_sykes": None}


def test_bad_input(markov):
    x, y = markov(4, 5, 8, seed=0)
    model = AttentionOnlyTransformer(8, 5, 1)
    with torch.no_grad():
        model.layers[0].V[1, 2] = 0.01
    with pytest.raises(UserError, match="zero initialisation.*layers.0.V"):
        gradient_flow_series(model, x, y, 3)
    model = AttentionOnlyTransformer(8, 4, 1)
    for args, message in [((x, y, 3), "exceeds the model's seq_len"), ((x[:, :4], y[:, :4], 0), "order"),
                          ((x[:0, :4], y[:0, :4], 2), "non-empty"), ((x[:, :4] + 8, y[:, :4], 2), r"\[0, 8\)")]:
        with pytest.raises(UserError, match=message):
            gradient_flow_series(model, *args)


# -- the masked-language-model variants (docs/theory.md §16) ----------------------------------------------
RESIDUAL = dict(causal=False)                                      # residual + trained W_O, all positions
IDENTITY = dict(causal=False, residual=False, output="identity")   # Li, Li & Risteski 2023's model


def masked_batch(markov, n_seq, T, n_words, seed):
    """Clean Markov sequences over n_words words, one fixed corruption draw (common/theory/masking.py):
    (x̃, y = the clean tokens, selected), the MASK token the last id n_words."""
    from common.theory.masking import MaskingScheme, corrupt
    x, _ = markov(n_seq, T, n_words, seed=seed)
    x_tilde, selected = corrupt(x, MaskingScheme(n_words, n_words, mask_prob=0.4),
                                torch.Generator().manual_seed(seed))
    return x_tilde, x, selected


@pytest.mark.parametrize("variant,n_layers", [(RESIDUAL, 1), (RESIDUAL, 2), (IDENTITY, 1), (dict(causal=True), 1)])
def test_masked_variants_equal_nested_forward_mode(markov, variant, n_layers):
    # the jets against nested jvp with the loss on the selected positions; each kind's leading power is
    # read off the ground truth (its first non-zero coefficient) and must be the variant's table entry
    from common.theory.weight_kinds import model_variant
    x_tilde, y, selected = masked_batch(markov, 7, 6, 8, seed=1)
    model = AttentionOnlyTransformer(9, 6, n_layers, **variant)
    order = 5
    jets = gradient_flow_series(model, x_tilde, y, order, chunk_size=3, selected=selected)
    nested = nested_jvp_series(model, x_tilde, y, order, selected=selected)
    variant_name = model_variant(model)
    for name in nested[0]:
        first = next(k + 1 for k in range(order) if float(nested[k][name].abs().max()) > 1e-15)
        assert first == kind_of(name, variant_name).power, (name, first)
        for k in range(order):
            if k + 1 < first:
                assert not jets[k][name].any(), (k, name)
            else:
                assert relative(jets[k][name], nested[k][name]) < 1e-12, (k + 1, name)


@pytest.mark.parametrize("variant,n_layers", [(RESIDUAL, 3), (IDENTITY, 1)])
def test_masked_leading_coefficients_are_the_masked_statistics(markov, variant, n_layers):
    # docs/theory.md §16: residual W_O c₁ = B̄ₘ, V c₂ = ½(B̄ₘΦ̄ₘ)ᵀ, W c₄ = Q̄ₘ/8, P c₄ = p̄ₘ/8 in every layer;
    # identity V c₁ = Φ̄ₘᵀ, W c₂ = ½Q̄', P c₂ = ½p̄' (G = Φ̄ₘᵀ) — statistic and power from the variant's table
    from common.theory.leading_terms import theory_matrices
    from common.theory.masked_statistics import masked_statistics
    from common.theory.weight_kinds import model_variant, weight_kinds
    x_tilde, y, selected = masked_batch(markov, 40, 8, 11, seed=5)
    model = AttentionOnlyTransformer(12, 8, n_layers, **variant)
    name = model_variant(model)
    stats = masked_statistics(x_tilde, y, selected, 12, variant=name)
    theory = theory_matrices(stats, name)
    series = gradient_flow_series(model, x_tilde, y, max(k.power for k in weight_kinds(name)), selected=selected)
    unit = continuous_coefficients(1.0)
    assert set(series[0]) == {p for p, _ in model.named_parameters()}
    for parameter in series[0]:
        kind = kind_of(parameter, name)
        expected = unit[POWER_NAME[kind.power]] * theory[kind.name]
        assert relative(series[kind.power - 1][parameter], expected) < 1e-10, parameter
        assert all(not series[k][parameter].any() for k in range(kind.power - 1)), parameter


def test_masked_normalisation_spans_every_chunk(markov):
    # the mean is over the selected positions of the whole batch, whatever the chunks (one holds none)
    x_tilde, y, selected = masked_batch(markov, 8, 5, 7, seed=3)
    selected[:2] = False
    model = AttentionOnlyTransformer(8, 5, 2, **RESIDUAL)
    whole, chunked = (gradient_flow_series(model, x_tilde, y, 4, chunk_size=size, selected=selected) for size in (8, 2))
    for k in range(4):
        for name in whole[k]:
            assert torch.allclose(whole[k][name], chunked[k][name], rtol=1e-12, atol=1e-22), (k, name)
    # every position selected is the unmasked objective
    everything = gradient_flow_series(model, x_tilde, y, 2, selected=torch.ones_like(selected))
    plain = gradient_flow_series(model, x_tilde, y, 2)
    assert all(torch.allclose(everything[k][n], plain[k][n], rtol=1e-13, atol=1e-22) for k in range(2) for n in plain[k])


def test_stacked_identity_layers_stay_at_zero(markov):
    # without the residual, a second layer's V and the first's feed each other only through zero:
    # gradient flow from zero never moves (the jets say so exactly, as does nested jvp)
    x_tilde, y, selected = masked_batch(markov, 4, 5, 6, seed=2)
    model = AttentionOnlyTransformer(7, 5, 2, **IDENTITY)
    series = gradient_flow_series(model, x_tilde, y, 3, selected=selected)
    nested = nested_jvp_series(model, x_tilde, y, 3, selected=selected)
    assert all(not series[k][n].any() and not nested[k][n].any() for k in range(3) for n in series[k])


def test_masked_bad_input(markov):
    x_tilde, y, selected = masked_batch(markov, 4, 5, 6, seed=0)
    model = AttentionOnlyTransformer(7, 5, 1, **RESIDUAL)
    with pytest.raises(UserError, match="boolean"):
        gradient_flow_series(model, x_tilde, y, 2, selected=selected[:, :4])
    with pytest.raises(UserError, match="no position"):
        gradient_flow_series(model, x_tilde, y, 2, selected=torch.zeros_like(selected))
    for variant in (dict(residual=False), dict(output="identity")):
        with pytest.raises(UserError, match="no leading-term theory"):
            gradient_flow_series(AttentionOnlyTransformer(7, 5, 1, **variant), x_tilde, y, 2)


def test_same_inputs_give_the_same_bytes(markov):
    from common.device import configure_numerics
    before = torch.are_deterministic_algorithms_enabled()
    configure_numerics(True)
    try:
        x, y = markov(6, 6, 9, seed=8)
        model = AttentionOnlyTransformer(9, 6, 2)
        first, second = (gradient_flow_series(model, x, y, 5, chunk_size=4) for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(before)
    assert all(torch.equal(a[name], b[name]) for a, b in zip(first, second) for name in a)
