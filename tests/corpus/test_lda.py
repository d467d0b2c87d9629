"""The LDA corpus generator (common/corpus/lda.py, docs/theory.md §11): determinism, parameters, topic labels
checked against the draw, overlapping topics, and its use as a `--data` source."""
import json

import numpy as np
import pytest

from common.io import UserError
from common.corpus.lda import (LDAParameters, generate_lda, parse_source, read_topic_table, topic_table, word_names,
                              word_topics)
from common.corpus.tokenize import TokenizerConfig, natural_tokens, run_tokenizer
from common.theory.topic_measures import vocabulary_topics

SMALL = LDAParameters(n_topics=4, words_per_topic=5, alpha=0.3, min_length=12, max_length=20, n_documents=80)


def test_same_seed_same_documents_other_seed_others():
    first, again, other = generate_lda(SMALL, 7), generate_lda(SMALL, 7), generate_lda(SMALL, 8)
    assert first.documents == again.documents
    for name in ("word_ids", "drawn_topics", "offsets"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert first.documents != other.documents


def test_parameters_respected():
    corpus = generate_lda(SMALL, 0)
    assert len(corpus.documents) == SMALL.n_documents
    lengths = [len(document.split()) for document in corpus.documents]
    assert lengths == np.diff(corpus.offsets).tolist()
    assert min(lengths) >= SMALL.min_length and max(lengths) <= SMALL.max_length
    assert len(set(lengths)) > 4                           # lengths vary over the range
    assert len(corpus.words) == len(set(corpus.words)) == SMALL.n_topics * SMALL.words_per_topic
    assert set(np.unique(corpus.word_ids)) == set(range(len(corpus.words)))


def top_topic_share(alpha: float) -> float:
    """Mean over documents of the share of its words drawn from its most used topic."""
    params = LDAParameters(n_topics=5, words_per_topic=3, alpha=alpha, min_length=200, max_length=200,
                           n_documents=60)
    corpus = generate_lda(params, 1)
    drawn = corpus.drawn_topics.reshape(params.n_documents, 200)
    return float(np.mean([np.bincount(row, minlength=5).max() / 200 for row in drawn]))


def test_alpha_sets_how_mixed_documents_are():
    # α → 0: one topic per document; α → ∞: every topic equally (share → 1/5 plus sampling noise)
    assert top_topic_share(0.01) > 0.95
    assert top_topic_share(1000.0) < 0.3


def test_every_word_has_the_topic_it_was_drawn_from():
    corpus = generate_lda(SMALL, 3)
    occurrences = [word for document in corpus.documents for word in document.split()]
    assert len(occurrences) == len(corpus.drawn_topics)
    for word, drawn in zip(occurrences, corpus.drawn_topics.tolist()):
        assert corpus.table[word] == [drawn]               # disjoint topics: exactly the drawn one


def test_topics_survive_the_tokenizer_whose_ids_are_not_word_ids(tmp_path):
    """The trap of that paper's release: topics looked up by token id. Here the natural tokenizer orders
    its vocabulary by frequency, so ids differ from the generator's word ids; the table is by word."""
    corpus = generate_lda(SMALL, 4)
    run_tokenizer("natural", TokenizerConfig(data="lda:n_topics=4,words_per_topic=5,alpha=0.3,min_length=12,max_length=20",
                                             n_stories=80, out_dir=str(tmp_path / "tok"), num_proc=1, seed=4))
    vocabulary = json.loads((tmp_path / "tok" / "vocabulary.json").read_text())
    table = json.loads((tmp_path / "tok" / "topics.json").read_text())
    assert table == corpus.table and set(vocabulary) == set(corpus.words)
    # an LDA folder records the MASK token of masked runs too (docs/theory.md §16), outside its words
    assert json.loads((tmp_path / "tok" / "summary.json").read_text())["mask_token"] == "<mask>" not in vocabulary
    assert [w for w, _ in sorted(vocabulary.items(), key=lambda item: item[1])] != corpus.words
    id_to_word = {i: w for w, i in vocabulary.items()}
    ids = [vocabulary[token] for document in corpus.documents for token in natural_tokens(document)]
    assert len(ids) == len(corpus.drawn_topics)            # one token per word
    for token_id, drawn in zip(ids, corpus.drawn_topics.tolist()):
        assert drawn in table[id_to_word[token_id]]


def test_overlap_adjacent_topics_share_words():
    params = LDAParameters(n_topics=4, words_per_topic=5, overlap=2, min_length=30, max_length=40, n_documents=60)
    topics = word_topics(params)
    assert params.n_words == len(topics) == 3 * 3 + 5
    members = [{j for j, t in enumerate(topics) if k in t} for k in range(4)]
    assert all(len(m) == 5 for m in members)
    for a in range(4):
        for b in range(a + 1, 4):
            assert len(members[a] & members[b]) == (2 if b == a + 1 else 0)
    corpus = generate_lda(params, 2)
    for word, drawn in zip(" ".join(corpus.documents).split(), corpus.drawn_topics.tolist()):
        assert drawn in corpus.table[word]
    shared = [word for word, t in corpus.table.items() if len(t) == 2]
    assert len(shared) == 3 * 2
    assert corpus.table == topic_table(params)


def test_words_are_single_lowercase_tokens():
    names = word_names(LDAParameters(n_topics=80, words_per_topic=3))   # two syllables for the topic
    assert len(set(names)) == len(names)
    assert all(name.isalpha() and name.islower() and natural_tokens(name) == [name] for name in names)


def test_parse_source():
    assert parse_source("synthetic") is None and parse_source("lda.txt") is None
    assert parse_source("lda", 30) == LDAParameters(n_documents=30)
    assert parse_source("lda:overlap=2, alpha=0.5,n_documents=7", 30) == LDAParameters(overlap=2, alpha=0.5,
                                                                                       n_documents=7)
    for bad in ("lda:topics=3", "lda:alpha", "lda:n_topics=three", "lda:alpha=-1"):
        with pytest.raises(UserError):
            parse_source(bad)


@pytest.mark.parametrize("change, seq_len, message", [
    ({"words_per_topic": 0}, None, "more topics"),
    ({"alpha": 0.0}, None, "alpha"),
    ({"alpha": -1.0}, None, "alpha"),
    ({"min_length": 50, "max_length": 40}, None, "empty"),
    ({"min_length": 20, "max_length": 40}, 32, "shorter than one sequence"),
    ({"overlap": 5}, None, "overlap"),
    ({"n_documents": 0}, None, "n_documents"),
])
def test_bad_parameters_one_clear_error(change, seq_len, message):
    params = LDAParameters(**{**SMALL.__dict__, **change})
    with pytest.raises(UserError, match=message):
        params.validate(seq_len)
    with pytest.raises(UserError):
        generate_lda(params) if seq_len is None else params.validate(seq_len)


def test_topic_table_format_and_missing_words(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"a": 0, "b": [0, "x"], "c": None, "d": []}))
    table = read_topic_table(path)
    assert table == {"a": [0], "b": [0, "x"], "c": [], "d": []}
    assert vocabulary_topics(["b", "a", "c"], table) == [frozenset({0, "x"}), frozenset({0}), frozenset()]
    with pytest.raises(UserError, match="misses 2 of the 4 vocabulary words"):
        vocabulary_topics(["a", "zz", "b", "yy"], table)
    path.write_text(json.dumps({"a": {"topic": 1}}))
    with pytest.raises(UserError, match="must be a number"):
        read_topic_table(path)
