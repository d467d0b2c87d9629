import pytest
import torch

from common.io import UserError
from common.checkpoints.token_statistics import (corpus_fingerprint, load_or_compute_statistics, map_to_token_set, select_token_set,
                                 statistics_for_sequences, tokenize_documents)
from common.theory.statistics import compute_statistics


class WordTokenizer:
    """A stand-in for a Hugging Face tokenizer: one id per known word."""

    def __init__(self, words, unk_token_id=None):
        self.vocab = {w: i for i, w in enumerate(words)}
        self.unk_token_id = unk_token_id

    def __call__(self, texts):
        return {"input_ids": [[self.vocab.get(w, self.unk_token_id) for w in text.split()] for text in texts]}

    def get_vocab(self):
        return dict(self.vocab)


def test_token_set_statistics_equal_the_full_computation(markov):
    sequences = torch.cat(markov(12, 9, 20, seed=4), dim=1)[:, :10]   # [N, T+1]
    token_ids = select_token_set(sequences, 13, 20)
    counts = torch.bincount(sequences.reshape(-1), minlength=20)
    assert counts[token_ids].min() >= counts[torch.tensor([i for i in range(20) if i not in token_ids])].max()
    mapped = map_to_token_set(sequences, token_ids, 20)
    assert (mapped >= 0).sum() == torch.isin(sequences, token_ids).sum() and mapped.max() == 12
    assert torch.equal(token_ids[mapped[mapped >= 0]], sequences[mapped >= 0])
    got = statistics_for_sequences(sequences, token_ids, 20)
    full = compute_statistics(mapped[:, :-1], mapped[:, 1:], 13, full_vocab_size=20)
    assert set(got) == {"value_map", "attention_map", "position_map", "token_ids", "n_positions"}
    for name in ("value_map", "attention_map", "position_map"):
        assert torch.allclose(got[name], getattr(full, name), rtol=1e-12, atol=0), name
    assert torch.equal(select_token_set(sequences, None, 20), torch.arange(20))


def test_tokenize_keeps_documents_of_t_plus_one_tokens_and_counts_unknown_tokens():
    tokenizer = WordTokenizer("a b c d e <unk>".split(), unk_token_id=5)
    corpus = tokenize_documents(tokenizer, ["a b c", "a x", "e d c b a", "y"], seq_len=2, batch_size=3)
    assert corpus.documents_read == 4 and corpus.sequences.tolist() == [[0, 1, 2], [4, 3, 2]]
    assert (corpus.tokens, corpus.unknown_tokens) == (11, 2) and corpus.unknown_rate == pytest.approx(2 / 11)
    no_unknown = tokenize_documents(WordTokenizer("a b c".split()), ["a b c"], seq_len=2)   # byte-level: none
    assert no_unknown.unknown_tokens == 0 and no_unknown.tokens == 3


def test_unknown_token_rate_is_reported_and_warned_about(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(["a b c d zz a b", "b c d a a e e b", "e e d"]))
    args = dict(dataset=str(corpus), n_examples=10, seq_len=4, top_tokens=None, full_vocab_size=6,
                cache_dir=tmp_path / "cache")
    for threshold, warned in ((0.01, True), (0.1, False)):
        messages = []
        load_or_compute_statistics(WordTokenizer("a b c d e <unk>".split(), 5), max_unknown_rate=threshold,
                                   log=messages.append, **args)
        assert any("2 of 3 documents kept" in m and "unknown-token rate 5.56% (1 of 18 tokens)" in m for m in messages)
        assert any(m.startswith("warning: 5.6% of the corpus's tokens") for m in messages) == warned
    assert "using the cache" in messages[0]            # the second call read the cache, and still reports


def test_cache_is_keyed_and_reused(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(["a b c d e a b", "b c d a a e e b", "e e d"]))
    tokenizer = WordTokenizer("a b c d e".split())
    messages = []
    args = dict(tokenizer=tokenizer, dataset=str(corpus), n_examples=10, seq_len=4, top_tokens=None,
                full_vocab_size=6, cache_dir=tmp_path / "cache", log=messages.append)
    first = load_or_compute_statistics(**args)
    assert first["n_documents"] == 2 and first["attention_map"].shape == (6, 6)
    assert not any("using the cache" in m for m in messages)
    second = load_or_compute_statistics(**args)
    assert "using the cache" in messages[-2]
    assert torch.equal(first["attention_map"], second["attention_map"])
    fingerprint = corpus_fingerprint(str(corpus))
    corpus.write_text("\n\n".join(["a b c d e a b", "b c d a a e e d"]))   # new contents: a new key
    assert corpus_fingerprint(str(corpus)) != fingerprint
    seen = len(messages)
    load_or_compute_statistics(**args)
    assert not any("using the cache" in m for m in messages[seen:])
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    with pytest.raises(UserError, match="no document among the 2"):
        load_or_compute_statistics(**dict(args, seq_len=20))
    with pytest.raises(UserError, match="top_tokens=7"):
        load_or_compute_statistics(**dict(args, top_tokens=7))
    with pytest.raises(UserError, match="do not match"):
        load_or_compute_statistics(**dict(args, full_vocab_size=3))


# -- masked LMs (docs/theory.md §16, §17): the masked statistics of a checkpoint's own tokenisation -----------
class MaskedWordTokenizer(WordTokenizer):
    """A BERT-like stand-in: its template adds [CLS] (id 6) unless add_special_tokens=False; [MASK] is id 5."""
    mask_token_id = 5

    def __call__(self, texts, add_special_tokens=True):
        ids = super().__call__(texts)["input_ids"]
        return {"input_ids": [[6] * add_special_tokens + i for i in ids]}


def brute_force_masked(sequences, token_ids, V, mask_prob=0.15, split=(0.8, 0.1, 0.1)):
    """E over every corruption of every position (selected or not; MASK, own word, or each random word of
    [0, V)) of the raw sums of docs/theory.md §16, divided by E[n] = πNT; Q̄ₘ, p̄ₘ with the fixed G."""
    import itertools

    K, (N, T) = len(token_ids), sequences.shape
    index = {int(t): i for i, t in enumerate(token_ids)}
    one_hot = lambda i: torch.nn.functional.one_hot(torch.tensor(index[i]), K).double() if i in index else \
        torch.zeros(K, dtype=torch.float64)
    mu, kappa, rho = split
    choices = lambda x: ([(False, x, 1 - mask_prob), (True, 5, mask_prob * mu), (True, x, mask_prob * kappa)]
                         + [(True, w, mask_prob * rho / V) for w in range(V)])
    outcomes = []   # (probability, x̃, selected, clean) over every document and corruption
    for seq in sequences.tolist():
        for draw in itertools.product(*(choices(x) for x in seq)):
            p = 1.0
            for _, _, q in draw:
                p *= q
            outcomes.append((p, [d[1] for d in draw], [d[0] for d in draw], seq))
    n = mask_prob * N * T
    B, Phi = torch.zeros(K, K, dtype=torch.float64), torch.zeros(K, K, dtype=torch.float64)
    for p, shown, selected, clean in outcomes:
        a_bar = sum(one_hot(s) for s in shown) / T
        for t in range(T):
            if selected[t]:
                r = one_hot(clean[t]) - 1 / V
                B += p * torch.outer(one_hot(shown[t]), r)
                Phi += p * torch.outer(r, a_bar)
    B, Phi = B / n, Phi / n
    value_map = (B @ Phi).T
    G = value_map @ B
    Q, P = torch.zeros(K, K, dtype=torch.float64), torch.zeros(2 * T - 1, dtype=torch.float64)
    for p, shown, selected, clean in outcomes:
        for t in range(T):
            if selected[t]:
                r = one_hot(clean[t]) - 1 / V
                M = torch.stack([one_hot(s) @ G @ r for s in shown])
                dS = (M - M.mean()) / T
                for s in range(T):
                    Q += p * dS[s] * torch.outer(one_hot(shown[t]), one_hot(shown[s]))
                    P[t - s + T - 1] += p * dS[s]
    return {"value_map": value_map, "context": Phi, "attention_map": Q / n, "position_map": P / n}


@pytest.mark.parametrize("top_tokens", [None, 3])
def test_masked_statistics_of_a_checkpoint_equal_the_brute_force_expectation(tmp_path, top_tokens):
    # V = 7 ids (words 0 … 4, [MASK] 5, [CLS] 6); T = 3; K the whole vocabulary ([MASK] inside) or the top 3
    tokenizer = MaskedWordTokenizer(["a", "b", "c", "d", "e"])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b a d\n\nc a e\n\nb\n")      # the third document is shorter than T and is dropped
    got = load_or_compute_statistics(tokenizer, dataset=str(corpus), n_examples=10, seq_len=3,
                                     top_tokens=top_tokens, full_vocab_size=7, cache_dir=tmp_path / "cache",
                                     log=lambda m: None, objective="masked", context=True)
    sequences = torch.tensor([[0, 1, 0], [2, 0, 4]])   # first T tokens, no [CLS]
    token_ids = select_token_set(sequences, top_tokens, 7)
    assert torch.equal(got["token_ids"], token_ids) and got["n_documents"] == 2
    assert torch.equal(got["input_counts"], torch.bincount(map_to_token_set(sequences, token_ids, 7).flatten()[
        map_to_token_set(sequences, token_ids, 7).flatten() >= 0], minlength=len(token_ids)))
    expected = brute_force_masked(sequences, token_ids, 7)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, rtol=1e-10, atol=1e-15), (name, top_tokens)
    # the causal statistics of the same corpus are another cache entry, with other numbers
    causal = load_or_compute_statistics(tokenizer, dataset=str(corpus), n_examples=10, seq_len=2,
                                        top_tokens=top_tokens, full_vocab_size=7, cache_dir=tmp_path / "cache",
                                        log=lambda m: None)
    assert causal["cache_key"] != got["cache_key"] and "context" not in causal


def test_masked_statistics_need_a_mask_token(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b a d\n")
    with pytest.raises(UserError, match="no mask token"):
        load_or_compute_statistics(WordTokenizer(["a", "b", "d"]), dataset=str(corpus), n_examples=1, seq_len=3,
                                   top_tokens=None, full_vocab_size=3, cache_dir=tmp_path, objective="masked")
