"""What a corpus and a checkpoint associate with each token of the token set K, token by token
(docs/theory.md §6): the rows the association explorer shows and the agreement measure compares.

Corpus side.  The next-token statistic over K,
    B̄[a,b] = (C[a,b] − d_a/V)/n,
C the (input, target) pair counts over K, d_a the positions whose input is a (whatever their target),
V the model's vocabulary, n every position — the B̄ of common/theory/statistics.py in its token-set
mode.  It is kept as sorted sparse pair counts (`NextTokenCounts`): at |K| = 50k a dense B̄ is 20 GB,
and nnz(C) ≤ n.  Any block of rows is materialised on demand.  Q̄ comes from the comparison's own
statistics cache (common/checkpoints/token_statistics.py).

Model side, each token a alone at position 0:
  - its next-token distribution p(b | a) = softmax(logits)[b], the softmax over the whole vocabulary,
    read at the tokens b of K;
  - its single-token attention scores as a query, from the same factors as the attention similarity
    (common/checkpoints/comparison.py): the per-token query and key vectors of docs/theory.md §12's
    general rule (common/checkpoints/architectures.py, `query_key_vectors`), key heads expanded,
        head h:        S_h[a,b] = q_h(a) · k_h(b)
        head average:  S̄ = mean_h S_h = [q_1 … q_H]/H · [k_1 … k_H]ᵀ
    (by default without biases: the release's bilinear form H̃ W_Q^h W_K^hᵀ H̃ᵀ), query rows and key columns as Q̄.
A |K| × |K| model matrix is never held: `RowsOnDemand` computes a block of rows at a time from its
factors (or from a forward pass), and reads like a tensor for common/page.py's partner tables.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from common.checkpoints.architectures import architecture_for
from common.checkpoints.comparison import compute_dtype
from common.checkpoints.token_statistics import (corpus_fingerprint, map_to_token_set, tokenize_documents,
                                                 tokenizer_fingerprint)
from common.io import UserError, load_tensors, save_tensors

COUNTS_VERSION = 1


class RowsOnDemand:
    """A token × token matrix given by a function computing any block of its rows ([len(rows), columns],
    on `device`).  It answers `detach()`, `[rows]`, `shape` and `device` like a tensor, which is all
    common.page.partner_table reads."""

    def __init__(self, compute, shape, device="cpu"):
        self.compute, self.shape, self.device = compute, tuple(shape), torch.device(device)

    def detach(self):
        return self

    def __getitem__(self, rows) -> torch.Tensor:
        return self.compute(torch.as_tensor(rows, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# the corpus's next tokens over K
@dataclass
class NextTokenCounts:
    """The (input, target) pair counts over K, sorted by key a·|K| + b, and every position's input counts."""
    token_ids: torch.Tensor      # K: the ids, in the model's vocabulary, of the token set
    keys: torch.Tensor           # a·|K| + b of each pair seen, ascending (int64)
    pair_counts: torch.Tensor    # C[a,b] of each key (int64)
    input_counts: torch.Tensor   # d_a, [|K|] (int64)
    n_positions: int             # n
    full_vocab_size: int         # V

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def input_frequency(self) -> torch.Tensor:
        """P̂(x = a) = d_a / n (float64): the divisor of the normalised view."""
        return self.input_counts.double() / self.n_positions

    def _value(self, counts: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """B̄ from a pair count and the input count of its row (one formula for every read, so that equal
        counts give bit-equal values)."""
        return (counts.double() - self.input_counts[inputs].double() / self.full_vocab_size) / self.n_positions

    def bigram_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """B̄[rows] as a dense float64 block [len(rows), |K|] on the CPU."""
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        K = self.n_tokens
        start = torch.searchsorted(self.keys, rows * K)
        stop = torch.searchsorted(self.keys, (rows + 1) * K)
        lengths = stop - start
        which = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        first = torch.repeat_interleave(start - (torch.cumsum(lengths, 0) - lengths), lengths)
        entries = torch.arange(int(lengths.sum())) + first
        block = torch.zeros(len(rows), K, dtype=torch.long)
        block[which, self.keys[entries] % K] = self.pair_counts[entries]
        return self._value(block, rows[:, None])

    def bigram_at(self, rows: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
        """B̄[rows[i], partners[i, j]] ([len(rows), j], float64, CPU) without a dense row."""
        rows, partners = torch.as_tensor(rows).cpu(), torch.as_tensor(partners).cpu()
        wanted = rows[:, None] * self.n_tokens + partners
        counts = torch.zeros_like(wanted)
        if len(self.keys):
            where = torch.searchsorted(self.keys, wanted).clamp(max=len(self.keys) - 1)
            counts = torch.where(self.keys[where] == wanted, self.pair_counts[where], counts)
        return self._value(counts, rows[:, None])

    @property
    def bigram(self) -> RowsOnDemand:
        return RowsOnDemand(self.bigram_rows, (self.n_tokens, self.n_tokens))


def count_next_tokens(sequences: torch.Tensor, token_ids: torch.Tensor, full_vocab_size: int) -> NextTokenCounts:
    """The counts of [N, T+1] sequences (x = first T, y = next T) over the token set `token_ids`."""
    mapped = map_to_token_set(sequences.cpu(), token_ids.cpu(), full_vocab_size)
    x, y = mapped[:, :-1].reshape(-1), mapped[:, 1:].reshape(-1)
    K = len(token_ids)
    inside = (x >= 0) & (y >= 0)
    keys, pair_counts = torch.unique(x[inside] * K + y[inside], sorted=True, return_counts=True)
    input_counts = torch.bincount(x[x >= 0], minlength=K)
    return NextTokenCounts(token_ids.cpu(), keys, pair_counts, input_counts, x.numel(), full_vocab_size)


def next_token_counts(tokenizer, *, dataset: str, n_examples: int, seq_len: int, token_ids: torch.Tensor,
                      full_vocab_size: int, cache_dir, log=print) -> NextTokenCounts:
    """The counts of the comparison's corpus over its token set, cached in `cache_dir` beside its statistics
    (the key: tokenizer, corpus, settings and the token set itself)."""
    settings = {"what": "next_token_counts", "version": COUNTS_VERSION,
                "tokenizer": tokenizer_fingerprint(tokenizer), "corpus": corpus_fingerprint(dataset),
                "n_examples": n_examples, "max_seq_len": seq_len, "full_vocab_size": full_vocab_size,
                "token_set": hashlib.sha256(token_ids.cpu().long().numpy().tobytes()).hexdigest()[:16]}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"next_token_counts_{key}.safetensors"
    if path.is_file():
        tensors, metadata = load_tensors(path, "next-token counts cache")
        log(f"next-token counts: using the cache {path}")
        return NextTokenCounts(tensors["token_ids"], tensors["keys"], tensors["pair_counts"],
                               tensors["input_counts"], metadata["n_positions"], full_vocab_size)
    from common.corpus.text import iter_texts, load_text_dataset

    corpus = load_text_dataset(dataset, streaming=True, n_synthetic=n_examples)
    sequences = tokenize_documents(tokenizer, iter_texts(corpus, n_examples), seq_len, total=n_examples).sequences
    if len(sequences) == 0:
        raise UserError(f"no document of {dataset} has {seq_len + 1} tokens (T+1): it is not the corpus the "
                        f"comparison's statistics were computed from")
    counts = count_next_tokens(sequences, token_ids, full_vocab_size)
    save_tensors(path, {"token_ids": counts.token_ids, "keys": counts.keys, "pair_counts": counts.pair_counts,
                        "input_counts": counts.input_counts}, dict(settings, n_positions=counts.n_positions))
    log(f"next-token counts: {len(counts.keys)} pairs over |K| = {counts.n_tokens} (cache: {path})")
    return counts


# ---------------------------------------------------------------------------------------------
# the model, token by token
def next_token_distribution(model, token_ids: torch.Tensor) -> RowsOnDemand:
    """p(b | a alone at position 0) for a (rows) and b (columns) in K: the softmax over the whole
    vocabulary (float64), read at K's ids."""
    device = next(model.parameters()).device
    columns = token_ids.to(device)

    @torch.no_grad()
    def rows(block):
        ids = columns[block.to(device)].view(-1, 1)
        logits = model(input_ids=ids, use_cache=False).logits[:, 0]
        return logits.double().softmax(dim=-1)[:, columns]

    return RowsOnDemand(rows, (len(token_ids), len(token_ids)), device)


def _scores(query: torch.Tensor, key: torch.Tensor) -> RowsOnDemand:
    return RowsOnDemand(lambda rows: query[rows.to(query.device)] @ key.T, (len(query), len(key)), query.device)


@dataclass
class LayerAttention:
    """One layer's single-token attention scores: the head average and, when asked for, each head."""
    layer: int
    mean: RowsOnDemand
    heads: list          # [RowsOnDemand per head], empty when not asked for


@torch.no_grad()
def single_token_attention(model, representations, layer: int, with_heads: bool = False,
                           biases: bool = False) -> LayerAttention:
    """The scores of layer `layer` (module docstring) from `representations`
    (common.checkpoints.loading.single_token_representations of the token set): the per-token query and
    key vectors the attention similarity uses (the family adapter's `query_key_vectors`, `biases` as the
    comparison's --attention_bias), on the model's device in the comparison's precision."""
    device = next(model.parameters()).device
    vectors = architecture_for(model.config).query_key_vectors(
        model, layer, representations.pre(layer).to(device), dtype=compute_dtype(device), biases=biases)
    heads = [_scores(*vectors.head(h)) for h in range(vectors.n_heads)] if with_heads else []
    return LayerAttention(layer, _scores(*vectors.mean()), heads)


# ---------------------------------------------------------------------------------------------
# masked LMs (BERT, docs/theory.md §17): a MASK beside the token, and the statistic it should be filled from
@dataclass
class FillInPartners:
    """The corpus side of a masked LM's fill-in rows: Φ̄ₘᵀ over K (row a = the words b whose masked position
    has a in its context, minus the uniform guess: Φ̄ₘ[b, a], §16 in expectation over the corruption), with
    each token's count as an input.  It answers what the explorer and the agreement read of NextTokenCounts."""
    token_ids: torch.Tensor      # K
    fill_in: torch.Tensor        # Φ̄ₘᵀ [|K|, |K|] (rows: the token a beside the MASK; columns: the word b filling it)
    input_counts: torch.Tensor   # clean occurrences of each token of K
    n_positions: int             # clean positions N·T
    full_vocab_size: int

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def input_frequency(self) -> torch.Tensor:
        return self.input_counts.double().cpu() / self.n_positions

    @property
    def bigram(self) -> torch.Tensor:   # the name the explorer's statistic cards read
        return self.fill_in

    def bigram_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return self.fill_in[torch.as_tensor(rows, dtype=torch.long).to(self.fill_in.device)].double().cpu()

    def bigram_at(self, rows: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
        rows, partners = (torch.as_tensor(t).to(self.fill_in.device) for t in (rows, partners))
        return self.fill_in[rows[:, None], partners].double().cpu()


def fill_in_inputs(tokenizer, token_ids: torch.Tensor) -> tuple:
    """([n, length] input ids, the MASK's position): each token a of K followed by a MASK, inside the
    tokenizer's [CLS] … [SEP] when it has them (every sequence BERT saw in pretraining had that form; a
    sequence without [CLS] at position 0 is one it never saw), else [a, MASK]."""
    mask = getattr(tokenizer, "mask_token_id", None)
    if mask is None:
        raise UserError("the masked LM's tokenizer has no mask token ([MASK])")
    cls, sep = getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "sep_token_id", None)
    columns = [token_ids.view(-1, 1).long(), torch.full((len(token_ids), 1), mask)]
    if cls is not None and sep is not None:
        columns = [torch.full((len(token_ids), 1), cls)] + columns + [torch.full((len(token_ids), 1), sep)]
    return torch.cat(columns, dim=1), 1 + (cls is not None and sep is not None)


def fill_in_distribution(model, tokenizer, token_ids: torch.Tensor) -> RowsOnDemand:
    """p(b fills the MASK | [CLS] a [MASK] [SEP]) for a (rows) and b (columns) in K: the masked LM's
    prediction at the MASK beside a (`fill_in_inputs`), the softmax over the whole vocabulary (float64),
    read at K's ids."""
    device = next(model.parameters()).device
    columns = token_ids.to(device)
    inputs, at = fill_in_inputs(tokenizer, token_ids.cpu())

    @torch.no_grad()
    def rows(block):
        logits = model(input_ids=inputs[block.cpu()].to(device)).logits[:, at]
        return logits.double().softmax(dim=-1)[:, columns]

    return RowsOnDemand(rows, (len(token_ids), len(token_ids)), device)
