"""LDA corpus generator (docs/theory.md §11): the synthetic data of Li, Li & Risteski (2023).

Topics and words.  `n_topics` topics, each uniform over `words_per_topic` words.  With `overlap` = 0
(the default, that paper's corpus) the topics own disjoint blocks of words.  With `overlap` = o > 0
adjacent topics share o words: the words are laid on a line and topic k covers words
[k·(w − o), k·(w − o) + w), so topic k's last o words are topic k+1's first o (a word may belong to
more than two topics when o > w/2).  A word's topics are *all* the topics that cover it, and
`topic_table()` lists them: {word: [topics, ascending]}.  Two different words are "same topic" when
their topic lists share a topic (common/theory/topic_measures.py bins pairs that way).

Words are short lowercase pseudo-words, so every tokenizer keeps each one whole (the natural
tokenizer splits on non-letters, so no digits): syllables consonant + vowel, the first syllable(s)
naming the word's first topic and the rest its place in that topic's block ("ba·be" is topic 0's
word 1, "be·ba" topic 1's word 0).  The table, not the spelling, is the truth.

Documents.  Document d draws θ_d ~ Dirichlet(α·1), a length L_d uniform in [min_length, max_length],
then for each of its L_d words a topic z ~ θ_d and a word uniform in topic z's block.  Words are
joined by single spaces (one document per string, no punctuation).  Everything comes from one
`numpy.random.Generator(seed)`: the same parameters and seed give the same documents.
`generate_lda` also returns the topic each occurrence was drawn from, so tests can check the table
against the draw (that paper's release looked topics up by token id and mislabelled words).

As a `--data` source (common/corpus/text.py): `lda` uses the defaults (topic_structure.py's block),
`lda:overlap=2,alpha=0.5` overrides any of them (`n_documents` otherwise follows the caller's document count).
"""
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np

from common.config import Settings
from common.io import UserError, read_json

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SYLLABLES = [c + v for c in CONSONANTS for v in VOWELS]   # 70 syllables: "ba", "be", … "zu"
SOURCE_NAME = "lda"
TABLE_FILE = "topics.json"                                  # the word → topics table beside a corpus


class LDAParameters(Settings, script="topic_structure.py", frozen=True, names=(
        "n_topics", "words_per_topic", "alpha", "min_length", "max_length", "n_documents", "overlap")):
    """The generator's parameters (the defaults are Li, Li & Risteski's): the corpus settings of
    topic_structure.py's hyperparameter block, their one home (common/config.py `Settings`)."""

    def validate(self, seq_len: Optional[int] = None) -> "LDAParameters":
        """Raise a one-line UserError for parameters that cannot make a corpus (or, given the
        model's sequence length T, documents shorter than the T + 1 words one sequence needs)."""
        if self.n_topics < 1:
            raise UserError(f"--n_topics must be at least 1 (got {self.n_topics})")
        if self.words_per_topic < 1:
            raise UserError(f"more topics ({self.n_topics}) than words (0): --words_per_topic must be at "
                            f"least 1 (got {self.words_per_topic})")
        if not 0 <= self.overlap < self.words_per_topic:
            raise UserError(f"--overlap={self.overlap} must be in 0 … {self.words_per_topic - 1} "
                            f"(words_per_topic − 1): topics sharing every word could not be told apart")
        if not self.alpha > 0:   # also refuses NaN
            raise UserError(f"--alpha must be positive (got {self.alpha}): it is the Dirichlet concentration")
        if self.min_length < 1 or self.min_length > self.max_length:
            raise UserError(f"the document length range [{self.min_length}, {self.max_length}] is empty; "
                            f"need 1 ≤ --min_length ≤ --max_length")
        if seq_len is not None and self.min_length < seq_len + 1:
            raise UserError(f"documents of --min_length={self.min_length} words are shorter than one sequence "
                            f"of seq_len + 1 = {seq_len + 1} words; raise --min_length or lower --seq_len")
        if self.n_documents < 1:
            raise UserError(f"--n_documents must be at least 1 (got {self.n_documents})")
        return self

    @property
    def stride(self) -> int:
        return self.words_per_topic - self.overlap

    @property
    def n_words(self) -> int:
        return (self.n_topics - 1) * self.stride + self.words_per_topic



def _syllables(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, len(SYLLABLES))
        digits.append(SYLLABLES[digit])
    return "".join(reversed(digits))


def _width(count: int) -> int:
    width = 1
    while len(SYLLABLES) ** width < count:
        width += 1
    return width


def word_topics(params: LDAParameters) -> list:
    """Topics of word j (ascending): every k with k·stride ≤ j < k·stride + words_per_topic."""
    topics = []
    for j in range(params.n_words):
        last = min(j // params.stride, params.n_topics - 1)
        topics.append([k for k in range(max(0, last - params.words_per_topic), last + 1)
                       if k * params.stride <= j < k * params.stride + params.words_per_topic])
    return topics


def word_names(params: LDAParameters) -> list:
    """The pseudo-word of every word id: first-topic syllable(s), then the place in that topic's block."""
    topic_width, place_width = _width(params.n_topics), _width(params.words_per_topic)
    names = []
    for j, topics in enumerate(word_topics(params)):
        first = topics[0]
        names.append(_syllables(first, topic_width) + _syllables(j - first * params.stride, place_width))
    return names


def topic_table(params: LDAParameters) -> dict:
    """{word: [its topics]} — the table written beside the corpus (TABLE_FILE)."""
    return dict(zip(word_names(params), word_topics(params)))


@dataclass
class LDACorpus:
    documents: list             # one string per document, words joined by spaces
    word_ids: np.ndarray        # int64 [total words]: the word of every occurrence, documents concatenated
    drawn_topics: np.ndarray    # int64 [total words]: the topic each occurrence was drawn from
    offsets: np.ndarray         # int64 [n_documents + 1]: document d is word_ids[offsets[d]:offsets[d + 1]]
    words: list                 # word id → pseudo-word
    table: dict                 # {word: [topics]}


def generate_lda(params: LDAParameters, seed: int = 0) -> LDACorpus:
    """Documents of the LDA model above, deterministic in (params, seed)."""
    params.validate()
    rng = np.random.default_rng(seed)
    K, N = params.n_topics, params.n_documents
    mixtures = rng.dirichlet(np.full(K, params.alpha), size=N)          # θ_d, [N, K]
    # a tiny α can underflow every component to 0 (numpy then returns NaN or zeros): one topic then
    mixtures = np.where(np.isfinite(mixtures), mixtures, 0.0)
    empty = mixtures.sum(1) <= 0
    mixtures[empty, rng.integers(0, K, size=int(empty.sum()))] = 1.0
    lengths = rng.integers(params.min_length, params.max_length + 1, size=N)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    document = np.repeat(np.arange(N), lengths)
    # z ~ θ_d by inverting each document's cumulative mixture (vectorised over all occurrences)
    cumulative = np.cumsum(mixtures, axis=1)
    cumulative /= cumulative[:, -1:]
    drawn = (rng.random(len(document))[:, None] >= cumulative[document]).sum(1).clip(max=K - 1)
    place = rng.integers(0, params.words_per_topic, size=len(document))
    word_ids = drawn * params.stride + place
    words = word_names(params)
    vocabulary = np.array(words)
    documents = [" ".join(vocabulary[word_ids[a:b]]) for a, b in zip(offsets[:-1], offsets[1:])]
    return LDACorpus(documents, word_ids.astype(np.int64), drawn.astype(np.int64), offsets.astype(np.int64),
                     words, dict(zip(words, word_topics(params))))


def parse_source(source: str, n_documents: Optional[int] = None) -> Optional[LDAParameters]:
    """LDAParameters of a `--data` source `lda` or `lda:name=value,…`; None for any other source.
    `n_documents` (the caller's document count) applies unless the source names its own."""
    name, colon, spec = str(source).partition(":")
    if name != SOURCE_NAME:
        return None
    known = {f.name: f.type for f in fields(LDAParameters)}
    values = {} if n_documents is None else {"n_documents": n_documents}
    for item in filter(None, (part.strip() for part in spec.split(","))) if colon else ():
        key, eq, raw = item.partition("=")
        if not eq or key not in known:
            raise UserError(f"bad LDA source item {item!r} in {source!r}; use lda:name=value,… with names "
                            f"{', '.join(known)}")
        try:
            values[key] = float(raw) if key == "alpha" else int(raw)
        except ValueError:
            raise UserError(f"bad value {raw!r} for {key} in {source!r}") from None
    return LDAParameters(**values).validate()


def describe(params: LDAParameters) -> dict:
    return dict(asdict(params), n_words=params.n_words)


def read_topic_table(path) -> dict:
    """{word: [topics]} from a JSON object whose values are a topic (number or string), a list of
    topics, or null/[] (a word in no bin)."""
    table = read_json(path, "word → topic table")
    if not isinstance(table, dict):
        raise UserError(f"{path} is not a JSON object {{word: topic or [topics]}}")
    normalised = {}
    for word, topics in table.items():
        topics = [] if topics is None else topics if isinstance(topics, list) else [topics]
        if not all(isinstance(t, (int, str)) and not isinstance(t, bool) for t in topics):
            raise UserError(f"{path}: the topic of {word!r} must be a number, a string or a list of them "
                            f"(got {table[word]!r})")
        normalised[word] = topics
    return normalised
