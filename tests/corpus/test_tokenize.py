"""Tokenizers and sequences of the Tiny Stories pipeline (docs/theory.md §5)."""
import json
from collections import Counter

import datasets
import pytest
import torch

from common.io import UserError
from common.corpus.tokenize import (BPE_SPECIAL_TOKENS, MASK_TOKEN, free_mask_token, load_stories, load_vocabulary,
                             mask_token, natural_tokens, story_sequences, tokenize_bpe, tokenize_natural,
                             top_vocabulary, write_token_folder)
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
    # the MASK token of masked runs is recorded, outside the vocabulary (BPE's pre-tokenizer splits "<mask>")
    assert json.loads((tmp_path / "bpe" / "summary.json").read_text())["mask_token"] == "<mask>" not in vocabulary


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


def test_the_folder_records_a_mask_token_that_no_vocabulary_entry_spells(tmp_path):
    assert free_mask_token(["a", "b"]) == MASK_TOKEN == "<mask>"
    assert free_mask_token(["a", "<mask>", "<mask_1>"]) == "<mask_2>"
    stories, vocabulary, frequencies, summary = tokenize_natural(as_dataset(["a b c d", "b c d e"]), vocab_size=10)
    folder = tmp_path / "natural"
    written = write_token_folder(folder, stories, vocabulary, frequencies, summary)
    on_disk = json.loads((folder / "summary.json").read_text())
    assert written["mask_token"] == on_disk["mask_token"] == mask_token(folder, vocabulary) == "<mask>"
    # the vocabulary is untouched: causal runs see the same ids and SHA-256
    assert load_vocabulary(folder) == vocabulary and "<mask>" not in json.loads((folder / "vocabulary.json").read_text())
    # a vocabulary that spells "<mask>" gets the next free name
    write_token_folder(tmp_path / "taken", stories, vocabulary + ["<mask>"], frequencies, summary)
    assert json.loads((tmp_path / "taken" / "summary.json").read_text())["mask_token"] == "<mask_1>"
    # a folder written before the record: the name it would have recorded
    del on_disk["mask_token"]
    (folder / "summary.json").write_text(json.dumps(on_disk))
    assert mask_token(folder, vocabulary) == "<mask>" and mask_token(folder, vocabulary + ["<mask>"]) == "<mask_1>"
    # a recorded name that collides with the vocabulary is refused
    (folder / "summary.json").write_text(json.dumps(dict(on_disk, mask_token=vocabulary[0])))
    with pytest.raises(UserError, match="mask token .* is a token of the vocabulary"):
        mask_token(folder, vocabulary)


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


def test_sequence_counts_are_what_story_sequences_makes():
    from common.corpus.tokenize import sequence_counts, story_lengths
    rng = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (80,), generator=rng).tolist()
    stories = datasets.Dataset.from_dict({"ids": [list(range(n)) for n in lengths]})
    assert story_lengths(stories).tolist() == lengths
    for windows in (False, True):
        counts = sequence_counts(stories, [1, 4, 7, 30, 58, 59], windows)
        for T, n in counts.items():
            brute = len(story_sequences(stories, T, 100, windows=windows)) if max(lengths) > T else 0
            assert n == brute, (T, windows)
        assert sequence_counts(lengths, 7, windows) == {7: counts[7]}    # lengths instead of a dataset
    with pytest.raises(UserError, match="seq_len must be at least 1"):
        sequence_counts(lengths, [0])


def test_summary_counts_sequences_at_other_lengths_and_vocabulary_sizes():
    from common.corpus.tokenize import SEQ_LENS, sequences_at_other_vocab_sizes
    texts = tiny_stories(60) + ["The zebra and the yak ate grass by the lake " * (k + 1) for k in range(12)]
    _, vocabulary, _, summary = tokenize_natural(as_dataset(texts), vocab_size=20, seq_len=40)
    tokens_in = summary["tokens_in"]
    rows = summary["sequences"]
    mine = [row for row in rows if not row.get("other_vocabulary")]
    assert [row["seq_len"] for row in mine] == sorted(set(SEQ_LENS) | {40})
    for row in rows:   # every row against a re-run of the tokenizer at its vocabulary size (brute force)
        try:
            lengths = [len(ids) for ids in tokenize_natural(as_dataset(texts), row["vocab_size"])[0]["ids"]]
        except UserError:    # no story kept at that size
            lengths = []
        T = row["seq_len"]
        assert row["stories"] == len(lengths)
        assert row["first"] == sum(n >= T + 1 for n in lengths)
        assert row["windows"] == sum(n // (T + 1) for n in lengths)
        assert row["first_share"] == pytest.approx(row["first"] * (T + 1) / tokens_in)
        assert row["windows_share"] == pytest.approx(row["windows"] * (T + 1) / tokens_in)
    others = {row["vocab_size"] for row in rows if row.get("other_vocabulary")}
    assert others == {10, 40, 80} - ({80} if summary["distinct_tokens_in"] < 40 else set())
    larger = sequences_at_other_vocab_sizes(summary, 40, windows=True)
    assert larger == {row["vocab_size"]: row["windows"] for row in rows if row.get("other_vocabulary")}
    assert sequences_at_other_vocab_sizes(summary, 41) == {}


def test_keep_unknown_maps_rarer_tokens_to_one_unknown_token(tmp_path):
    from common.corpus.tokenize import UNKNOWN_TOKEN, keep_in_vocabulary
    texts = ["The cat sat.", "The dog sat.", "The cat ran!", "A zebra?", "the CAT sat."]
    counts = Counter(t for text in texts for t in natural_tokens(text))
    stories, vocabulary, frequencies, summary = tokenize_natural(as_dataset(texts), vocab_size=5, keep_unknown=True)
    known = top_vocabulary(counts, 4)
    assert vocabulary == known + [UNKNOWN_TOKEN]
    ids = {t: i for i, t in enumerate(known)}
    assert stories["text"] == texts                                   # every story kept
    assert stories["ids"] == [[ids.get(t, 4) for t in natural_tokens(text)] for text in texts]
    n_unknown = sum(n for t, n in counts.items() if t not in ids)
    assert frequencies == dict({t: counts[t] for t in known}, **{UNKNOWN_TOKEN: n_unknown})
    assert summary["unknown_token"] == UNKNOWN_TOKEN
    assert summary["unknown_rate"] == pytest.approx(n_unknown / sum(counts.values()))
    assert summary["stories_kept"] == 5
    # the drop rule (the default) states a zero rate and no unknown token
    dropped = tokenize_natural(as_dataset(texts), vocab_size=5)[3]
    assert dropped["unknown_token"] is None and dropped["unknown_rate"] == 0 and dropped["stories_kept"] == 2
    # held-out text through the same vocabulary (topic_structure's use) maps the same way
    held = keep_in_vocabulary(as_dataset(["A yak sat.", "The cat."]), vocabulary)
    assert held["ids"] == [[4, 4, ids["sat"], ids["."]], [ids["the"], ids["cat"], ids["."]]]
    assert keep_in_vocabulary(as_dataset(["A yak sat.", "The cat."]), known)["ids"] == held["ids"][1:]
    write_token_folder(tmp_path / "unk", stories, vocabulary, frequencies, summary)
    assert load_vocabulary(tmp_path / "unk")[-1] == UNKNOWN_TOKEN


def test_the_script_prints_the_sequences_and_writes_no_carriage_returns(tmp_path):
    from conftest import run_script, write_txt
    corpus = write_txt(tmp_path / "c.txt", tiny_stories(40) + ["a " * 300])
    result = run_script("tiny_tokenize_natural.py", f"--data={corpus}", f"--out_dir={tmp_path / 'out'}",
                        "--vocab_size=12", "--seq_len=20", "--keep_unknown=True")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    row = next(r for r in summary["sequences"] if r["seq_len"] == 20 and not r.get("other_vocabulary"))
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("20*"))
    assert f"{row['first']:,}" in line and f"{row['windows']:,}" in line
    assert f"<unk> is {100 * summary['unknown_rate']:.2f}%" in result.stdout
    assert "\r" not in result.stdout + result.stderr                 # no progress-bar frames in a log
    bpe = run_script("tiny_tokenize_bpe.py", f"--data={corpus}", f"--out_dir={tmp_path / 'bpe'}",
                     "--keep_unknown=True", check=False)
    assert bpe.returncode != 0 and bpe.stderr.strip().count("\n") == 0 and not (tmp_path / "bpe").exists()
