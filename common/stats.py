"""Corpus statistics — the three basis functions of docs/theory.md §2 and the maps derived from them.

    bigram            B̄  = (1/n) Σ x_tᵀ r_t                       V_in × V_out
    context           Φ̄  = (1/n) Σ r_tᵀ ā_t,  ā_t = c_t Σ_{s≤t} x_s   V_out × V_context
    interchangeability Σ_B = B̄ᵀ B̄                               V_out × V_out
    value_map         (B̄Φ̄)ᵀ = Φ̄ᵀ B̄ᵀ                              V_context × V_in
    attention_source  Ḡ  = Φ̄ᵀ Σ_B                                 V_in × V_out
    attention_map     Q̄  (query rows × key columns)
    position_map      p̄  (one entry per relative distance t − s)

with r_t = y_t − (1/V)·1 and c_t = 1/(t+1).  Every sum is a scatter-add of pair counts over the
lower triangle s ≤ t of each sequence (O(T²) per sequence, vectorised over a chunk of sequences);
the softmax Jacobian J_t = c_t I − c_t² 11ᵀ of uniform attention is applied in closed form; the only
dense products are the two V³ ones for Ḡ.  Sums accumulate un-normalised (so shards can be added,
e.g. all-reduced across processes) and are divided by n once at the end.

Token sets smaller than the vocabulary (the Pythia pipeline) are supported: token ids are indices
into the set K, −1 marks a token outside K (its one-hot row is zero), and `full_vocab_size` is the
V of the uniform term 1/V, since the model's softmax runs over the full vocabulary.

Memory at large V (the Pythia pipeline at V ≈ 50k, where one V×V float32 matrix is 10 GB): the
normalisations run in place, Ḡ is taken as (B̄Φ̄)ᵀ B̄ (the same product as Φ̄ᵀ Σ_B) so Σ_B need not
exist, and `keep` names the fields to return — the others are freed as soon as they are used (they
are None in the result).  With keep = (value_map, attention_map, position_map) at most three V×V
matrices exist at once; with every field kept, at most six.
"""
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from tqdm.auto import tqdm

AllReduce = Optional[Callable[[torch.Tensor], None]]  # in-place sum across processes (or None)


@dataclass
class CorpusStatistics:                         # a field not in `keep` is None
    bigram: Optional[torch.Tensor]              # B̄,      [V_in, V_out]
    context: Optional[torch.Tensor]             # Φ̄,      [V_out, V_context]
    interchangeability: Optional[torch.Tensor]  # Σ_B,    [V_out, V_out]
    value_map: Optional[torch.Tensor]           # (B̄Φ̄)ᵀ, [V_context, V_in]
    attention_source: Optional[torch.Tensor]    # Ḡ,      [V_in, V_out]
    attention_map: Optional[torch.Tensor]       # Q̄,      [V_query, V_key]
    position_map: Optional[torch.Tensor]        # p̄,      [T]
    n_positions: int                            # n = sequences × T

    TENSOR_FIELDS = ("bigram", "context", "interchangeability", "value_map",
                     "attention_source", "attention_map", "position_map")

    def tensors(self) -> dict:
        return {k: getattr(self, k) for k in self.TENSOR_FIELDS if getattr(self, k) is not None}


class StatisticsAccumulator:
    """Two-pass streaming accumulation: pass 1 gives B̄ and Φ̄, pass 2 (which needs Ḡ) gives Q̄ and p̄.

    Usage:
        acc = StatisticsAccumulator(V)
        for x, y in batches: acc.add_first_pass(x, y)
        acc.end_first_pass()
        for x, y in batches: acc.add_second_pass(x, y)
        stats = acc.finish()
    Pass `all_reduce` (e.g. torch.distributed.all_reduce) to end_first_pass/finish when each process
    saw a shard: the raw sums are reduced before normalising, so the result equals one process's.
    """

    def __init__(self, vocab_size: int, full_vocab_size: Optional[int] = None,
                 device="cpu", dtype=torch.float64, keep: Optional[Iterable[str]] = None):
        self.keep = set(CorpusStatistics.TENSOR_FIELDS if keep is None else keep)
        if not self.keep <= set(CorpusStatistics.TENSOR_FIELDS):
            raise ValueError(f"keep: unknown fields {sorted(self.keep - set(CorpusStatistics.TENSOR_FIELDS))}")
        self.V = vocab_size
        self.full_V = full_vocab_size or vocab_size
        self.device, self.dtype = torch.device(device), dtype
        V = vocab_size
        self.n = torch.zeros((), dtype=torch.float64, device=self.device)
        # pair accumulators are flat V·V + 1 vectors: the last slot collects pairs involving a token
        # outside the token set, so every scatter runs unmasked (boolean masks cost more than the scatter)
        self.pair_counts = self._flat_pairs()                                       # (x_t, y_t)
        self.input_counts = torch.zeros(V + 1, dtype=dtype, device=self.device)     # x_t
        self.context_pairs = self._flat_pairs()                                     # (y_t, x_s) · c_t
        self.context_inputs = torch.zeros(V + 1, dtype=dtype, device=self.device)   # x_s · Σ_{t≥s} c_t
        self.seq_len = None
        self.attention_source = None

    # -- shared per-chunk geometry ------------------------------------------------------------
    def _prepare(self, x: torch.Tensor, y: torch.Tensor):
        x = x.to(self.device, torch.long).contiguous()
        y = y.to(self.device, torch.long).contiguous()
        if x.shape != y.shape or x.dim() != 2:
            raise ValueError(f"x and y must both be [N, T]; got {tuple(x.shape)} and {tuple(y.shape)}")
        T = x.shape[1]
        if self.seq_len is None:
            self.seq_len = T
            # query t (row) and key s (column) of every pair s ≤ t, row by row
            self.rows, self.cols = torch.tril_indices(T, T, device=self.device)
            self.c = 1.0 / torch.arange(1, T + 1, device=self.device, dtype=self.dtype)
        elif T != self.seq_len:
            raise ValueError(f"every batch must have the same sequence length ({self.seq_len}); got {T}")
        if x.numel() and (int(x.max()) >= self.V or int(y.max()) >= self.V or int(x.min()) < -1
                          or int(y.min()) < -1):
            raise ValueError(f"token ids must lie in [0, {self.V}) (or −1 for outside the token set)")
        return x, y

    def _flat_pairs(self) -> torch.Tensor:
        return torch.zeros(self.V * self.V + 1, dtype=self.dtype, device=self.device)

    def _pair_index(self, a: torch.Tensor, b: torch.Tensor, outside: bool) -> torch.Tensor:
        """Flat index a·V + b of token pairs; the spare last slot where either is outside the set."""
        index = a * self.V + b
        return torch.where((a >= 0) & (b >= 0), index, self.V * self.V) if outside else index

    def _token_index(self, a: torch.Tensor, outside: bool) -> torch.Tensor:
        return torch.where(a >= 0, a, self.V) if outside else a

    def _pairs(self, x: torch.Tensor, y: torch.Tensor):
        """(x_t, x_s, y_t) for every lower-triangle pair s ≤ t of every sequence, as [C, T(T+1)/2]."""
        return (torch.index_select(x, 1, self.rows), torch.index_select(x, 1, self.cols),
                torch.index_select(y, 1, self.rows))

    # -- pass 1: B̄ and Φ̄ ----------------------------------------------------------------------
    def add_first_pass(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = self._prepare(x, y)
        rows, c = self.rows, self.c
        outside = bool((x < 0).any() or (y < 0).any())
        self.n += x.numel()
        ones = torch.ones(x.numel(), dtype=self.dtype, device=self.device)
        self.pair_counts.index_add_(0, self._pair_index(x, y, outside).view(-1), ones)
        self.input_counts.index_add_(0, self._token_index(x, outside).view(-1), ones)
        # Σ_{s≤t} c_t [y_t=j][x_s=k]: one scatter over the lower-triangle pairs of every sequence
        _, xs, yt = self._pairs(x, y)
        self.context_pairs.index_add_(0, self._pair_index(yt, xs, outside).view(-1),
                                      c[rows].expand(x.shape[0], -1).reshape(-1))
        # the −1/V part of r_t only needs, per key position s, the weight Σ_{t≥s} c_t
        tail = c.flip(0).cumsum(0).flip(0)
        self.context_inputs.index_add_(0, self._token_index(x, outside).view(-1), tail.expand_as(x).reshape(-1))

    def end_first_pass(self, all_reduce: AllReduce = None) -> None:
        if self.seq_len is None:
            raise ValueError("no sequences were given: the corpus is empty")
        if all_reduce is not None:
            for t in (self.n, self.pair_counts, self.input_counts, self.context_pairs, self.context_inputs):
                all_reduce(t)
        V, n = self.V, float(self.n)
        # in place: the count buffers become B̄ and Φ̄
        # (the spare last slot of each buffer, pairs outside the token set, is dropped here)
        self.bigram = self.pair_counts[:-1].view(V, V).sub_(self.input_counts[:-1, None] / self.full_V).div_(n)
        self.context = self.context_pairs[:-1].view(V, V).sub_(self.context_inputs[None, :-1] / self.full_V).div_(n)
        del self.pair_counts, self.context_pairs
        self.interchangeability = self.bigram.T @ self.bigram if "interchangeability" in self.keep else None
        self.value_map = self.context.T @ self.bigram.T
        if "context" not in self.keep:
            self.context = None
        # Ḡ = (B̄Φ̄)ᵀ B̄ = Φ̄ᵀ Σ_B, written into a flat buffer whose spare last slot is 0 so that the
        # pass-2 gather needs no mask for pairs outside the token set
        self.source_flat = self._flat_pairs()
        self.attention_source = torch.matmul(self.value_map, self.bigram, out=self.source_flat[:-1].view(V, V))
        if "bigram" not in self.keep:
            self.bigram = None
        # Σ_j Ḡ[k, j]/V: the uniform part of r_t seen through Ḡ, one number per key token
        self.source_uniform = torch.cat([self.attention_source.sum(1) / self.full_V,
                                         self.attention_source.new_zeros(1)])
        self.attention_sum = self._flat_pairs()
        self.position_sum = torch.zeros(self.seq_len, dtype=self.dtype, device=self.device)
        self.n_second = torch.zeros((), dtype=torch.float64, device=self.device)

    # -- pass 2: Q̄ and p̄ ----------------------------------------------------------------------
    def add_second_pass(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.attention_source is None:
            raise RuntimeError("call end_first_pass() before the second pass")
        x, y = self._prepare(x, y)
        V, rows, cols, c = self.V, self.rows, self.cols, self.c
        outside = bool((x < 0).any() or (y < 0).any())
        self.n_second += x.numel()
        xt, xs, yt = self._pairs(x, y)
        # M[t,s] = x_s Ḡ r_tᵀ = Ḡ[x_s, y_t] − Σ_j Ḡ[x_s, j]/V: a gather (zero where x_s is outside K,
        # and only the uniform part where y_t is)
        M = (torch.index_select(self.source_flat, 0, self._pair_index(xs, yt, outside).view(-1))
             - torch.index_select(self.source_uniform, 0, self._token_index(xs, outside).view(-1))).view(xs.shape)
        # dS[t,s] = c_t (M[t,s] − c_t Σ_{s'≤t} M[t,s']): J_t = c_t I − c_t² 11ᵀ in closed form
        row_sum = torch.zeros(x.shape, dtype=M.dtype, device=M.device).index_add_(1, rows, M)
        dS = c[rows] * (M - c[rows] * torch.index_select(row_sum, 1, rows))
        self.attention_sum.index_add_(0, self._pair_index(xt, xs, outside).view(-1), dS.view(-1))
        self.position_sum.index_add_(0, rows - cols, dS.sum(0))

    def finish(self, all_reduce: AllReduce = None) -> CorpusStatistics:
        if all_reduce is not None:
            for t in (self.n_second, self.attention_sum, self.position_sum):
                all_reduce(t)
        if float(self.n_second) != float(self.n):
            raise RuntimeError(f"the two passes saw different data ({int(self.n)} vs {int(self.n_second)} positions)")
        V, n = self.V, float(self.n)
        attention_map, self.attention_sum = self.attention_sum[:-1].view(V, V).div_(n), None
        kept = lambda name, value: value if name in self.keep else None
        return CorpusStatistics(
            bigram=self.bigram, context=self.context, interchangeability=self.interchangeability,
            value_map=kept("value_map", self.value_map),
            attention_source=kept("attention_source", self.attention_source),
            attention_map=kept("attention_map", attention_map),
            position_map=kept("position_map", self.position_sum / n), n_positions=int(n))


def statistics_from_batches(batches, vocab_size: int, full_vocab_size: Optional[int] = None,
                            device="cpu", dtype=torch.float64, all_reduce: AllReduce = None,
                            progress: bool = False, keep: Optional[Iterable[str]] = None) -> CorpusStatistics:
    """Two streaming passes over `batches`: a re-iterable of (x, y) pairs, or a callable returning
    a fresh iterator each time it is called (for corpora that do not fit in memory).
    `keep`: the CorpusStatistics fields to return (default all; see the module docstring)."""
    acc = StatisticsAccumulator(vocab_size, full_vocab_size, device, dtype, keep)
    for add, end, label in ((acc.add_first_pass, acc.end_first_pass, "statistics pass 1 (B̄, Φ̄)"),
                            (acc.add_second_pass, acc.finish, "statistics pass 2 (Q̄, p̄)")):
        for x, y in tqdm(batches() if callable(batches) else batches, desc=label, disable=not progress,
                         leave=False):
            add(x, y)
        result = end(all_reduce)
    return result


def compute_statistics(x: torch.Tensor, y: torch.Tensor, vocab_size: int, chunk_size: int = 256,
                       full_vocab_size: Optional[int] = None, device="cpu", dtype=torch.float64,
                       all_reduce: AllReduce = None, progress: bool = False,
                       keep: Optional[Iterable[str]] = None) -> CorpusStatistics:
    """Statistics of in-memory sequences x, y: LongTensors [N, T] (y is x shifted by one token)."""
    if x.shape[0] == 0:
        raise ValueError("no sequences were given: the corpus is empty")
    chunks = lambda: ((x[i:i + chunk_size], y[i:i + chunk_size]) for i in range(0, x.shape[0], chunk_size))
    return statistics_from_batches(chunks, vocab_size, full_vocab_size, device, dtype, all_reduce, progress, keep)
