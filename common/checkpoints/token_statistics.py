"""Corpus statistics for the Pythia pipeline (docs/theory.md §6): corpus → token ids → statistics over a token
set K, cached on disk.

  - Documents are tokenised with the checkpoint's tokenizer; those with at least T+1 tokens are kept
    and truncated to T+1 (x = first T tokens, y = the next T).  `n_examples` documents are read.  The
    log says how many were kept and which fraction of all tokens read is the tokenizer's unknown token,
    with a warning above `max_unknown_rate`.
  - K is the `top_tokens` most frequent tokens of the kept sequences (ties by id), or the whole model
    vocabulary (ids 0 … V_full−1) when `top_tokens` is None.  Ids are mapped to indices in K, −1
    outside it; the uniform term of r_t uses V_full, the model's vocabulary (docs/theory.md §6).
  - Only what the comparisons read is kept: Q̄ (attention), (B̄Φ̄)ᵀ (no-MLP and embedding), p̄.
  - A masked LM (BERT, docs/theory.md §16, §17; `objective="masked"`): the documents are tokenised without
    the tokenizer's special tokens ([CLS], [SEP]: never selected by BERT's masking), those with at least T
    tokens are kept and truncated to T (x = y = the clean tokens), and the statistics are §16's masked
    ones in expectation over the corruption (common/theory/masked_statistics.py, variant "residual": BERT has
    the residual and a trained output): π = 0.15, 80/10/10, the MASK token's index in K (−1 when K does
    not hold it), a random word uniform over the model's whole vocabulary (BERT's own rule).  Kept besides:
    Φ̄ₘ (`context`, the explorer's fill-in partners) and each token's count as an input (`input_counts`).
  - The cache key hashes the tokenizer (its serialised form), the corpus (a local file's contents,
    a folder's file names/sizes/times, or the hub/synthetic name) and every setting that changes the
    numbers.  A hit skips reading the corpus altogether, and the log says so.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from common.progress import progress_bar, write

from common.io import UserError, load_tensors, save_tensors
from common.theory.masking import MaskingScheme
from common.theory.statistics import compute_statistics

STATISTICS_FIELDS = ("value_map", "attention_map", "position_map")
MASKED_FIELDS = STATISTICS_FIELDS + ("context",)
OBJECTIVES = ("causal", "masked")
CACHE_VERSION = 2   # 2: the sidecar records the tokens read and the unknown tokens


def _hash_update_path(digest, path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = child.stat()
            digest.update(f"{child.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())


def corpus_fingerprint(dataset: str) -> str:
    """Content hash of a local corpus; the name itself for the hub and the synthetic corpus."""
    path = Path(dataset).expanduser()
    digest = hashlib.sha256()
    if path.exists():
        _hash_update_path(digest, path)
        return f"{path.name}:{digest.hexdigest()[:16]}"
    return dataset


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    serialised = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(serialised.encode()).hexdigest()[:16]


@dataclass
class TokenizedCorpus:
    sequences: torch.Tensor   # [N, T+1] ids of the documents kept
    documents_read: int
    tokens: int               # tokens of every document read
    unknown_tokens: int       # of those, the tokenizer's unknown token (0 for a byte-level tokenizer)

    @property
    def unknown_rate(self) -> float:
        return self.unknown_tokens / self.tokens if self.tokens else 0.0


def tokenize_documents(tokenizer, texts, seq_len: int, batch_size: int = 256,
                       total: Optional[int] = None, objective: str = "causal") -> TokenizedCorpus:
    """The documents with at least T+1 tokens (truncated to T+1; masked: T tokens, without special tokens),
    and how much of the corpus the tokenizer could not represent (its unknown token: a tokenizer trained on
    other text turns unseen words into it)."""
    kept, counts, batch = [], {"read": 0, "tokens": 0, "unknown": 0}, []
    unknown = getattr(tokenizer, "unk_token_id", None)
    length = seq_len if objective == "masked" else seq_len + 1
    options = {"add_special_tokens": False} if objective == "masked" else {}

    def flush():
        for ids in tokenizer(batch, **options)["input_ids"]:
            counts["tokens"] += len(ids)
            if unknown is not None:
                counts["unknown"] += sum(1 for i in ids if i == unknown)
            if len(ids) >= length:
                kept.append(torch.tensor(ids[:length], dtype=torch.long))
        batch.clear()

    for text in progress_bar(texts, desc="tokenising the corpus", total=total, leave=False):
        batch.append(text)
        counts["read"] += 1
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    sequences = torch.stack(kept) if kept else torch.zeros(0, length, dtype=torch.long)
    return TokenizedCorpus(sequences, counts["read"], counts["tokens"], counts["unknown"])


def describe_corpus(metadata: dict, seq_len: int, max_unknown_rate: float, log) -> None:
    """Log the documents kept and the unknown-token rate; a warning line above `max_unknown_rate`."""
    tokens, unknown = metadata.get("tokens_read"), metadata.get("unknown_tokens")
    masked = metadata.get("objective") == "masked"
    log(f"statistics: {metadata['n_documents']} of {metadata['documents_read']} documents kept (at least "
        f"{seq_len + 1 - masked} tokens, {'T' if masked else 'T+1'})" + ("" if tokens is None else
                                      f"; unknown-token rate {unknown / max(tokens, 1):.2%} ({unknown} of {tokens} tokens)"))
    if tokens and unknown / tokens > max_unknown_rate:
        log(f"warning: {unknown / tokens:.1%} of the corpus's tokens are the tokenizer's unknown token (above "
            f"--max_unknown_rate={max_unknown_rate}): the tokenizer was trained on other text, and the statistics "
            f"cannot tell those words apart")


def select_token_set(sequences: torch.Tensor, top_tokens: Optional[int], full_vocab_size: int) -> torch.Tensor:
    """K: the `top_tokens` most frequent ids of `sequences` (ties broken by id), or all ids."""
    if top_tokens is None:
        return torch.arange(full_vocab_size)
    counts = torch.bincount(sequences.reshape(-1), minlength=full_vocab_size)
    return torch.sort(-counts, stable=True).indices[:top_tokens]


def map_to_token_set(sequences: torch.Tensor, token_ids: torch.Tensor, full_vocab_size: int) -> torch.Tensor:
    """Ids replaced by their index in K, −1 for ids outside K."""
    index = torch.full((full_vocab_size,), -1, dtype=torch.long)
    index[token_ids] = torch.arange(len(token_ids))
    return index[sequences]


def statistics_for_sequences(sequences: torch.Tensor, token_ids: torch.Tensor, full_vocab_size: int,
                             device="cpu", dtype=torch.float64, chunk_size: int = 256) -> dict:
    """Q̄, (B̄Φ̄)ᵀ and p̄ over the token set K (only these three are kept: at most three K×K matrices)."""
    mapped = map_to_token_set(sequences, token_ids, full_vocab_size)
    stats = compute_statistics(mapped[:, :-1], mapped[:, 1:], len(token_ids), chunk_size=chunk_size,
                               full_vocab_size=full_vocab_size, device=device, dtype=dtype, progress=True,
                               keep=STATISTICS_FIELDS)
    result = stats.tensors()
    result["token_ids"] = token_ids
    result["n_positions"] = stats.n_positions
    return result


def masked_statistics_for_sequences(sequences: torch.Tensor, token_ids: torch.Tensor, full_vocab_size: int,
                                    mask_token_id: int, chunk_size: int = 256) -> dict:
    """§16's masked statistics over K of clean sequences [N, T], in expectation over BERT's corruption
    (module docstring): Q̄ₘ, (B̄ₘΦ̄ₘ)ᵀ, p̄ₘ, Φ̄ₘ, and each token's count as an input."""
    from common.theory.masked_statistics import expected_masked_statistics

    mapped = map_to_token_set(sequences, token_ids, full_vocab_size)
    mask_index = int(map_to_token_set(torch.tensor([mask_token_id]), token_ids, full_vocab_size))
    scheme = MaskingScheme(mask_id=mask_index, n_words=full_vocab_size).validate()
    stats = expected_masked_statistics(mapped, scheme, len(token_ids), variant="residual",
                                       full_vocab_size=full_vocab_size, chunk_size=chunk_size, progress=True,
                                       keep=MASKED_FIELDS)
    result = {name: stats.tensors()[name] for name in MASKED_FIELDS}
    result["token_ids"] = token_ids
    result["input_counts"] = torch.bincount(mapped[mapped >= 0], minlength=len(token_ids))
    result["input_positions"] = torch.tensor(sequences.numel())   # N·T: the clean positions
    result["n_positions"] = float(stats.n_positions)
    return result


def load_or_compute_statistics(tokenizer, *, dataset: str, n_examples: int, seq_len: int,
                               top_tokens: Optional[int], full_vocab_size: int, cache_dir,
                               device="cpu", dtype=torch.float64, chunk_size: int = 256,
                               max_unknown_rate: float = 0.01, log=write, objective: str = "causal",
                               context: bool = False) -> dict:
    """The statistics of docs/theory.md §6 for this tokenizer, corpus and settings, from the cache when present.
    Returns {value_map, attention_map, position_map, token_ids, n_positions, n_documents} on `device`, and
    `cache_key`: what the numbers depend on (the results record it, so that a rerun may reuse them).
    `objective="masked"`: §16's masked statistics of the tokenizer's own tokenisation (module docstring),
    with `input_counts` and, when `context`, Φ̄ₘ (`context`) besides."""
    if objective not in OBJECTIVES:
        raise UserError(f"objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    masked = objective == "masked"
    mask_token_id = getattr(tokenizer, "mask_token_id", None) if masked else None
    if masked and mask_token_id is None:
        raise UserError("the masked LM's tokenizer has no mask token ([MASK]); the masked statistics need it")
    if top_tokens is not None and not 1 < top_tokens <= full_vocab_size:
        raise UserError(f"--top_tokens={top_tokens} must lie between 2 and the vocabulary size "
                        f"{full_vocab_size}")
    if seq_len < 1 or n_examples < 1:
        raise UserError("--max_seq_len and --n_examples must be positive")
    settings = {"version": CACHE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer),
                "corpus": corpus_fingerprint(dataset), "n_examples": n_examples, "max_seq_len": seq_len,
                "top_tokens": top_tokens, "full_vocab_size": full_vocab_size, "dtype": str(dtype)}
    if masked:   # causal runs keep their keys (and caches)
        masking = MaskingScheme(mask_id=mask_token_id, n_words=full_vocab_size)
        settings.update(objective=objective, mask_token_id=mask_token_id, mask_prob=masking.mask_prob,
                        mask_split=list(masking.split))
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"statistics_{key}.safetensors"
    if path.is_file():
        tensors, metadata = load_tensors(path, "statistics cache")
        log(f"statistics: using the cache {path} (|K| = {len(tensors['token_ids'])})")
        describe_corpus(metadata, seq_len, max_unknown_rate, log)
    else:
        from common.corpus.text import iter_texts, load_text_dataset

        corpus = load_text_dataset(dataset, streaming=True, n_synthetic=n_examples)
        tokenized = tokenize_documents(tokenizer, iter_texts(corpus, n_examples), seq_len, total=n_examples,
                                       objective=objective)
        sequences, read = tokenized.sequences, tokenized.documents_read
        if len(sequences) == 0:
            raise UserError(f"no document among the {read} read from {dataset} has {seq_len + 1 - masked} tokens "
                            f"({'T' if masked else 'T+1'}); lower --max_seq_len or use longer documents")
        if int(sequences.max()) >= full_vocab_size:
            raise UserError(f"the tokenizer produced id {int(sequences.max())} but the checkpoint's vocabulary "
                            f"has {full_vocab_size} rows: tokenizer and checkpoint do not match")
        metadata = dict(settings, dataset=dataset, n_documents=len(sequences), documents_read=read,
                        tokens_read=tokenized.tokens, unknown_tokens=tokenized.unknown_tokens)
        describe_corpus(metadata, seq_len, max_unknown_rate, log)
        log(f"statistics: computing {'the masked statistics (in expectation over the corruption) ' * masked}over "
            f"|K| = {top_tokens or full_vocab_size} tokens (cache: {path})")
        token_ids = select_token_set(sequences, top_tokens, full_vocab_size)
        if masked:
            computed = masked_statistics_for_sequences(sequences, token_ids, full_vocab_size, mask_token_id,
                                                       chunk_size)
            computed.update({name: computed[name].to(dtype) for name in MASKED_FIELDS})
        else:
            computed = statistics_for_sequences(sequences, token_ids, full_vocab_size, device, dtype, chunk_size)
        metadata["n_positions"] = computed.pop("n_positions")
        save_tensors(path, computed, metadata)
        tensors = computed
    result = {k: v.to(device) for k, v in tensors.items() if k != "context" or context}
    result.update(n_positions=metadata["n_positions"], n_documents=metadata["n_documents"], cache_key=key)
    return result
