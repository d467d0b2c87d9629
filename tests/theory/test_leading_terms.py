import pytest
import torch

from common.theory.leading_terms import leading_coefficients, predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.theory.similarity import matrix_cosine, relative_error
from common.theory.statistics import compute_statistics


def train_full_batch(x, y, V, T, n_layers, lr, steps):
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(V, T, n_layers).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(x, y).backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("n_layers", [1, 3])
def test_theorem_full_batch_sgd(markov, n_layers):
    V, T, lr, steps = 30, 12, 0.5, 5
    x, y = markov(64, T, V, seed=11)
    stats = compute_statistics(x, y, V)
    model = train_full_batch(x, y, V, T, n_layers, lr, steps)
    predicted = predicted_weights(stats, lr, steps)
    pairs = [("W_O", model.W_O)] + [(k, getattr(layer, k)) for layer in model.layers for k in ("V", "W", "P")]
    for name, weight in pairs:
        assert relative_error(weight, predicted[name]) < 0.02, name
        assert matrix_cosine(weight, predicted[name]) > 0.9999, name


def test_prediction_fails_for_wrong_orientation(markov):
    # the test above must be able to fail: the transposed Q̄ (the release's Pythia orientation)
    # and a wrong step count are clearly rejected
    V, T, lr, steps = 30, 12, 0.5, 5
    x, y = markov(64, T, V, seed=11)
    stats = compute_statistics(x, y, V)
    model = train_full_batch(x, y, V, T, 1, lr, steps)
    predicted = predicted_weights(stats, lr, steps)
    assert matrix_cosine(model.layers[0].W, predicted["W"].T) < 0.999
    assert relative_error(model.W_O, predicted_weights(stats, lr, steps + 1)["W_O"]) > 0.1


def test_coefficients():
    c = leading_coefficients(0.5, 5)
    assert c["W_O"] == 2.5
    assert c["V"] == 0.25 * 10
    assert c["W"] == c["P"] == 0.5 ** 4 * (0 + 0 + 2 + 9 + 24)


@pytest.mark.parametrize("n_layers,lr,steps,kinds", [(1, 0.5, 18, ("W_O",)), (1, 0.5, 8, ("V",)),
                                                     (3, 0.5, 12, ("W_O",))])
def test_next_order_terms_against_autograd(markov, n_layers, lr, steps, kinds):
    # docs/theory.md §10: full-batch SGD at a τ = ηs where the leading term is 1–3% off; the order-2
    # prediction must be at least 5× closer, for every kind that has an order-2 term
    from common.theory.statistics import CorpusStatistics
    V, T = 30, 12
    x, y = markov(64, T, V, seed=11)
    stats = compute_statistics(x, y, V, keep=CorpusStatistics.TENSOR_FIELDS + ("context_input",))
    model = train_full_batch(x, y, V, T, n_layers, lr, steps)
    first = predicted_weights(stats, lr, steps)
    second = predicted_weights(stats, lr, steps, order=2, n_layers=n_layers)
    weights = {"W_O": [model.W_O], "V": [layer.V for layer in model.layers]}
    for kind in kinds:
        for weight in weights[kind]:
            leading = relative_error(weight, first[kind])
            assert 0.01 <= leading <= 0.03, (kind, leading)
            assert relative_error(weight, second[kind]) * 5 <= leading, kind


def test_order_two_leaves_underived_kinds_at_order_one(markov):
    from common.theory.leading_terms import next_order_matrices
    from common.theory.statistics import CorpusStatistics
    x, y = markov(8, 6, 10, seed=1)
    stats = compute_statistics(x, y, 10, keep=CorpusStatistics.TENSOR_FIELDS + ("context_input",))
    first, second = predicted_weights(stats, 0.5, 6), predicted_weights(stats, 0.5, 6, order=2, n_layers=3)
    for kind in ("V", "W", "P"):     # V's order-2 term is derived for one layer only
        assert torch.equal(first[kind], second[kind]), kind
    assert not torch.equal(first["W_O"], second["W_O"])
    assert set(next_order_matrices(stats, 1)) == {"W_O", "V"}
    with pytest.raises(ValueError, match="context_input"):
        predicted_weights(compute_statistics(x, y, 10), 0.5, 6, order=2)


def full_batch_masked_sgd(variant, V, T, lr, steps, batch, hold_attention=0, after_step=None):
    """A one-layer masked model of the variant trained from zero by full-batch SGD on batch (x̃, y, selected),
    W and P held at zero for the first `hold_attention` steps; `after_step(step, model)` after each step."""
    model = AttentionOnlyTransformer(V, T, 1, causal=False, residual=variant == "residual",
                                     output="trained" if variant == "residual" else "identity").double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(steps):
        optimizer.zero_grad()
        model.loss(*batch).backward()
        if step < hold_attention:
            model.layers[0].W.grad = model.layers[0].P.grad = None
        optimizer.step()
        if after_step is not None:
            after_step(step, model)
    return model


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_masked_discrete_forms_against_autograd(markov, variant):
    # docs/theory.md §16 in discrete SGD form, full-batch steps on one fixed corruption draw: residual
    # W_O ηs·B̄ₘ, V η²Σk·(B̄ₘΦ̄ₘ)ᵀ, W, P η⁴Σk²(k−1)/2·(Q̄ₘ, p̄ₘ); identity V ηs·Φ̄ₘᵀ, W, P η²Σk·(Q̄', p̄').
    # The discrete sums, not their continuous limits (τ²/2 = 4.5 against η²Σk = 3.75 here), are what SGD does.
    from common.theory.leading_terms import POWER_NAME, continuous_coefficients
    from common.theory.masked_statistics import masked_statistics
    from common.theory.masking import MaskingScheme, corrupt
    from common.theory.weight_kinds import weight_kinds
    n_words, T, lr, steps = 15, 10, 0.5 if variant == "identity" else 0.05, 6
    x, _ = markov(48, T, n_words, seed=6)
    x_tilde, selected = corrupt(x, MaskingScheme(n_words, n_words, mask_prob=0.3), torch.Generator().manual_seed(0))
    V = n_words + 1
    model = full_batch_masked_sgd(variant, V, T, lr, steps, (x_tilde, x, selected))
    stats = masked_statistics(x_tilde, x, selected, V, variant=variant)
    predicted = predicted_weights(stats, lr, steps, variant=variant)
    continuous = continuous_coefficients(lr * steps)
    assert set(predicted) == {k.name for k in weight_kinds(variant)}
    for kind in weight_kinds(variant):
        weight = model.W_O if kind.name == "W_O" else getattr(model.layers[0], kind.name)
        assert matrix_cosine(weight, predicted[kind.name]) > 0.9999, kind.name
        assert relative_error(weight, predicted[kind.name]) < 0.04, kind.name
        if kind.power > 1:
            limit = continuous[POWER_NAME[kind.power]] * kind.matrix(stats)
            assert relative_error(weight, limit) > 0.1, kind.name


def test_masked_coefficients_and_order_two():
    c = leading_coefficients(0.5, 5, variant="identity")
    assert c == {"V": 2.5, "W": 0.25 * 10, "P": 0.25 * 10}
    with pytest.raises(ValueError, match="residual model only"):
        predicted_weights(None, 0.5, 5, order=2, variant="identity")


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_uniform_attention_stage_shifts_the_sums_of_W_and_P(markov, variant):
    # W and P held at zero (their gradients dropped) for the first s₀ steps while V and W_O train, full-batch
    # SGD: W(s) ≈ η⁴ Σ_{s₀≤k<s} k²(k−1)/2 Q̄ (identity: η² Σ_{s₀≤k<s} k Q̄').  That is W's exact leading
    # coefficient at fixed s: the relative error falls in proportion to η, while the unshifted sum stays O(1) off
    from common.theory.alignment import theory_entry
    from common.theory.masked_statistics import masked_statistics
    from common.theory.masking import MaskingScheme, corrupt
    n_words, T, steps, s0 = 12, 8, 7, 5
    x, _ = markov(32, T, n_words, seed=4)
    x_tilde, selected = corrupt(x, MaskingScheme(n_words, n_words, mask_prob=0.3), torch.Generator().manual_seed(1))
    V = n_words + 1
    stats = masked_statistics(x_tilde, x, selected, V, variant=variant)
    errors = {}
    for lr in ((0.02, 0.01) if variant == "residual" else (0.2, 0.1)):
        def during_the_stage(step, model):
            if step + 1 == s0:   # during the stage: W, P exactly zero and no prediction to compare with
                entry = theory_entry(model, stats, lr, s0, uniform_attention_steps=s0)
                assert not model.layers[0].W.any() and entry["layer_0_W_Q_bar_rel_err"] is None
                assert entry["layer_0_P_p_bar_rel_err"] is None
        model = full_batch_masked_sgd(variant, V, T, lr, steps, (x_tilde, x, selected), hold_attention=s0,
                                      after_step=during_the_stage)
        shifted = predicted_weights(stats, lr, steps, variant=variant, uniform_attention_steps=s0)
        plain = predicted_weights(stats, lr, steps, variant=variant)
        entry = theory_entry(model, stats, lr, steps, uniform_attention_steps=s0)
        for kind, key in (("W", "layer_0_W_Q_bar_rel_err"), ("P", "layer_0_P_p_bar_rel_err")):
            weight = getattr(model.layers[0], kind)
            error = relative_error(weight, shifted[kind])
            assert entry[key] == pytest.approx(error, rel=1e-9)
            assert relative_error(weight, plain[kind]) > 0.1, kind
            errors.setdefault(kind, []).append(error)
        for kind in ("W_O", "V"):   # unaffected by the stage
            if kind in shifted:
                assert torch.equal(shifted[kind], plain[kind])
    for kind, (coarse, fine) in errors.items():
        assert coarse < 0.05 and 1.6 < coarse / fine < 2.4, (kind, coarse, fine)


def test_uniform_attention_coefficients():
    full, frozen = leading_coefficients(0.5, 5), leading_coefficients(0.5, 5, uniform_attention_steps=3)
    assert frozen["W_O"] == full["W_O"] and frozen["V"] == full["V"]
    assert frozen["W"] == frozen["P"] == 0.5 ** 4 * (9 + 24)           # k = 3, 4 only
    assert leading_coefficients(0.5, 2, uniform_attention_steps=3)["W"] == 0.0
    assert leading_coefficients(0.5, 5, "identity", uniform_attention_steps=3)["W"] == 0.25 * (3 + 4)
    with pytest.raises(ValueError, match="uniform_attention_steps"):
        leading_coefficients(0.5, 5, uniform_attention_steps=-1)
