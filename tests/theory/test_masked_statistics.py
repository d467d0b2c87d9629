import pytest
import torch
import torch.nn.functional as F

import common.theory.masked_statistics as masked_module
import common.theory.statistics as statistics_module
from common.theory.masked_statistics import expected_masked_statistics, masked_statistics
from common.theory.masking import MaskingScheme, corrupt
from common.theory.reference import (enumerated_expected_masked_statistics, naive_expected_masked_statistics,
                                     naive_masked_statistics)
from common.theory.statistics import CorpusStatistics

FIELDS = ("bigram", "context", "interchangeability", "value_map", "attention_source", "attention_map",
          "position_map")


def assert_close(stats, reference, tolerance, label=""):
    for name, expected in reference.items():
        got = getattr(stats, name)
        assert got.dtype == torch.float64 and got.shape == expected.shape, (label, name)
        assert expected.abs().max() > 0, (label, name)                   # no vacuous comparison
        # relative to each statistic's own scale (Q̄ₘ is ~1e-6 here)
        assert (got - expected).abs().max() <= tolerance * expected.abs().max(), (label, name)


def masked_corpus(N, T, n_words, seed, mask_prob=0.3):
    """Clean Markov-free random words, their corruption with MASK = n_words (model V = n_words + 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(n_words, (N, T), generator=g)
    scheme = MaskingScheme(n_words, n_words, mask_prob)
    x_tilde, selected = corrupt(x, scheme, g)
    return x, x_tilde, selected, scheme


# -- one corruption draw ------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["residual", "identity"])
@pytest.mark.parametrize("n_words,T,N,chunk", [(6, 5, 7, 1), (6, 5, 7, 3), (30, 11, 9, 256)])
def test_masked_statistics_equal_naive_reference(variant, n_words, T, N, chunk):
    _, x_tilde, selected, _ = masked_corpus(N, T, n_words, seed=n_words + T)
    x, _, _, _ = masked_corpus(N, T, n_words, seed=n_words + T)
    V = n_words + 1
    stats = masked_statistics(x_tilde, x, selected, V, variant, chunk_size=chunk)
    assert_close(stats, naive_masked_statistics(x_tilde, x, selected, V, variant), 1e-10, variant)
    assert stats.n_positions == int(selected.sum())
    assert stats.position_map.shape == (2 * T - 1,)
    counts = F.one_hot(x_tilde[selected], V).double().sum(0)
    assert torch.allclose(stats.input_frequency, counts / counts.sum(), atol=1e-15)


def test_masked_chunk_size_invariance():
    x, x_tilde, selected, _ = masked_corpus(13, 8, 10, seed=4)
    results = [masked_statistics(x_tilde, x, selected, 11, chunk_size=c) for c in (1, 5, 13)]
    for name in CorpusStatistics.TENSOR_FIELDS:
        for other in results[1:]:
            assert torch.allclose(getattr(results[0], name), getattr(other, name), atol=1e-15, rtol=1e-12), name


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_masked_token_subset_matches_naive(monkeypatch, sparse, variant):
    # a token set K (ids < 12 of 20 words + MASK): MASK and the rest are −1, the uniform term uses V = 21;
    # both product paths (sparse counts, dense counts) must give the dense formulas
    monkeypatch.setattr(statistics_module, "_uses_sparse", lambda nnz, V, device: sparse)
    x, x_tilde, selected, _ = masked_corpus(9, 7, 20, seed=11, mask_prob=0.4)
    to_set = lambda t: torch.where(t < 12, t, -1)
    stats = masked_statistics(to_set(x_tilde), to_set(x), selected, 12, variant, full_vocab_size=21, chunk_size=4)
    reference = naive_masked_statistics(to_set(x_tilde), to_set(x), selected, 12, variant, full_V=21)
    assert_close(stats, reference, 1e-10, (sparse, variant))


def test_masked_keep_frees_other_fields():
    x, x_tilde, selected, _ = masked_corpus(5, 6, 8, seed=2)
    full = masked_statistics(x_tilde, x, selected, 9)
    some = masked_statistics(x_tilde, x, selected, 9, keep=("value_map", "attention_map"))
    assert some.bigram is None and some.position_map is None and some.context is None
    assert torch.equal(some.attention_map, full.attention_map) and torch.equal(some.value_map, full.value_map)


# -- the orientation against autograd on a zero-initialised bidirectional model --------------------
def masked_model_loss(params, x_tilde, y, selected, V, residual):
    """A float64 one-layer attention-only model on one-hot tokens, attention over all positions, the
    position bias indexed by t − s + T − 1; mean cross-entropy over the selected positions.  Without
    `residual`: logits = attention output (no residual, W_O the identity)."""
    X = F.one_hot(x_tilde, V).double()
    T = X.shape[1]
    offsets = torch.arange(T)[:, None] - torch.arange(T)[None, :] + T - 1
    scores = X @ params["W"] @ X.transpose(1, 2) + params["P"][offsets]
    mixed = torch.softmax(scores, -1) @ (X @ params["V"])
    logits = (X + mixed) @ params["W_O"] if residual else mixed
    return F.cross_entropy(logits[selected], y[selected])


def negative_gradient(params, *args):
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = masked_model_loss(params, *args)
    return {k: -g for k, g in zip(params, torch.autograd.grad(loss, list(params.values())))}


def leading(function, tau, power):
    """The leading coefficient of f(τ) = c τ^power + O(τ^{power+1}): Richardson on τ and τ/2."""
    a, b = function(tau), function(tau / 2)
    return {k: 2 * b[k] / (tau / 2) ** power - a[k] / tau ** power for k in a}


def test_residual_variant_leading_gradients_match_statistics():
    x, x_tilde, selected, _ = masked_corpus(6, 5, 7, seed=21, mask_prob=0.4)
    V, T = 8, 5
    stats = masked_statistics(x_tilde, x, selected, V)
    args = (x_tilde, x, selected, V, True)
    zero = lambda: {"W_O": torch.zeros(V, V, dtype=torch.float64), "V": torch.zeros(V, V, dtype=torch.float64),
                    "W": torch.zeros(V, V, dtype=torch.float64), "P": torch.zeros(2 * T - 1, dtype=torch.float64)}
    at_zero = negative_gradient(zero(), *args)
    assert torch.allclose(at_zero["W_O"], stats.bigram, atol=1e-14)            # W_O c₁ = B̄ₘ

    def along_path(tau):            # W_O = τB̄ₘ, V = τ²/2 (B̄ₘΦ̄ₘ)ᵀ: the first terms of the flow
        params = zero()
        params["W_O"] = tau * stats.bigram
        params["V"] = tau ** 2 / 2 * stats.value_map
        return negative_gradient(params, *args)

    first = leading(along_path, 1e-3, 1)
    assert torch.allclose(first["V"], stats.value_map, rtol=1e-5, atol=1e-9)    # −∇V = τ(B̄ₘΦ̄ₘ)ᵀ
    third = leading(along_path, 1e-2, 3)                                        # −∇W = τ³/2 Q̄ₘ
    for got, expected in ((third["W"], stats.attention_map / 2), (third["P"], stats.position_map / 2)):
        assert expected.abs().max() > 1e-8
        assert (got - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_identity_variant_leading_gradients_match_statistics():
    x, x_tilde, selected, _ = masked_corpus(6, 5, 7, seed=22, mask_prob=0.4)
    V, T = 8, 5
    stats = masked_statistics(x_tilde, x, selected, V, variant="identity")
    args = (x_tilde, x, selected, V, False)
    zero = lambda: {"V": torch.zeros(V, V, dtype=torch.float64), "W": torch.zeros(V, V, dtype=torch.float64),
                    "P": torch.zeros(2 * T - 1, dtype=torch.float64)}
    at_zero = negative_gradient(zero(), *args)
    assert torch.allclose(at_zero["V"], stats.context.T, atol=1e-14)           # V c₁ = Φ̄ₘᵀ
    assert torch.equal(stats.attention_source, stats.context.T)

    def along_path(tau):
        params = zero()
        params["V"] = tau * stats.context.T
        return negative_gradient(params, *args)

    first = leading(along_path, 1e-3, 1)                                        # −∇W = τ Q̄', W c₂ = ½Q̄'
    for got, expected in ((first["W"], stats.attention_map), (first["P"], stats.position_map)):
        assert expected.abs().max() > 1e-6
        assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


# -- in expectation over the corruption -------------------------------------------------------
@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_expected_equals_enumeration_of_every_corruption(variant):
    # 3 words + MASK, T = 3: every outcome of every position (6³ per sequence) with its probability
    x = torch.tensor([[0, 1, 0], [2, 2, 1]])
    scheme = MaskingScheme(mask_id=3, n_words=3, mask_prob=0.3, split=(0.6, 0.25, 0.15))
    stats = expected_masked_statistics(x, scheme, 4, variant, chunk_size=1)
    assert_close(stats, enumerated_expected_masked_statistics(x, scheme, 4, variant), 1e-12, variant)
    assert stats.n_positions == pytest.approx(0.3 * 6)
    assert stats.position_map.shape == (5,)


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_expected_token_set_equals_enumeration(variant):
    # BERT-like: 5 words, the token set K = ids < 3, MASK outside it (−1), a random word ≥ 3 falls outside,
    # clean tokens outside K are −1 too; the model's V (full_vocab_size) = 6
    x = torch.tensor([[0, -1, 2], [1, 1, -1]])
    scheme = MaskingScheme(mask_id=-1, n_words=5, mask_prob=0.25)
    stats = expected_masked_statistics(x, scheme, 3, variant, full_vocab_size=6, chunk_size=2)
    assert_close(stats, enumerated_expected_masked_statistics(x, scheme, 3, variant, full_V=6), 1e-12, variant)


@pytest.mark.parametrize("mode,sparse", [("once", True), ("once", False), ("stream_dense", False),
                                         ("stream_sparse", False)])
@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_expected_equals_dense_closed_form(monkeypatch, mode, sparse, variant):
    # larger than enumeration allows: the dense moment formulation, with MASK inside and outside a token set;
    # every way of the product of G with the co-occurrence counts (once, or streamed over chunks' histograms)
    monkeypatch.setattr(masked_module, "_uses_sparse", lambda nnz, V, device: sparse)
    monkeypatch.setattr(masked_module, "_cheapest", lambda costs: mode)
    g = torch.Generator().manual_seed(5)
    x = torch.randint(10, (6, 7), generator=g)
    scheme = MaskingScheme(10, 10, 0.2, (0.7, 0.2, 0.1))
    stats = expected_masked_statistics(x, scheme, 11, variant, chunk_size=4)
    assert_close(stats, naive_expected_masked_statistics(x, scheme, 11, variant), 1e-10, variant)
    x_set = torch.where(x < 7, x, -1)
    set_scheme = MaskingScheme(-1, 10, 0.2, (0.7, 0.2, 0.1))
    stats = expected_masked_statistics(x_set, set_scheme, 7, variant, full_vocab_size=11, chunk_size=5)
    assert_close(stats, naive_expected_masked_statistics(x_set, set_scheme, 7, variant, full_V=11), 1e-10, variant)


def monte_carlo(x, scheme, draws, seed, to_set=None):
    """Many corrupt() draws stacked as one corpus: its raw sums are the sums over the draws."""
    g = torch.Generator().manual_seed(seed)
    stacked = x.repeat(draws, 1)
    x_tilde, selected = corrupt(stacked, scheme, g)
    return (x_tilde, selected, stacked) if to_set is None else (to_set(x_tilde), selected, to_set(stacked))


def relative_frobenius(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_expected_matches_monte_carlo_draws(variant):
    g = torch.Generator().manual_seed(8)
    x = torch.randint(6, (4, 6), generator=g)
    scheme = MaskingScheme(6, 6, 0.3)
    x_tilde, selected, y = monte_carlo(x, scheme, 20000, seed=9)
    sampled = masked_statistics(x_tilde, y, selected, 7, variant, chunk_size=4096)
    expected = expected_masked_statistics(x, scheme, 7, variant)
    for name in FIELDS:   # sampling error ~1/√draws: 0.4–3% over seeds at 20 000 draws
        assert relative_frobenius(getattr(sampled, name), getattr(expected, name)) < 0.05, name


def test_expected_token_set_matches_monte_carlo_draws():
    # corrupt in the full vocabulary (20 words, MASK = 20), then map to the token set K = ids < 12 (−1 outside):
    # the expectation in K's coordinates (mask_id = −1, random words over all 20) must agree
    g = torch.Generator().manual_seed(12)
    x = torch.randint(20, (4, 6), generator=g)
    to_set = lambda t: torch.where(t < 12, t, -1)
    x_tilde, selected, y = monte_carlo(x, MaskingScheme(20, 20, 0.3), 80000, seed=13, to_set=to_set)
    sampled = masked_statistics(x_tilde, y, selected, 12, full_vocab_size=21, chunk_size=8192)
    expected = expected_masked_statistics(to_set(x), MaskingScheme(-1, 20, 0.3), 12, full_vocab_size=21)
    for name in FIELDS:   # sampling error ~1/√draws: 0.8–4% over seeds at 80 000 draws
        assert relative_frobenius(getattr(sampled, name), getattr(expected, name)) < 0.05, name


def test_expected_chunk_size_invariance_and_keep():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(9, (11, 6), generator=g)
    scheme = MaskingScheme(9, 9)
    results = [expected_masked_statistics(x, scheme, 10, chunk_size=c) for c in (1, 4, 11)]
    for name in CorpusStatistics.TENSOR_FIELDS:
        for other in results[1:]:
            assert torch.allclose(getattr(results[0], name), getattr(other, name), atol=1e-15, rtol=1e-12), name
    some = expected_masked_statistics(x, scheme, 10, keep=("attention_map",))
    assert some.bigram is None and some.value_map is None and some.position_map is None
    assert torch.allclose(some.attention_map, results[0].attention_map, atol=1e-15, rtol=1e-12)


# -- bad input --------------------------------------------------------------------------------
def test_bad_input():
    empty = torch.zeros(0, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="empty"):
        masked_statistics(empty, empty, empty.bool(), 4)
    with pytest.raises(ValueError, match="empty"):
        expected_masked_statistics(empty, MaskingScheme(3, 3), 4)
    x = torch.zeros(2, 3, dtype=torch.long)
    selected = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="token ids"):
        masked_statistics(torch.full((2, 3), 4), x, selected, 4)
    with pytest.raises(ValueError, match="token ids"):
        masked_statistics(torch.full((2, 3), -2), x, selected, 4)
    with pytest.raises(ValueError, match="token ids"):
        expected_masked_statistics(torch.full((2, 3), 4), MaskingScheme(3, 3), 4)
    with pytest.raises(ValueError, match="selected"):
        masked_statistics(x, x, selected[:, :2], 4)
    with pytest.raises(ValueError, match="selected"):
        masked_statistics(x, x, selected.long(), 4)
    with pytest.raises(ValueError, match="no position is selected"):
        masked_statistics(x, x, ~selected, 4)
    with pytest.raises(ValueError, match="variant"):
        masked_statistics(x, x, selected, 4, variant="causal")
    with pytest.raises(ValueError, match="mask_id"):
        expected_masked_statistics(x, MaskingScheme(4, 3), 4)
    with pytest.raises(ValueError, match="mask_prob"):
        expected_masked_statistics(x, MaskingScheme(3, 3, mask_prob=0.0), 4)
    with pytest.raises(ValueError, match="context_input"):
        expected_masked_statistics(x, MaskingScheme(3, 3), 4, keep=("context_input",))
