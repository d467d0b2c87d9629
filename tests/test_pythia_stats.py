import pytest
import torch

from common.io import UserError
from common.pythia_stats import (corpus_fingerprint, load_or_compute_statistics, map_to_token_set, select_token_set,
                                 statistics_for_sequences, tokenize_documents)
from common.stats import compute_statistics


class WordTokenizer:
    """A stand-in for a Hugging Face tokenizer: one id per known word."""

    def __init__(self, words):
        self.vocab = {w: i for i, w in enumerate(words)}

    def __call__(self, texts):
        return {"input_ids": [[self.vocab[w] for w in text.split()] for text in texts]}

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


def test_tokenize_keeps_documents_of_t_plus_one_tokens():
    tokenizer = WordTokenizer("a b c d e".split())
    sequences, read = tokenize_documents(tokenizer, ["a b c", "a b", "e d c b a", "c"], seq_len=2, batch_size=3)
    assert read == 4 and sequences.tolist() == [[0, 1, 2], [4, 3, 2]]


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
    assert "using the cache" in messages[-1]
    assert torch.equal(first["attention_map"], second["attention_map"])
    fingerprint = corpus_fingerprint(str(corpus))
    corpus.write_text("\n\n".join(["a b c d e a b", "b c d a a e e d"]))   # new contents: a new key
    assert corpus_fingerprint(str(corpus)) != fingerprint
    load_or_compute_statistics(**args)
    assert "using the cache" not in messages[-1]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    with pytest.raises(UserError, match="no document among the 2"):
        load_or_compute_statistics(**dict(args, seq_len=20))
    with pytest.raises(UserError, match="top_tokens=7"):
        load_or_compute_statistics(**dict(args, top_tokens=7))
    with pytest.raises(UserError, match="do not match"):
        load_or_compute_statistics(**dict(args, full_vocab_size=3))
