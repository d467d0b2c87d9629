"""Tokenizers and sequences of the Tiny Stories pipeline (docs/theory.md §5)."""
import json
from collections import Counter

import datasets
import pytest
import torch

from common.io import UserError
from common.corpus.tokenize import (BPE_SPECIAL_TOKENS, load_stories, load_vocabulary, natural_tokens,
                             story_sequences, tokenize_bpe, tokenize_natural, top_vocabulary,
                             write_token_folder)
from conftest import tiny_stories


def as_dataset(texts):
    return datasets.Dataset.from_dict({"text": texts})


def test_natural_rules_case_punctuation_whitespace():
    assert natural_tokens("Hello, World!\n\n  It's  done.") == \
        ["hello", ",", "world", "!", "it", "'", "s", "done", "."]
    # digits are single non-alphabetic characters; tabs and other whitespace vanish
    assert natural_tokens("Room 42\tHAS 3 cats") == ["room", "4", "2", "has", "3", "cats"]
    # str.isalpha decides: accented letters stay in the word, '²' (a digit but not decimal) splits it
    assert natural_tokens("Café x²y") == ["café", "x", "²", "y"]
    assert natural_tokens(" \n\t ") == []


def test_natural_tokens_match_the_isalpha_definition():
    from itertools import groupby
    text = "Ünïcode: ½ cup, naïve—façade… 3rd_place ǅemal x²! Ⅻ"
    expected = []
    for alpha, run in groupby(text.lower(), str.isalpha):
        expected.extend(["".join(run)] if alpha else [c for c in run if not c.isspace()])
    assert natural_tokens(text) == expected


def test_top_vocabulary_ties_are_deterministic():
    counts = {"b": 3, "a": 3, "c": 5, "d": 1}
    assert top_vocabulary(counts, 3) == ["c", "a", "b"]
    assert top_vocabulary(counts, 10) == ["c", "a", "b", "d"]


def test_tokenize_natural_keeps_top_tokens_and_filters_stories():
    texts = ["The cat sat.", "The dog sat.", "The cat ran!", "A zebra?", "the CAT sat."]
    counts = Counter(t for text in texts for t in natural_tokens(text))
    stories, vocabulary, frequencies, summary = tokenize_natural(as_dataset(texts), vocab_size=5)
    assert vocabulary == top_vocabulary(counts, 5) == ["the", ".", "cat", "sat", "!"]
    assert frequencies == {t: counts[t] for t in vocabulary}
    assert stories["text"] == ["The cat sat.", "the CAT sat."]        # every token inside the vocabulary
    assert stories["ids"] == [[0, 2, 3, 1]] * 2
    assert summary["stories_in"] == 5 and summary["stories_kept"] == 2
    assert summary["token_coverage"] == pytest.approx(sum(frequencies.values()) / sum(counts.values()))


def test_tokenize_natural_3000_most_frequent_and_parallel_counting_agree():
    texts = [" ".join(f"w{chr(97 + i % 26)}{chr(97 + (i * 7 + j) % 26)}" for j in range(i % 40 + 1))
             for i in range(3200)]
    serial = tokenize_natural(as_dataset(texts), vocab_size=3000)
    parallel = tokenize_natural(as_dataset(texts), vocab_size=3000, num_proc=2)
    counts = Counter(t for text in texts for t in natural_tokens(text))
    assert len(serial[1]) == min(3000, len(counts))
    assert serial[1] == parallel[1] == top_vocabulary(counts, 3000)
    assert serial[0]["ids"] == parallel[0]["ids"]


def test_empty_corpus_and_everything_filtered():
    with pytest.raises(UserError, match="empty"):
        tokenize_natural(as_dataset([" ", ""]), vocab_size=10)
    with pytest.raises(UserError, match="no story has all its tokens"):
        tokenize_natural(as_dataset(["a b c", "d e f"]), vocab_size=2)


def test_bpe_trained_on_a_small_corpus(tmp_path):
    texts = tiny_stories(200)
    stories, vocabulary, frequencies, summary, tokenizer = tokenize_bpe(as_dataset(texts), vocab_size=120)
    assert vocabulary[:4] == BPE_SPECIAL_TOKENS and len(vocabulary) <= 120
    assert len(stories) == len(texts) and summary["token_coverage"] == 1.0
    encoded = tokenizer.encode(texts[0])
    assert encoded.tokens[0] == "<s>" and encoded.tokens[-1] == "</s>"
    assert stories[0]["ids"] == encoded.ids
    assert sum(frequencies.values()) == sum(len(ids) for ids in stories["ids"])
    # the written folder reloads, tokenizer.json included
    write_token_folder(tmp_path / "bpe", stories, vocabulary, frequencies, summary, tokenizer)
    from tokenizers import Tokenizer
    assert Tokenizer.from_file(str(tmp_path / "bpe" / "tokenizer.json")).encode(texts[1]).ids == stories[1]["ids"]
    assert load_vocabulary(tmp_path / "bpe") == vocabulary


def test_folder_sequences_and_bad_inputs(tmp_path):
    texts = ["a b c d e f", "a b c", "c b a d e f g"]
    stories, vocabulary, frequencies, summary = tokenize_natural(as_dataset(texts), vocab_size=10)
    folder = tmp_path / "natural"
    write_token_folder(folder, stories, vocabulary, frequencies, summary)
    assert sorted(p.name for p in folder.iterdir()) == ["stories", "summary.json", "token_frequencies.json",
                                                       "vocabulary.json"]
    loaded, vocab = load_stories(folder)
    tokens = story_sequences(loaded, 5, len(vocab))
    ids = {t: i for i, t in enumerate(vocab)}
    expected = [[ids[t] for t in text.split()[:6]] for text in texts if len(text.split()) >= 6]
    assert tokens.tolist() == expected and tokens.dtype == torch.int32
    x, y = tokens[:, :-1], tokens[:, 1:]
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert story_sequences(loaded, 5, len(vocab), max_sequences=1).tolist() == expected[:1]
    with pytest.raises(UserError, match="longer than every story .*7 tokens"):
        story_sequences(loaded, 7, len(vocab))
    with pytest.raises(UserError, match="outside the 3-token vocabulary"):
        story_sequences(loaded, 5, 3)
    # a vocabulary that is not the one the stories were written with
    (folder / "vocabulary.json").write_text(json.dumps({t: i for i, t in enumerate(reversed(vocab))}))
    with pytest.raises(UserError, match="does not match the tokenized stories"):
        load_vocabulary(folder)
    with pytest.raises(UserError, match="data folder not found"):
        load_vocabulary(tmp_path / "missing")


def test_windows_cut_every_story_into_consecutive_sequences(tmp_path):
    import datasets

    from common.corpus.tokenize import story_sequences
    stories = datasets.Dataset.from_dict({"ids": [list(range(10)), list(range(100, 103)), list(range(200, 207))]})
    first = story_sequences(stories, 2, 300)                       # the release's rule: first T+1 tokens
    assert first.tolist() == [[0, 1, 2], [100, 101, 102], [200, 201, 202]]
    cut = story_sequences(stories, 2, 300, windows=True, rows=2)   # chunks of 2 stories
    assert cut.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [100, 101, 102], [200, 201, 202], [203, 204, 205]]
    brute = [s[i:i + 3] for s in stories["ids"] for i in range(0, len(s) - 2, 3)]
    assert cut.tolist() == brute
