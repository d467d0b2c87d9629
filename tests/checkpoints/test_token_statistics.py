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
