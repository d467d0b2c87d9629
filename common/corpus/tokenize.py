"""Tokenizers and training sequences of the Tiny Stories pipeline (docs/theory.md §5).

Natural tokenizer: lower-case; a maximal run of alphabetic characters (`str.isalpha`) is one token,
every other character is a token of its own, whitespace tokens are dropped.  Vocabulary: the
`vocab_size` most frequent tokens (ties broken by the token string, so the result does not depend on
how the corpus was split across processes); only stories whose every token is in it are kept (the
release's rule).  With `keep_unknown` every story is kept instead: the vocabulary is the `vocab_size`−1
most frequent tokens plus `<unk>` (the last id; no natural token can be spelt so), and every other token
becomes `<unk>`.  Token ids are ranks (id = position in the frequency order), so a story is kept at
vocabulary size V' exactly when its rarest token has rank < V': one pass gives the stories kept at
every V' (summary.json's `stories_kept_at`).

BPE tokenizer: a `tokenizers` BPE model with the Whitespace pre-tokenizer, special tokens
`<unk> <pad> <s> </s>` and the template `<s> $A </s>`.

Both write one output folder (written under a temporary name, renamed into place when complete):
    stories/                the kept stories, a `datasets` folder with columns `text` and `ids`
    vocabulary.json         {token: id}
    token_frequencies.json  {token: count over the input corpus}
    summary.json            counts, coverage, unknown-token rate, training sequences (below), the
                            vocabulary's SHA-256 (checked by the trainer) and `mask_token`: the name a
                            masked-LM run gives the MASK token it appends to the vocabulary (docs/theory.md
                            §16; `<mask>`, or the first free `<mask_k>` should the vocabulary hold it).  The
                            vocabulary itself never holds it, so causal runs are unchanged.
    tokenizer.json          (BPE only) the trained `tokenizers` model
    topics.json             (--data=lda only) the LDA corpus's word → topics table (common/corpus/lda.py)
Sequences (docs/theory.md §5): stories with at least T+1 tokens, truncated to T+1; x = first T, y = last T
(the release's rule), or with `windows` every consecutive window of T+1 tokens.  A story of L tokens
gives [L ≥ T+1] sequences, or ⌊L/(T+1)⌋ windows; `sequence_counts` counts them from the story lengths
alone, and summary.json lists them (with the share of the input tokens they use) for several T.
Large corpora are processed with `datasets.map(num_proc=...)`, never a Python loop over stories.
"""
import hashlib
import json
import os
import re
from itertools import groupby
from pathlib import Path

import numpy as np
import torch

from common.config import Settings
from common.io import UserError, atomic_directory, read_json, write_json

NATURAL_PATTERN = re.compile(r"[^\W\d_]+|\S")   # letter runs, or any other single non-space char
BPE_SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>"]
STORIES_FOLDER = "stories"


# -- natural tokenizer -------------------------------------------------------------------------
def natural_tokens(text: str) -> list:
    """docs/theory.md §5 natural tokens of `text`. The regex is a fast superset of `str.isalpha` runs (it also
    joins characters like '²' or '½' that are alphanumeric but neither alphabetic nor decimal); the
    rare run that is not all-alphabetic is split again exactly by `str.isalpha`."""
    tokens = []
    for token in NATURAL_PATTERN.findall(text.lower()):
        if len(token) == 1 or token.isalpha():
            tokens.append(token)
        else:
            for alpha, run in groupby(token, str.isalpha):
                tokens.extend(["".join(run)] if alpha else run)
    return tokens


def _count_batch(batch):
    counts = {}
    for text in batch["text"]:
        for token in natural_tokens(text):
            counts[token] = counts.get(token, 0) + 1
    return {"token": list(counts), "count": list(counts.values())}


def count_natural_tokens(dataset, num_proc: int = 1) -> dict:
    """{token: count} over the `text` column, counted in parallel batches and merged."""
    partial = dataset.map(_count_batch, batched=True, batch_size=10_000, num_proc=num_proc,
                          remove_columns=dataset.column_names, desc="counting tokens")
    frame = partial.to_pandas()
    if frame.empty:
        return {}
    totals = frame.groupby("token", sort=False)["count"].sum()
    return {token: int(count) for token, count in totals.items()}


def top_vocabulary(counts: dict, vocab_size: int) -> list:
    """The `vocab_size` most frequent tokens, by decreasing count then token string (id = rank)."""
    return [token for token, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:vocab_size]]


UNKNOWN_TOKEN = "<unk>"   # the natural tokenizer's unknown token with keep_unknown (BPE's has the same spelling)


def _encode_natural_batch(batch, token_to_rank, limit, keep_unknown):
    """Ids of every non-empty story (ranks, with every rank ≥ `limit` written as `limit`: the unknown
    id; a token missing from `token_to_rank` ranks `limit`) and its `rarest` rank; without
    `keep_unknown` only the stories whose rarest rank is below `limit`."""
    texts, ids, rarest = [], [], []
    for text in batch["text"]:
        ranks = [token_to_rank.get(token, limit) for token in natural_tokens(text)]
        if not ranks:
            continue
        top = max(ranks)
        if top >= limit and not keep_unknown:
            continue
        texts.append(text)
        ids.append(ranks if top < limit else [min(r, limit) for r in ranks])
        rarest.append(top)
    return {"text": texts, "ids": ids, "rarest": rarest}


def _encode_natural(dataset, ranking: list, limit: int, keep_unknown: bool, num_proc: int):
    import datasets
    features = datasets.Features({"text": datasets.Value("string"),
                                  "ids": datasets.Sequence(datasets.Value("int32")),
                                  "rarest": datasets.Value("int64")})
    return dataset.map(_encode_natural_batch, batched=True, batch_size=2000, num_proc=num_proc,
                       fn_kwargs={"token_to_rank": {token: i for i, token in enumerate(ranking)},
                                  "limit": limit, "keep_unknown": keep_unknown},
                       remove_columns=dataset.column_names, features=features,
                       desc="encoding stories")


def keep_in_vocabulary(dataset, vocabulary: list, num_proc: int = 1):
    """The stories of `dataset` whose every natural token is in `vocabulary` (any token list: ids are
    positions in it), with their `ids`; with `<unk>` in it, every story, other tokens becoming `<unk>`."""
    keep_unknown = UNKNOWN_TOKEN in vocabulary
    if keep_unknown and vocabulary[-1] != UNKNOWN_TOKEN:
        raise UserError(f"{UNKNOWN_TOKEN} must be the last token of the vocabulary")
    known = list(vocabulary[:-1]) if keep_unknown else list(vocabulary)
    return _encode_natural(dataset, known, len(known), keep_unknown, num_proc).remove_columns("rarest")


def tokenize_natural(dataset, vocab_size: int = 3000, num_proc: int = 1, keep_unknown: bool = False,
                     seq_len: int = 200):
    """(kept stories with `ids`, vocabulary list, token counts, summary dict) — docs/theory.md §5.
    `keep_unknown`: keep every story, the tokens outside the `vocab_size`−1 most frequent becoming
    `<unk>` (module docstring); the summary's `sequences` table counts the training sequences at
    `seq_len` and at other lengths and vocabulary sizes (sequence_table)."""
    counts = count_natural_tokens(dataset, num_proc)
    if not counts:
        raise UserError("the corpus is empty (no tokens in any story)")
    if keep_unknown and vocab_size < 2:
        raise UserError(f"--vocab_size must be at least 2 with --keep_unknown=True (got {vocab_size})")
    ranking = top_vocabulary(counts, len(counts))
    limit = min(vocab_size - 1 if keep_unknown else vocab_size, len(ranking))
    vocabulary = ranking[:limit] + ([UNKNOWN_TOKEN] if keep_unknown else [])
    # every non-empty story, encoded once: its rarest rank says at which vocabulary sizes it is kept
    encoded = _encode_natural(dataset, ranking, limit, True, num_proc)
    rarest = np.asarray(encoded["rarest"], dtype=np.int64)
    every_length = story_lengths(encoded)
    kept = encoded.remove_columns("rarest")
    if not keep_unknown:
        kept = kept.select(np.flatnonzero(rarest < limit))
    if len(kept) == 0:
        raise UserError(f"no story has all its tokens in the {len(vocabulary)}-token vocabulary; "
                        f"raise --vocab_size, use more stories, or keep them with --keep_unknown=True")
    lengths = story_lengths(kept)
    total = sum(counts.values())
    frequencies = {token: counts[token] for token in vocabulary[:limit]}
    in_vocabulary = sum(frequencies.values())
    # every token of a kept story is known under the drop rule; with keep_unknown every story is kept
    unknown = total - in_vocabulary if keep_unknown else 0
    if keep_unknown:
        frequencies[UNKNOWN_TOKEN] = unknown
    summary = {"tokenizer": "natural", "stories_in": len(dataset), "stories_kept": len(kept),
               "tokens_in": total, "distinct_tokens_in": len(counts), "vocab_size": len(vocabulary),
               "token_coverage": in_vocabulary / total,
               "unknown_token": UNKNOWN_TOKEN if keep_unknown else None,
               "unknown_rate": unknown / total,
               "seq_len": seq_len,
               "sequences": sequence_table(lengths, total, seq_len, len(vocabulary), (every_length, rarest), counts,
                                           keep_unknown)}
    return kept, vocabulary, frequencies, summary


# -- training sequences --------------------------------------------------------------------------
SEQ_LENS = (16, 32, 64, 128, 256, 512)   # lengths the summary counts sequences for, beside the chosen one


def story_lengths(stories) -> np.ndarray:
    """int64 [stories]: the number of tokens of every story of a dataset with an `ids` column."""
    parts = [np.diff(offsets) for offsets, _ in id_chunks(stories)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def sequence_counts(stories, seq_lens, windows: bool = False) -> dict:
    """{T: number of training sequences of T+1 tokens} that `story_sequences` makes, for each T of
    `seq_lens` (one int or several): a story of L tokens gives [L ≥ T+1] sequences (its first T+1
    tokens, the release's rule), or with `windows` ⌊L / (T+1)⌋.  `stories`: a dataset with an `ids`
    column, or the story lengths themselves (any integer array)."""
    lengths = story_lengths(stories) if hasattr(stories, "column_names") else np.asarray(stories, np.int64)
    counts = {}
    for T in ([seq_lens] if np.ndim(seq_lens) == 0 else seq_lens):
        T = int(T)
        if T < 1:
            raise UserError(f"--seq_len must be at least 1 (got {T})")
        counts[T] = int((lengths // (T + 1)).sum() if windows else np.count_nonzero(lengths >= T + 1))
    return counts


def _sequence_row(lengths, tokens_in: int, seq_len: int, **fields) -> dict:
    first, windows = sequence_counts(lengths, seq_len)[seq_len], sequence_counts(lengths, seq_len, True)[seq_len]
    return dict(fields, seq_len=seq_len, stories=len(lengths), first=first, windows=windows,
                first_share=first * (seq_len + 1) / tokens_in, windows_share=windows * (seq_len + 1) / tokens_in)


def sequence_table(lengths, tokens_in: int, seq_len: int, vocab_size: int, every_story=None, counts=None,
                   keep_unknown: bool = False) -> list:
    """The summary's `sequences` rows: for the kept stories' `lengths`, at `seq_len` and at SEQ_LENS.
    With `every_story` = (length, rarest token rank) of every non-empty input story and `counts` (the
    natural tokens'), also at `seq_len` for half, twice and four times `vocab_size` (other_vocabulary):
    under the drop rule a story is kept at size V' when its rarest rank is below V', with `keep_unknown`
    every story is; `coverage` is the share of the input tokens known at V'.  Each row: vocab_size,
    seq_len, stories (kept), first and windows (sequence_counts) and the shares of the input tokens
    they use, n·(T+1) / tokens_in."""
    lengths = np.asarray(lengths, np.int64)
    rows = [_sequence_row(lengths, tokens_in, T, vocab_size=vocab_size)
            for T in sorted(set(SEQ_LENS) | {seq_len})]
    if every_story is None or counts is None:
        return rows
    every_length, rarest = every_story
    ordered = np.sort(np.fromiter(counts.values(), np.int64, len(counts)))[::-1]
    known = np.concatenate([[0], np.cumsum(ordered)])   # known[k]: tokens among the k most frequent
    seen = set()
    for size in [vocab_size] + sorted({vocab_size // 2, 2 * vocab_size, 4 * vocab_size} - {vocab_size}):
        n_known = min(size - keep_unknown, len(counts))
        if n_known < 1 or n_known in seen:     # a larger size past the corpus's distinct tokens adds nothing
            continue
        seen.add(n_known)
        if size == vocab_size:
            continue
        chosen = every_length if keep_unknown else every_length[rarest < n_known]
        rows.append(_sequence_row(chosen, tokens_in, seq_len, vocab_size=size,
                                  coverage=int(known[n_known]) / tokens_in, other_vocabulary=True))
    return rows


def sequences_at_other_vocab_sizes(summary: dict, seq_len: int, windows: bool = False) -> dict:
    """{V': training sequences at `seq_len`} for the other vocabulary sizes a natural tokenizer's
    summary.json counted (empty when it has none for that length): the count a re-run of the tokenizer
    with --vocab_size=V' would give."""
    key = "windows" if windows else "first"
    return {row["vocab_size"]: row[key] for row in summary.get("sequences", [])
            if row.get("other_vocabulary") and row["seq_len"] == seq_len}


# -- BPE tokenizer -----------------------------------------------------------------------------
END_OF_TEXT = "<|endoftext|>"


def causal_lm_tokenizer(texts, vocab_size: int):
    """A transformers tokenizer (BPE, `<|endoftext|>` as end of text, `<unk>`) trained on `texts`: the
    tokenizer saved with the small causal-LM checkpoints of train_neox_checkpoints.py."""
    from transformers import PreTrainedTokenizerFast

    bpe = bpe_tokenizer(texts, vocab_size, [END_OF_TEXT, "<unk>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=END_OF_TEXT, unk_token="<unk>")


def bpe_tokenizer(texts, vocab_size: int, special_tokens: list, min_frequency: int = 0, length=None):
    """A `tokenizers` BPE model (unknown token `<unk>`) with the Whitespace pre-tokenizer, trained on
    an iterable of texts or of batches of texts; `length` (optional) is only for progress."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=special_tokens, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    return tokenizer


def train_bpe(dataset, vocab_size: int = 10000, min_frequency: int = 2, batch_size: int = 1000):
    """The docs/theory.md §5 BPE tokenizer trained on the `text` column, with the template `<s> $A </s>`."""
    from tokenizers import processors
    batches = (dataset[i:i + batch_size]["text"] for i in range(0, len(dataset), batch_size))
    tokenizer = bpe_tokenizer(batches, vocab_size, BPE_SPECIAL_TOKENS, min_frequency, len(dataset))
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    return tokenizer


def _encode_bpe_batch(batch, tokenizer_json):
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_str(tokenizer_json)
    return {"text": batch["text"], "ids": [e.ids for e in tokenizer.encode_batch(batch["text"])]}


def tokenize_bpe(dataset, vocab_size: int = 10000, num_proc: int = 1, seq_len: int = 200):
    """(stories with `ids`, vocabulary list, token counts, summary dict, tokenizer); the summary's
    `sequences` table counts the training sequences at `seq_len` and at other lengths (sequence_table)."""
    import datasets
    if len(dataset) == 0:
        raise UserError("the corpus is empty (no stories)")
    if num_proc > 1:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")   # forked workers
    tokenizer = train_bpe(dataset, vocab_size)
    vocab = tokenizer.get_vocab()
    vocabulary = sorted(vocab, key=vocab.get)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "ids": datasets.Sequence(datasets.Value("int32"))})
    encoded = dataset.map(_encode_bpe_batch, batched=True, batch_size=1000, num_proc=num_proc,
                          fn_kwargs={"tokenizer_json": tokenizer.to_str()},
                          remove_columns=dataset.column_names, features=features, desc="encoding")
    counts = np.zeros(len(vocabulary), dtype=np.int64)
    for ids in flat_chunks(encoded):
        counts += np.bincount(ids, minlength=len(vocabulary))
    total = int(counts.sum())
    if total == 0:
        raise UserError("the corpus is empty (no tokens in any story)")
    unk = tokenizer.token_to_id(UNKNOWN_TOKEN)
    summary = {"tokenizer": "bpe", "stories_in": len(dataset), "stories_kept": len(encoded),
               "tokens_in": total, "vocab_size": len(vocabulary),
               "token_coverage": 1.0 - int(counts[unk]) / total,
               "unknown_token": UNKNOWN_TOKEN, "unknown_rate": int(counts[unk]) / total, "seq_len": seq_len,
               "sequences": sequence_table(story_lengths(encoded), total, seq_len, len(vocabulary))}
    return encoded, vocabulary, dict(zip(vocabulary, counts.tolist())), summary, tokenizer


# -- output folder -----------------------------------------------------------------------------
def vocabulary_fingerprint(vocabulary: list) -> str:
    return hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")).hexdigest()


MASK_TOKEN = "<mask>"   # the MASK token's name (no natural token holds '<'; BPE's pre-tokenizer splits it too)


def free_mask_token(vocabulary) -> str:
    """MASK_TOKEN, or the first of `<mask_1>`, `<mask_2>`, … that is not a token of `vocabulary`."""
    taken, name, k = set(vocabulary), MASK_TOKEN, 0
    while name in taken:
        k += 1
        name = f"{MASK_TOKEN[:-1]}_{k}>"
    return name


def mask_token(data_dir, vocabulary: list) -> str:
    """The MASK token name a data folder records (summary.json's `mask_token`); a folder written before
    the record existed gets the name `free_mask_token` would have recorded."""
    summary = read_json(Path(data_dir) / "summary.json", "tokenizer summary")
    name = summary.get("mask_token") or free_mask_token(vocabulary)
    if name in set(vocabulary):
        raise UserError(f"the mask token {name!r} recorded in {Path(data_dir) / 'summary.json'} is a token of "
                        f"the vocabulary; re-run the tokenizer into that folder")
    return name


def write_token_folder(out_dir, stories, vocabulary: list, frequencies: dict, summary: dict,
                       tokenizer=None, extra_files=None) -> dict:
    """Write the output folder atomically (see module docstring); returns the summary written.
    `extra_files`: {name: JSON data} written beside (e.g. an LDA corpus's topics.json)."""
    summary = dict(summary, vocabulary_sha256=vocabulary_fingerprint(vocabulary),
                   mask_token=free_mask_token(vocabulary))
    with atomic_directory(out_dir) as tmp:
        stories.save_to_disk(str(tmp / STORIES_FOLDER))
        write_json(tmp / "vocabulary.json", {token: i for i, token in enumerate(vocabulary)})
        write_json(tmp / "token_frequencies.json", frequencies)
        write_json(tmp / "summary.json", summary)
        if tokenizer is not None:
            tokenizer.save(str(tmp / "tokenizer.json"))
        for name, data in (extra_files or {}).items():
            write_json(tmp / name, data)
    return summary


def summary_lines(summary: dict, out_dir) -> list:
    """The tokenizer's summary as the scripts print it: stories kept, vocabulary, tokens, unknown-token
    rate, and the training sequences at several T (and, for the natural tokenizer, vocabulary sizes)."""
    V = summary["vocab_size"]
    lines = [f"{summary['tokenizer']} tokenizer → {out_dir}",
             f"  stories kept   {summary['stories_kept']:,} of {summary['stories_in']:,}",
             f"  vocabulary     {V:,} tokens",
             f"  tokens         {summary['tokens_in']:,} in the input, "
             f"{100 * summary['token_coverage']:.2f}% covered by the vocabulary"]
    if summary.get("unknown_token"):
        lines.append(f"  unknown token  {summary['unknown_token']} is {100 * summary['unknown_rate']:.2f}% of the "
                     f"kept stories' tokens")
    rows = summary.get("sequences", [])
    if not rows:
        return lines
    T0 = summary.get("seq_len")
    lines += ["  training sequences of T+1 tokens (share of the input tokens they use); * the --seq_len asked for",
              "        T   first T+1 of each story     every window (--windows=True)"]
    longer = [row["seq_len"] for row in rows if not row.get("other_vocabulary") and not row["windows"]]
    for row in rows:
        if not row.get("other_vocabulary") and (row["windows"] or row["seq_len"] == T0):
            lines.append(f"  {row['seq_len']:>6}{'*' if row['seq_len'] == T0 else ' '} {row['first']:>12,} "
                         f"({100 * row['first_share']:5.1f}%)   {row['windows']:>12,} ({100 * row['windows_share']:5.1f}%)")
    if longer:
        lines.append(f"  no sequence at T = {', '.join(map(str, longer))}: every story is shorter than T+1 tokens")
    others = [row for row in rows if row.get("other_vocabulary")]
    if others:
        rule = ("every story kept, the rarer tokens as " + summary["unknown_token"] if summary.get("unknown_token")
                else "a story kept when all its tokens are in the vocabulary")
        lines += [f"  at T = {T0} with another --vocab_size (re-run the tokenizer; {rule}):",
                  "    vocab_size  stories kept  tokens covered   first T+1     windows"]
        for row in sorted(others + [dict(next(r for r in rows if r['seq_len'] == T0 and not r.get('other_vocabulary')),
                                         coverage=summary["token_coverage"], current=True)],
                          key=lambda r: r["vocab_size"]):
            lines.append(f"    {row['vocab_size']:>10,}{'*' if row.get('current') else ' '} {row['stories']:>12,} "
                         f"{100 * row['coverage']:>13.2f}%  {row['first']:>10,}  {row['windows']:>10,}")
    return lines


def load_vocabulary(data_dir) -> list:
    """The id-ordered token list of a tokenizer output folder, checked against its summary."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}; run tiny_tokenize_natural.py or "
                        f"tiny_tokenize_bpe.py first, or pass --data_dir")
    mapping = read_json(data_dir / "vocabulary.json", "vocabulary")
    summary = read_json(data_dir / "summary.json", "tokenizer summary")
    if not isinstance(mapping, dict) or sorted(mapping.values()) != list(range(len(mapping))):
        raise UserError(f"{data_dir / 'vocabulary.json'} is not a {{token: id}} map with ids 0..V−1")
    vocabulary = sorted(mapping, key=mapping.get)
    if vocabulary_fingerprint(vocabulary) != summary.get("vocabulary_sha256"):
        raise UserError(f"{data_dir / 'vocabulary.json'} does not match the tokenized stories in "
                        f"{data_dir} (different SHA-256); re-run the tokenizer into that folder")
    return vocabulary


def id_chunks(stories, rows: int = 100_000):
    """The `ids` column of `stories` as (offsets, values) numpy arrays, one pair per chunk of rows:
    story i of a chunk is values[offsets[i]:offsets[i + 1]]."""
    ids = stories.select_columns(["ids"]).with_format("arrow")
    for start in range(0, len(stories), rows):
        column = ids[start:start + rows]["ids"].combine_chunks()
        yield column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False)


def flat_chunks(stories, rows: int = 100_000):
    """The `ids` of `stories`, concatenated, one numpy array per chunk of rows."""
    for offsets, values in id_chunks(stories, rows):
        yield values[offsets[0]:offsets[-1]]


def story_sequences(stories, seq_len: int, vocab_size: int, max_sequences: int = 0,
                    rows: int = 100_000, windows: bool = False) -> torch.Tensor:
    """int32 [N, T+1]: every story with at least T+1 tokens, truncated to T+1 (docs/theory.md §5, the
    release's rule).  `windows=True` cuts every story instead into consecutive, non-overlapping
    windows of T+1 tokens (a story of L tokens gives L // (T+1) sequences), so a corpus of long
    documents is used whole.  `max_sequences` > 0 keeps only the first ones (for quick runs)."""
    if seq_len < 1:
        raise UserError(f"--seq_len must be at least 1 (got {seq_len})")
    parts, longest = [], 0
    for offsets, values in id_chunks(stories, rows):
        lengths = np.diff(offsets)
        if len(lengths):
            longest = max(longest, int(lengths.max()))
        per_story = lengths // (seq_len + 1) if windows else (lengths >= seq_len + 1).astype(np.int64)
        # start of every sequence: the story's offset plus a multiple of T+1
        starts = np.repeat(offsets[:-1], per_story) + (seq_len + 1) * (
            np.arange(per_story.sum()) - np.repeat(np.cumsum(per_story) - per_story, per_story))
        parts.append(values[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32))
        if max_sequences and sum(len(p) for p in parts) >= max_sequences:
            break
    tokens = torch.from_numpy(np.concatenate(parts) if parts else np.zeros((0, seq_len + 1), np.int32))
    if max_sequences:
        tokens = tokens[:max_sequences]
    if len(tokens) == 0:
        raise UserError(f"--seq_len={seq_len} is longer than every story (the longest has {longest} "
                        f"tokens, {seq_len + 1} are needed); lower --seq_len")
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size:
        raise UserError(f"the stories hold token ids outside the {vocab_size}-token vocabulary; "
                        f"the vocabulary does not match the data — re-run the tokenizer")
    return tokens.contiguous()


def load_stories(data_dir):
    """(stories dataset, vocabulary list) of a tokenizer output folder."""
    import datasets

    from common.progress import quiet_library_bars
    quiet_library_bars()
    vocabulary = load_vocabulary(data_dir)
    try:
        stories = datasets.load_from_disk(str(Path(data_dir) / STORIES_FOLDER))
    except FileNotFoundError:
        raise UserError(f"{Path(data_dir) / STORIES_FOLDER} is missing or not a saved dataset; "
                        f"re-run the tokenizer") from None
    if "ids" not in stories.column_names:
        raise UserError(f"{Path(data_dir) / STORIES_FOLDER} has no 'ids' column; re-run the tokenizer")
    return stories, vocabulary


def default_num_proc(n_stories: int) -> int:
    """Worker processes for datasets.map: one for small corpora, up to 8 for large ones."""
    return 1 if n_stories < 50_000 else max(1, min(8, os.cpu_count() or 1))


class TokenizerConfig(Settings, script="tiny_tokenize_natural.py"):
    """tiny_tokenize_natural.py's settings (the BPE script inherits them and changes vocab_size and out_dir):
    that block's names, types and defaults (common/config.py `Settings`; the block is the one home of each
    comment)."""


def run_tokenizer(kind: str, config: TokenizerConfig) -> dict:
    """The body of tiny_tokenize_{natural,bpe}.py: load `data`, tokenize, write `out_dir`; returns the
    summary (summary_lines says it for the script)."""
    from common.corpus.text import generated_files, load_text_dataset
    dataset = load_text_dataset(config.data, config.split, config.text_field, n_synthetic=config.n_stories,
                                seed=config.seed)
    if config.max_stories:
        dataset = dataset.select(range(min(config.max_stories, len(dataset))))
    num_proc = config.num_proc or default_num_proc(len(dataset))
    if kind == "bpe" and config.keep_unknown:
        raise UserError("--keep_unknown is for the natural tokenizer: BPE keeps every story, with its own <unk>")
    if kind == "natural":
        stories, vocabulary, frequencies, summary = tokenize_natural(
            dataset, config.vocab_size, num_proc, config.keep_unknown, config.seq_len)
        tokenizer = None
    else:
        stories, vocabulary, frequencies, summary, tokenizer = tokenize_bpe(
            dataset, config.vocab_size, num_proc, config.seq_len)
    return write_token_folder(config.out_dir, stories, vocabulary, frequencies, summary, tokenizer,
                              generated_files(config.data))
