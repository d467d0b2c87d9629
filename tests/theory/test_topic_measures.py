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
