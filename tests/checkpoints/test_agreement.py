"""The per-token agreement measure (common/checkpoints/agreement.py) and the single-token associations it
reads (common/checkpoints/associations.py): the sparse next-token counts against the dense B̄, the measure
against a brute-force computation on a small model (a forward pass per token, the attention module's own
query and key vectors, Python sets), near chance at random weights and well above it once trained, and
the aggregate over several models."""
import math

import pytest
import torch

from common.checkpoints.agreement import (aggregate_agreement, agreement_record, dense_values_at, plot_agreement,
                                          revision_agreement, statistic_rows, summary, write_agreement)
from common.checkpoints.associations import (count_next_tokens, next_token_distribution, single_token_attention)
from common.checkpoints.loading import single_token_representations
from common.checkpoints.token_statistics import map_to_token_set, select_token_set
from common.io import UserError, read_json
from common.theory.reference import naive_statistics
from common.theory.statistics import compute_statistics
from conftest import VOCAB, markov_tokens, tiny_model


def sequences(n, seq_len, vocab, seed):
    x, y = markov_tokens(n, seq_len, vocab, seed=seed)
    return torch.cat([x, y[:, -1:]], dim=1)          # [N, T+1]


def test_sparse_counts_equal_the_dense_statistic():
    seqs = sequences(12, 9, 20, seed=4)
    token_ids = select_token_set(seqs, 13, 20)
    counts = count_next_tokens(seqs, token_ids, 20)
    mapped = map_to_token_set(seqs, token_ids, 20)
    dense = compute_statistics(mapped[:, :-1], mapped[:, 1:], 13, full_vocab_size=20,
                               keep=("bigram", "input_frequency"))
    rows = torch.tensor([0, 5, 12, 3])
    assert torch.allclose(counts.bigram_rows(rows), dense.bigram[rows], rtol=0, atol=1e-15)
    assert torch.allclose(counts.bigram[torch.arange(13)], dense.bigram, rtol=0, atol=1e-15)
    assert torch.allclose(counts.input_frequency, dense.input_frequency, rtol=0, atol=1e-15)
    partners = torch.tensor([[0, 1, 2], [12, 12, 4], [7, 3, 0], [1, 1, 1]])
    assert torch.equal(counts.bigram_at(rows, partners), counts.bigram_rows(rows).gather(1, partners))


# -- brute force ---------------------------------------------------------------------------------
def module_scores(model, token_ids):
    """Each GPTNeoX layer's per-head scores q_h(a)·k_h(b) from the attention module's own projection of
    the normalised residual (hooked), times the norm's scale σ(a), σ(b): the general rule of docs/theory.md §12,
    written independently of the family adapter.  [layers][heads] of [n, n] (float64)."""
    layers = model.gpt_neox.layers
    captured = {}
    hooks = []
    for index, layer in enumerate(layers):
        hooks.append(layer.input_layernorm.register_forward_hook(
            lambda m, args, out, i=index: captured.setdefault(("x", i), []).append(args[0][:, 0].clone())))
        hooks.append(layer.attention.query_key_value.register_forward_hook(
            lambda m, args, out, i=index: captured.setdefault(("qkv", i), []).append(out[:, 0].clone())))
    with torch.no_grad():
        for token in token_ids.tolist():
            model(input_ids=torch.tensor([[token]]))
    for hook in hooks:
        hook.remove()
    scores = []
    for index, layer in enumerate(layers):
        x, qkv = torch.cat(captured[("x", index)]), torch.cat(captured[("qkv", index)])
        sigma = (x.var(dim=1, unbiased=False) + layer.input_layernorm.eps).sqrt()[:, None]
        size = layer.attention.head_size
        per_head = qkv.view(len(x), -1, 3 * size)        # [n, head, (q, k, v) × size]
        scores.append([(per_head[:, h, :size] * sigma) @ (per_head[:, h, size:2 * size] * sigma).T
                       for h in range(per_head.shape[1])])
    return scores


def brute_force_agreement(model, token_ids, stats, measured, k):
    """top-1 and overlap@k as the module docstring defines them, one token at a time, with Python sets."""
    bigram, attention_map = stats["bigram"], stats["attention_map"]
    K = len(token_ids)
    with torch.no_grad():
        probabilities = torch.stack([model(input_ids=torch.tensor([[t]])).logits[0, 0].softmax(-1)
                                     for t in token_ids.tolist()])[:, token_ids]

    def statistic_set(row):
        kth = sorted(row.tolist(), reverse=True)[k - 1]
        return {b for b in range(K) if row[b] > 0 and row[b] >= kth - 1e-15}

    def model_set(row):
        return set(sorted(range(K), key=lambda b: -float(row[b]))[:k])

    def overlap(statistic, scores):
        values = [len(model_set(scores[a]) & statistic_set(statistic[a])) / min(len(statistic_set(statistic[a])), k)
                  for a in measured if statistic[a].max() > 0]
        return sum(values) / len(values)

    next_rows = [a for a in measured if bigram[a].max() > 0]
    top1 = sum(float(bigram[a, int(probabilities[a].argmax())]) >= float(bigram[a].max()) - 1e-15
               for a in next_rows) / len(next_rows)
    layers = module_scores(model, token_ids)
    return {"next_token_top1": top1, "next_token_overlap": overlap(bigram, probabilities),
            "attention_overlap": {f"layer_{l}": overlap(attention_map, sum(heads) / len(heads))
                                  for l, heads in enumerate(layers)},
            "attention_head_overlap": {"layer_1": {f"head_{h}": overlap(attention_map, s)
                                                   for h, s in enumerate(layers[1])}}}


def measure(model, seqs, token_ids, vocab, k, min_count=1, heads_layer=1):
    """The package's measure of one model (what the explorer computes per revision)."""
    counts = count_next_tokens(seqs, token_ids, vocab)
    mapped = map_to_token_set(seqs, token_ids, vocab)
    attention_map = compute_statistics(mapped[:, :-1], mapped[:, 1:], len(token_ids), full_vocab_size=vocab,
                                       keep=("attention_map",)).attention_map
    measured = torch.nonzero(counts.input_counts >= min_count).flatten()
    next_token = statistic_rows(counts.bigram, counts.bigram_at, measured, k)
    attention = statistic_rows(attention_map, dense_values_at(attention_map), measured, k)
    representations = single_token_representations(model, token_ids)
    # the module's own logits (--attention_bias=True), as module_scores computes them by brute force
    layers = [single_token_attention(model, representations, l, with_heads=l == heads_layer, biases=True)
              for l in range(representations.n_layers)]
    entry = revision_agreement(next_token, attention, next_token_distribution(model, token_ids), layers, k)
    return agreement_record(next_token, attention, k, min_count, {"step0": entry}), measured, mapped


def test_measure_equals_brute_force():
    model = tiny_model("neox", seed=3, layers=2, heads=3)
    seqs = sequences(40, 12, VOCAB, seed=5)
    token_ids = select_token_set(seqs, 30, VOCAB)
    record, measured, mapped = measure(model, seqs, token_ids, VOCAB, k=4, min_count=3)
    stats = naive_statistics(mapped[:, :-1], mapped[:, 1:], 30, full_V=VOCAB)
    expected = brute_force_agreement(model, token_ids, stats, measured.tolist(), 4)
    got = record["revisions"]["step0"]
    assert got["next_token_top1"] == pytest.approx(expected["next_token_top1"], abs=1e-12)
    assert got["next_token_overlap"] == pytest.approx(expected["next_token_overlap"], abs=1e-12)
    assert got["attention_overlap"] == pytest.approx(expected["attention_overlap"], abs=1e-12)
    assert got["attention_head_overlap"] == {"layer_1": pytest.approx(expected["attention_head_overlap"]["layer_1"],
                                                                      abs=1e-12)}
    assert 0 < record["n_tokens"]["next_token"] <= len(measured)
    # the measure is not trivially 0 or 1 here, so the comparison above means something
    assert 0 < got["next_token_overlap"] < 1 and 0 < got["attention_overlap"]["layer_0"] < 1


def test_k_out_of_range_is_refused():
    seqs = sequences(4, 6, 10, seed=1)
    counts = count_next_tokens(seqs, torch.arange(10), 10)
    with pytest.raises(UserError, match="--k=11 must lie between 1 and the token set's size 10"):
        statistic_rows(counts.bigram, counts.bigram_at, torch.arange(10), 11)


# -- chance and training ---------------------------------------------------------------------------
def neox(vocab, seed=0):
    from transformers import AutoModelForCausalLM

    from common.checkpoints.architectures import BY_NAME

    torch.manual_seed(seed)
    config = BY_NAME["neox"].training_config(vocab, 32, 2, 2, 0, 16, 0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


def test_near_chance_at_random_weights_and_above_once_trained():
    vocab, k = 60, 4
    seqs = sequences(200, 16, vocab, seed=7)
    token_ids = torch.arange(vocab)
    model = neox(vocab)
    before, _, _ = measure(model, seqs, token_ids, vocab, k, min_count=5)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = seqs[torch.randint(len(seqs), (32,), generator=generator)]
        loss = torch.nn.functional.cross_entropy(model(input_ids=batch[:, :-1]).logits.flatten(0, 1),
                                                 batch[:, 1:].flatten())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    after, _, _ = measure(model, seqs, token_ids, vocab, k, min_count=5)
    chance = before["chance"]
    assert after["chance"] == chance and 0 < chance["next_token_top1"] < 0.1 and 0 < chance["next_token_overlap"] < 0.2
    random, trained = before["revisions"]["step0"], after["revisions"]["step0"]
    # at random weights: within a few chance levels (a binomial over ~60 tokens)
    assert random["next_token_top1"] <= 4 * chance["next_token_top1"]
    assert random["next_token_overlap"] <= 2 * chance["next_token_overlap"]
    # trained on the chain: the model's next token is the chain's, far above chance
    assert trained["next_token_top1"] >= 10 * chance["next_token_top1"] and trained["next_token_top1"] >= 0.4
    assert trained["next_token_overlap"] >= 5 * chance["next_token_overlap"]


# -- several models ----------------------------------------------------------------------------------
def record_of(values: dict, k=8) -> dict:
    return {"k": k, "min_count": 10, "n_tokens": {"next_token": 5, "attention": 4},
            "chance": {"next_token_top1": 0.01, "next_token_overlap": 0.02, "attention_overlap": 0.03},
            "revisions": {revision: {"next_token_top1": v, "next_token_overlap": v / 2,
                                     "attention_overlap": {"layer_0": v / 4, "layer_1": None}}
                          for revision, v in values.items()}}


def test_aggregate_is_mean_and_band_over_the_models(tmp_path):
    records = {"seed0": record_of({"step0": 0.1, "step8": 0.5}), "seed1": record_of({"step0": 0.3, "step8": 0.7}),
               "seed2": record_of({"step8": 0.9, "step16": 1.0})}
    aggregated = aggregate_agreement(records)
    assert aggregated["models"] == ["seed0", "seed1", "seed2"] and aggregated["k"] == 8
    assert list(aggregated["revisions"]) == ["step0", "step8", "step16"]
    step8 = aggregated["revisions"]["step8"]["next_token_top1"]
    assert step8["mean"] == pytest.approx(0.7) and step8["min"] == 0.5 and step8["max"] == 0.9 and step8["n"] == 3
    assert step8["std"] == pytest.approx(math.sqrt(((0.5 - 0.7) ** 2 + 0 + (0.9 - 0.7) ** 2) / 3))
    assert aggregated["revisions"]["step0"]["attention_overlap"]["layer_0"]["n"] == 2
    assert aggregated["revisions"]["step16"]["next_token_overlap"] == summary([0.5])
    assert aggregated["revisions"]["step0"]["attention_overlap"]["layer_1"] == summary([None, None])
    assert aggregated["chance"]["attention_overlap"]["mean"] == pytest.approx(0.03)
    with pytest.raises(UserError, match="different k"):
        aggregate_agreement({"a": record_of({"step0": 0.1}), "b": record_of({"step0": 0.1}, k=4)})
    # both kinds of record draw: one model (lines) and several (mean and band)
    paths = write_agreement(tmp_path, aggregated)
    assert read_json(paths[0]) == aggregated
    assert [p.suffix for p in paths] == [".json", ".png", ".pdf"] and all(p.stat().st_size > 5000 for p in paths[1:])
    single = plot_agreement(records["seed0"], tmp_path / "single")
    assert single[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- masked LMs (docs/theory.md §17): the fill-in of a MASK beside each token, against a brute force --------
def test_fill_in_rows_are_the_masked_lm_prediction_at_the_mask_beside_the_token():
    from types import SimpleNamespace

    from common.checkpoints.associations import fill_in_distribution, fill_in_inputs
    from conftest import VOCAB, tiny_bert

    model = tiny_bert()
    token_ids = torch.tensor([7, 3, 12, 30, 5])
    bert_like = SimpleNamespace(mask_token_id=4, cls_token_id=2, sep_token_id=3)
    rows = fill_in_distribution(model, bert_like, token_ids)
    assert rows.shape == (5, 5)
    got = rows[torch.tensor([4, 0, 2])]
    for i, a in zip((0, 1, 2), (5, 7, 12)):
        with torch.no_grad():   # [CLS] a [MASK] [SEP], read at the MASK (position 2), softmax over all VOCAB ids
            logits = model(input_ids=torch.tensor([[2, a, 4, 3]])).logits[0, 2]
        expected = torch.exp(logits - torch.logsumexp(logits, 0))[token_ids]
        assert logits.shape == (VOCAB,)
        assert torch.allclose(got[i], expected, rtol=1e-10, atol=0), a
    # a tokenizer without [CLS]/[SEP]: the two-token input [a, MASK], read at position 1
    plain = SimpleNamespace(mask_token_id=4, cls_token_id=None, sep_token_id=None)
    inputs, at = fill_in_inputs(plain, token_ids)
    assert at == 1 and inputs.tolist()[1] == [3, 4]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[3, 4]])).logits[0, 1]
    assert torch.allclose(fill_in_distribution(model, plain, token_ids)[torch.tensor([1])][0],
                          logits.softmax(0)[token_ids], rtol=1e-10, atol=0)
    with pytest.raises(UserError, match="no mask token"):
        fill_in_inputs(SimpleNamespace(mask_token_id=None), token_ids)


def test_a_masked_record_carries_the_unigram_predictor_against_a_brute_force():
    torch.manual_seed(2)
    K, k = 12, 3
    statistic = torch.randn(K, K, dtype=torch.float64)
    statistic[4] = -1.0                                   # a row with no positive entry is not measured
    counts = torch.randint(0, 50, (K,))
    rows = statistic_rows(statistic, dense_values_at(statistic), torch.arange(K), k)
    record = agreement_record(rows, rows, k, 1, {}, "masked", counts)
    frequent = set(counts.argsort(descending=True, stable=True)[:k].tolist())
    top1, overlap = [], []
    for a in range(K):
        row = statistic[a]
        if row.max() <= 0:
            continue
        kth = row.topk(k).values[-1]
        best = {b for b in range(K) if row[b] == row.max()}
        chosen = {b for b in range(K) if row[b] > 0 and row[b] >= kth}
        top1.append(int(counts.argsort(descending=True, stable=True)[0]) in best)
        overlap.append(len(frequent & chosen) / min(len(chosen), k))
    assert record["objective"] == "masked" and len(top1) == K - 1
    assert record["unigram"]["next_token_top1"] == pytest.approx(sum(top1) / len(top1), abs=1e-12)
    assert record["unigram"]["next_token_overlap"] == pytest.approx(sum(overlap) / len(overlap), abs=1e-12)
    assert "unigram" not in agreement_record(rows, rows, k, 1, {})          # causal records are unchanged
    both = aggregate_agreement({"a": record, "b": record})
    assert both["unigram"]["next_token_overlap"]["mean"] == pytest.approx(record["unigram"]["next_token_overlap"])
