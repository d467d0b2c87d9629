"""Tests of the embedded synthetic corpus (common/corpus/synthetic.py).

The statistics here are recomputed locally with a simple tokenisation, on
purpose independent of the project's tokenizer and stats modules: this file
checks that the planted truth is really in the text, not that two pieces of
project code agree with each other.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest

from common.corpus.synthetic import (
    INTERCHANGEABLE_PAIRS,
    PLANTED_VERBS,
    TOPICS,
    generate_labelled_stories,
    generate_stories,
    vocabulary_words,
)

_WORDS = re.compile(r"[a-z]+")
# lower-case letter runs, and every other non-space character as its own token
_TOKENS = re.compile(r"[a-z]+|[^\sa-z]")


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def tokens(text: str) -> list[str]:
    return _TOKENS.findall(text.lower())


@pytest.fixture(scope="module")
def stories_5000() -> list[str]:
    return generate_stories(5000, seed=0)


def test_deterministic_in_seed():
    a = generate_stories(200, seed=7)
    b = generate_stories(200, seed=7)
    c = generate_stories(200, seed=8)
    assert a == b
    assert len(a) == len(c) == 200
    assert a != c
    # different seeds give different stories, not the same ones reordered
    assert len(set(a) & set(c)) < 5
    # within one call the stories are varied, too
    assert len(set(a)) == len(a)


def test_labelled_matches_plain():
    labelled = generate_labelled_stories(100, seed=3)
    assert [s for _, s in labelled] == generate_stories(100, seed=3)
    assert {t for t, _ in labelled} <= set(TOPICS)
    assert generate_stories(0) == []


def test_shape_and_style(stories_5000):
    for s in stories_5000:
        assert "\n" not in s  # callers join stories with blank lines
        assert s[0].isupper()
        assert s.rstrip()[-1] in '.!?"'
    n_tok = np.array([len(tokens(s)) for s in stories_5000])
    n_words = np.array([len(words(s)) for s in stories_5000])
    # long enough for 64-token training windows
    assert np.mean(n_tok > 64) > 0.9
    assert 60 <= np.median(n_words) <= 200
    joined = " ".join(stories_5000[:500])
    for ch in ".,!?\"":
        assert ch in joined


def test_vocabulary():
    vocab = vocabulary_words()
    assert vocab == sorted(set(vocab))
    assert all(w.isalpha() and w.islower() for w in vocab)
    vset = set(vocab)
    for s in generate_stories(2000, seed=1):
        unknown = set(words(s)) - vset
        assert not unknown, unknown
    emitted = {w for s in generate_stories(20000, seed=2) for w in words(s)}
    assert 500 <= len(emitted) <= 1000, len(emitted)
    # every planted / topic word is a vocabulary word
    planted = set(PLANTED_VERBS) | {v for vs in PLANTED_VERBS.values() for v in vs}
    assert planted <= vset
    assert {w for ws in TOPICS.values() for w in ws} <= vset


def test_planted_tables():
    assert len(PLANTED_VERBS) >= 8
    for noun, verbs in PLANTED_VERBS.items():
        assert 1 <= len(verbs) <= 2, noun
    assert len(INTERCHANGEABLE_PAIRS) >= 3
    for a, b in INTERCHANGEABLE_PAIRS:
        assert a != b
        assert a in PLANTED_VERBS and b in PLANTED_VERBS
        assert PLANTED_VERBS[a] == PLANTED_VERBS[b], (a, b)
    assert len(TOPICS) >= 4
    all_topic_words = [w for ws in TOPICS.values() for w in ws]
    assert len(all_topic_words) == len(set(all_topic_words)), "topics must be disjoint"


def _bigram_map(stories: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """B[i, j] = P(x=i, y=j) - P(x=i) / V from within-story bigram counts."""
    seqs = [tokens(s) for s in stories]
    index: dict[str, int] = {}
    for seq in seqs:
        for t in seq:
            index.setdefault(t, len(index))
    V = len(index)
    counts = np.zeros((V, V))
    for seq in seqs:
        ids = [index[t] for t in seq]
        np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    P = counts / counts.sum()
    return P - P.sum(axis=1, keepdims=True) / V, index


def test_planted_verbs_top_of_bigram_rows(stories_5000):
    B, index = _bigram_map(stories_5000)
    inv = {i: t for t, i in index.items()}
    followers: dict[str, Counter] = {noun: Counter() for noun in PLANTED_VERBS}
    for s in stories_5000:
        t = tokens(s)
        for a, b in zip(t, t[1:]):
            if a in followers:
                followers[a][b] += 1
    for noun, verbs in PLANTED_VERBS.items():
        row = B[index[noun]]
        top3 = [inv[j] for j in np.argsort(-row, kind="stable")[:3]]
        for v in verbs:
            assert v in top3, (noun, verbs, top3)
        # the planted verbs carry most of the row's mass, not just a plurality
        share = sum(followers[noun][v] for v in verbs) / sum(followers[noun].values())
        assert share > 0.5, (noun, share)


def test_interchangeable_rows_alike(stories_5000):
    # the nouns of a pair have near-identical next-token distributions
    B, index = _bigram_map(stories_5000)
    for a, b in INTERCHANGEABLE_PAIRS:
        ra, rb = B[index[a]], B[index[b]]
        ra = np.clip(ra, 0, None) / np.clip(ra, 0, None).sum()
        rb = np.clip(rb, 0, None) / np.clip(rb, 0, None).sum()
        cos = ra @ rb / (np.linalg.norm(ra) * np.linalg.norm(rb))
        assert cos > 0.9, (a, b, cos)


def test_topics_cooccur():
    labelled = generate_labelled_stories(3000, seed=5)
    topic_sets = {t: set(ws) for t, ws in TOPICS.items()}
    for topic in TOPICS:
        mine = [s for t, s in labelled if t == topic]
        assert len(mine) > 100, topic
        per_topic = Counter()
        for s in mine:
            for w in words(s):
                for t, ws in topic_sets.items():
                    if w in ws:
                        per_topic[t] += 1
        own = per_topic[topic] / len(mine)
        other = max(per_topic[t] for t in TOPICS if t != topic) / len(mine)
        assert own >= 3.0, (topic, own)  # several topic words per story
        assert own > 10 * other, (topic, own, other)


@pytest.mark.slow
def test_generation_speed():
    t0 = time.perf_counter()
    stories = generate_stories(100_000, seed=0)
    elapsed = time.perf_counter() - t0
    print(f"\n100000 stories in {elapsed:.2f} s")
    assert len(stories) == 100_000
    assert elapsed < 30.0, elapsed
