"""Topic measures (common/tiny/topic_structure.py, docs/theory.md §11): bins and binned means against brute-force
loops, the closed forms' sign pattern on an LDA corpus, topic_structure.py and topic_embeddings.py end to
end, and their bad inputs."""
import itertools
import json

import pytest
import torch

from common.io import UserError
from common.corpus.lda import LDAParameters, generate_lda, topic_table
from common.theory.leading_terms import predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.theory.statistics import compute_statistics
from common.corpus.lda import read_topic_table
from common.theory.topic_measures import (BINS, attention_means, binned_means, leading_term_model, pair_bins,
                                          query_topic, score_gradients, topic_alignment,
                                          row_cosines, row_gram, theory_measures, topic_order, vocabulary_topics,
                                          weight_measures)

# 6 tokens: two topics, one token in both, one in none
from conftest import TOPICS, brute_bin, brute_means


def test_pair_bins_and_binned_means_against_loops():
    bins = pair_bins(TOPICS)
    names = {0: "same_token", 1: "same_topic", 2: "different_topic", -1: None}
    for a, b in itertools.product(range(6), repeat=2):
        assert names[int(bins[a, b])] == brute_bin(a, b)
    values = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    assert binned_means(values, bins) == pytest.approx(brute_means(values.tolist()))
    assert topic_order(TOPICS) == ([0, 1, 2, 3, 4], [3])   # by first topic; the token without topics left out


def test_row_inner_products_and_cosines_against_loops():
    rows = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows[5] = 0
    inner = [[float(rows[a] @ rows[b]) for b in range(6)] for a in range(6)]
    norm = lambda v: float(v.norm()) or 1.0
    cosine = [[float(rows[a] @ rows[b]) / norm(rows[a]) / norm(rows[b]) for b in range(6)] for a in range(6)]
    assert torch.allclose(row_gram(rows), torch.tensor(inner, dtype=torch.float64))
    assert torch.allclose(row_cosines(rows), torch.tensor(cosine, dtype=torch.float64))
    assert binned_means(row_cosines(rows), pair_bins(TOPICS))["same_token"] == pytest.approx(1.0)


def test_attention_means_against_loops():
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(6, 5, 2, init_std=0.7)
    tokens = torch.randint(0, 6, (3, 5), generator=torch.Generator().manual_seed(2))
    measured = attention_means(model, tokens, pair_bins(TOPICS), batch_size=2)
    patterns = model.attention_patterns(tokens)
    for layer in range(2):
        sums = {name: [] for name in BINS}
        for n, t in itertools.product(range(3), range(5)):
            for s in range(t):
                name = brute_bin(int(tokens[n, t]), int(tokens[n, s]))
                if name:
                    sums[name].append(float(patterns[layer][n, t, s]))
        expected = {name: sum(v) / len(v) if v else None for name, v in sums.items()}
        assert measured[f"attention_layer_{layer}"] == pytest.approx(expected)


def test_weight_measures_and_the_leading_term_model():
    torch.manual_seed(1)
    model = AttentionOnlyTransformer(6, 5, 2, init_std=0.3)
    bins = pair_bins(TOPICS)
    measures = weight_measures(model, bins)
    assert set(measures) == {"W_O", "W_O_inner", "W_O_cosine"} | {
        f"{kind}_layer_{l}{suffix}" for l in range(2) for kind, suffix in
        (("V", ""), ("V", "_inner"), ("V", "_cosine"), ("W", ""))}
    assert measures["V_layer_1_inner"] == pytest.approx(brute_means((model.layers[1].V @ model.layers[1].V.T).tolist()))
    x = torch.randint(0, 6, (20, 6), generator=torch.Generator().manual_seed(3))
    stats = compute_statistics(x[:, :-1], x[:, 1:], 6)
    twin = leading_term_model(model, stats, lr=0.5, step=7)
    predicted = predicted_weights(stats, 0.5, 7)
    assert torch.allclose(twin.W_O, predicted["W_O"].float())
    assert all(torch.allclose(layer.W, predicted["W"].float()) for layer in twin.layers)
    assert not torch.allclose(model.W_O, twin.W_O)        # the trained model is left alone


def lda_statistics(params: LDAParameters, seq_len: int):
    corpus = generate_lda(params, 0)
    ids = corpus.word_ids.reshape(params.n_documents, params.min_length)[:, :seq_len + 1]
    tokens = torch.from_numpy(ids)
    return compute_statistics(tokens[:, :-1], tokens[:, 1:], len(corpus.words)), corpus


def test_closed_forms_carry_topics_on_an_lda_corpus():
    """docs/theory.md §11: every closed form has same-topic mean > 0 > different-topic mean."""
    params = LDAParameters(n_topics=4, words_per_topic=5, min_length=17, max_length=17, n_documents=400)
    stats, corpus = lda_statistics(params, 16)
    theory = theory_measures(stats, pair_bins([frozenset(corpus.table[w]) for w in corpus.words]))
    assert set(theory) == {"bigram", "interchangeability", "context", "value_map", "attention_map",
                           "bigram_gram", "bigram_cosine", "value_map_gram", "value_map_cosine"}
    for name, measure in theory.items():
        assert measure["same_topic"] > 0 > measure["different_topic"], name


# -- attention over all positions and the query's own topic (masked LM, docs/theory.md §16) ----------------
@pytest.mark.parametrize("causal", [True, False])
def test_attention_pairs_by_direction_against_loops(causal):
    """Causal attention: keys s < t; attention over all positions: every s, s = t in the same-token bin."""
    torch.manual_seed(5)
    model = AttentionOnlyTransformer(7, 5, 2, init_std=0.7, causal=causal)
    tokens = torch.randint(0, 6, (3, 5), generator=torch.Generator().manual_seed(6))   # id 6: a MASK, no topic
    tokens[0, 0] = 6
    measured = attention_means(model, tokens, pair_bins(TOPICS), batch_size=2)
    patterns = model.attention_patterns(tokens)
    for layer in range(2):
        sums = {name: [] for name in BINS}
        for n, t, s in itertools.product(range(3), range(5), range(5)):
            if (s < t if causal else True) and int(tokens[n, t]) < 6 and int(tokens[n, s]) < 6:
                name = brute_bin(int(tokens[n, t]), int(tokens[n, s]))
                if name:
                    sums[name].append(float(patterns[layer][n, t, s]))
        expected = {name: sum(v) / len(v) if v else None for name, v in sums.items()}
        assert measured[f"attention_layer_{layer}"] == pytest.approx(expected)
    if not causal:   # the diagonal is in: same token holds at least the T·N self pairs of words with topics
        assert measured["attention_layer_0"]["same_token"] is not None


def test_masked_models_weights_are_read_on_the_words_block():
    torch.manual_seed(7)
    model = AttentionOnlyTransformer(7, 5, 1, init_std=0.3, causal=False)   # 6 words + MASK
    bins = pair_bins(TOPICS)
    measures = weight_measures(model, bins)
    assert measures["W_layer_0"] == pytest.approx(brute_means(model.layers[0].W[:6, :6].tolist()))
    rows = model.layers[0].V[:6].double()
    assert measures["V_layer_0_inner"] == pytest.approx(brute_means((rows @ rows.T).tolist()))


@pytest.mark.parametrize("variant", [dict(), dict(causal=False), dict(causal=False, residual=False, output="identity")])
def test_score_gradients_give_the_gradients_of_W_and_P(variant):
    """Σ_{t,s} ∂L/∂S[t,s] h_t h_sᵀ = ∂L/∂W and Σ over each offset = ∂L/∂P (autograd): the layer inputs and
    the score gradients the explanation test weights its query positions with are the model's."""
    torch.manual_seed(8)
    model = AttentionOnlyTransformer(7, 5, 2, init_std=0.4, **variant).double()
    x, y = torch.randint(7, (3, 5)), torch.randint(6, (3, 5))
    selected = torch.rand(3, 5, generator=torch.Generator().manual_seed(9)) < 0.5
    selected[0, 0] = True
    hidden, d_scores = score_gradients(model, x, y, selected)
    assert torch.equal(hidden[0], torch.nn.functional.one_hot(x, 7).double())
    grads = torch.autograd.grad(model.loss(x, y, selected), [p for l in model.layers for p in (l.W, l.P)])
    for layer in range(2):
        h, dS = hidden[layer], d_scores[layer]
        assert torch.allclose(torch.einsum("nts,nta,nsb->ab", dS, h, h), grads[2 * layer], atol=1e-12)
        index = model.position_index[:5, :5]
        dP = torch.zeros_like(model.layers[layer].P).index_add_(0, index.reshape(-1), dS.sum(0).reshape(-1))
        assert torch.allclose(dP, grads[2 * layer + 1], atol=1e-12)


def test_topic_alignment_against_loops():
    membership = torch.tensor([[1., 0.], [1., 0.], [1., 1.], [0., 1.], [0., 1.], [0., 0.]], dtype=torch.float64)
    hidden = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    own = torch.tensor([[0, 2, 3], [4, 1, 0]])
    hidden[1, 2] = 0.0                                                   # reads no topic
    measured = topic_alignment(hidden, own, membership)
    for n, t in itertools.product(range(2), range(3)):
        readout = [float(sum(hidden[n, t, a] for a in range(6) if membership[a, k]) / membership[:, k].sum())
                   for k in range(2)]
        topics = [float(membership[int(own[n, t]), k]) for k in range(2)]
        indicator = [v / sum(topics) for v in topics]
        r = [v - sum(readout) / 2 for v in readout]
        m = [v - 0.5 for v in indicator]
        norm = (sum(v * v for v in r) * sum(v * v for v in m)) ** 0.5
        expected = sum(a * b for a, b in zip(r, m)) / norm if norm > 0 else 0.0
        assert float(measured[n, t]) == pytest.approx(expected, abs=1e-12)


def test_query_topic_reads_the_query_input():
    """At layer 0 the input is the one-hot token: a clean word carries its own topic (alignment 1), a MASK
    none (0); the gradient weights are the rows of ∂L/∂S."""
    topics = [frozenset({0}), frozenset({0}), frozenset({1}), frozenset({1})]
    torch.manual_seed(11)
    model = AttentionOnlyTransformer(5, 6, 2, init_std=0.3, causal=False).double()   # 4 words + MASK (id 4)
    clean = torch.randint(4, (4, 6), generator=torch.Generator().manual_seed(12))
    selected = torch.zeros(4, 6, dtype=torch.bool)
    selected[:, ::2] = True
    corrupted = torch.where(selected, torch.full_like(clean, 4), clean)
    measured = query_topic(model, clean, corrupted, clean, selected, topics)
    layer0 = measured["query_topic_layer_0"]
    assert layer0["loss_positions"] == pytest.approx(0.0) and layer0["all_positions"] == pytest.approx(0.5)
    hidden, d_scores = score_gradients(model, corrupted, clean, selected)
    weight = d_scores[0].norm(dim=-1)
    expected = float((weight * (~selected)).sum() / weight.sum())       # 1 at clean positions, 0 at MASK
    assert layer0["gradient_weighted"] == pytest.approx(expected)
    causal = query_topic(AttentionOnlyTransformer(4, 6, 1, init_std=0.3).double(), clean, clean, clean, None, topics)
    assert causal["query_topic_layer_0"]["loss_positions"] == pytest.approx(1.0)
