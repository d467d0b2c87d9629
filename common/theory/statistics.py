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
the softmax Jacobian J_t = c_t I − c_t² 11ᵀ of uniform attention is applied in closed form
(`attention_scores_gradient`, shared with the path-exact tracker of common/theory/path_exact.py).  Sums
accumulate un-normalised (so shards can be added, e.g. all-reduced across processes) and are divided
by n once at the end.

No dense V×V×V product: B̄ = (C − d1ᵀ/V)/n and Φ̄ = (K − 1eᵀ/V)/n are count matrices minus a rank-one
uniform part (C the sparse (x_t, y_t) pair counts, d the input counts, K the context pair sums, e the
context input weights), so Σ_B = B̄ᵀB̄, (B̄Φ̄)ᵀ and Ḡ are each one sparse-times-dense product with C
plus rank-one corrections, O(nnz(C)·V) with nnz(C) ≤ n.  When C is not sparse (a small vocabulary
seen many times) the same formulas run with C dense, which is then faster.

Token sets smaller than the vocabulary (the Pythia pipeline) are supported: token ids are indices
into the set K, −1 marks a token outside K (its one-hot row is zero), and `full_vocab_size` is the
V of the uniform term 1/V, since the model's softmax runs over the full vocabulary.

Memory at large V (the Pythia pipeline at V ≈ 50k, where one V×V float32 matrix is 10 GB): the
normalisations run in place, Ḡ is taken as (B̄Φ̄)ᵀ B̄ (the same as Φ̄ᵀ Σ_B) so Σ_B need not exist, and `keep` names the fields to return — the others are freed as soon as they are
used (they are None in the result).  With keep = (value_map, attention_map, position_map) at most
three V×V matrices exist at once (besides the sparse counts); with every field kept, at most seven.
`context_input` (Ā = (1/n) Σ ā_tᵀ x_t, needed only by the next-order terms of common/theory/leading_terms.py)
costs one more pair scatter and is computed only when `keep` names it.
"""
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from common.progress import progress_bar

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
    input_frequency: Optional[torch.Tensor] = None  # P̂(x = i), [V_in] (the diagonal of D, §10)
    context_input: Optional[torch.Tensor] = None    # Ā = (1/n) Σ ā_tᵀ x_t, [V_context, V_in] (§10)

    TENSOR_FIELDS = ("bigram", "context", "interchangeability", "value_map",
                     "attention_source", "attention_map", "position_map", "input_frequency")
    OPTIONAL_FIELDS = ("context_input",)        # computed only when `keep` names them

    def tensors(self) -> dict:
        return {k: getattr(self, k) for k in self.TENSOR_FIELDS + self.OPTIONAL_FIELDS
                if getattr(self, k) is not None}


# -- the lower triangle s ≤ t of one sequence, shared with common/theory/path_exact.py ---------------------
@dataclass
class LowerTriangle:
    """Query t (row) and key s (column) of every pair s ≤ t, row by row, with c_t = 1/(t+1)."""
    rows: torch.Tensor       # t of each pair, [T(T+1)/2]
    cols: torch.Tensor       # s of each pair
    distance: torch.Tensor   # t − s
    c: torch.Tensor          # c_t, [T]
    c_rows: torch.Tensor     # c_t of each pair
    tail: torch.Tensor       # Σ_{t≥s} c_t, [T]: the weight of key position s in Φ̄'s uniform part

    @classmethod
    def of(cls, T: int, device, dtype) -> "LowerTriangle":
        rows, cols = torch.tril_indices(T, T, device=device)
        c = 1.0 / torch.arange(1, T + 1, device=device, dtype=dtype)
        return cls(rows, cols, rows - cols, c, c[rows], c.flip(0).cumsum(0).flip(0))

    def select(self, a: torch.Tensor, at: str) -> torch.Tensor:
        """a[:, t] (at='rows') or a[:, s] (at='cols') for every pair: [C, T] → [C, T(T+1)/2]."""
        return torch.index_select(a, 1, self.rows if at == "rows" else self.cols)


def attention_scores_gradient(M: torch.Tensor, tri: LowerTriangle) -> torch.Tensor:
    """dS[t,s] = c_t (M[t,s] − c_t Σ_{s'≤t} M[t,s']) over the lower-triangle pairs (docs/theory.md §2):
    the softmax Jacobian J_t = c_t I − c_t² 11ᵀ of uniform attention in closed form, never a T×T×T
    tensor.  M: [C, T(T+1)/2], overwritten with dS."""
    row_sum = M.new_zeros(M.shape[0], tri.c.shape[0]).index_add_(1, tri.rows, M)
    return M.sub_(tri.c_rows * torch.index_select(row_sum, 1, tri.rows)).mul_(tri.c_rows)


def _uses_sparse(nnz: int, V: int, device: torch.device) -> bool:
    """Sparse-times-dense beats a dense product when C is sparse enough: the factors are the measured
    throughput gap between a CSR product and a dense one on each device (docs/benchmarks.md §3)."""
    return nnz * (16 if device.type == "cpu" else 256) < V * V


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
        known = CorpusStatistics.TENSOR_FIELDS + CorpusStatistics.OPTIONAL_FIELDS
        self.keep = set(CorpusStatistics.TENSOR_FIELDS if keep is None else keep)
        if not self.keep <= set(known):
            raise ValueError(f"keep: unknown fields {sorted(self.keep - set(known))}")
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
        self.context_input_pairs = self._flat_pairs() if "context_input" in self.keep else None  # (x_s, x_t) · c_t
        self.seq_len = None
        self.attention_source = None

    # Ḡ = Φ̄ᵀ instead of (B̄Φ̄)ᵀB̄: the attention source of a model without residual and W_O (the
    # "identity" variant of the masked model, common/theory/masked_statistics.py)
    identity_source = False

    # -- shared per-chunk geometry ------------------------------------------------------------
    def _prepare(self, x: torch.Tensor, y: torch.Tensor):
        x = x.to(self.device, torch.long).contiguous()
        y = y.to(self.device, torch.long).contiguous()
        if x.shape != y.shape or x.dim() != 2:
            raise ValueError(f"x and y must both be [N, T]; got {tuple(x.shape)} and {tuple(y.shape)}")
        T = x.shape[1]
        if self.seq_len is None:
            self.seq_len = T
            self.tri = LowerTriangle.of(T, self.device, self.dtype)
        elif T != self.seq_len:
            raise ValueError(f"every batch must have the same sequence length ({self.seq_len}); got {T}")
        if x.numel() and (int(x.max()) >= self.V or int(y.max()) >= self.V or int(x.min()) < -1
                          or int(y.min()) < -1):
            raise ValueError(f"token ids must lie in [0, {self.V}) (or −1 for outside the token set)")
        return x, y, bool((x < 0).any() or (y < 0).any())

    def _flat_pairs(self) -> torch.Tensor:
        return torch.zeros(self.V * self.V + 1, dtype=self.dtype, device=self.device)

    def _pair_index(self, a: torch.Tensor, b: torch.Tensor, outside: bool) -> torch.Tensor:
        """Flat index a·V + b of token pairs; the spare last slot where either is outside the set."""
        index = a * self.V + b
        return (torch.where((a >= 0) & (b >= 0), index, self.V * self.V) if outside else index).view(-1)

    def _token_index(self, a: torch.Tensor, outside: bool) -> torch.Tensor:
        return (torch.where(a >= 0, a, self.V) if outside else a).reshape(-1)

    # -- pass 1: B̄ and Φ̄ ----------------------------------------------------------------------
    def add_first_pass(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y, outside = self._prepare(x, y)
        tri = self.tri
        self.n += x.numel()
        ones = torch.ones(x.numel(), dtype=self.dtype, device=self.device)
        self.pair_counts.index_add_(0, self._pair_index(x, y, outside), ones)
        self.input_counts.index_add_(0, self._token_index(x, outside), ones)
        # Σ_{s≤t} c_t [y_t=j][x_s=k]: one scatter over the lower-triangle pairs of every sequence
        xs = tri.select(x, "cols")
        weights = tri.c_rows.expand(x.shape[0], -1).reshape(-1)
        self.context_pairs.index_add_(0, self._pair_index(tri.select(y, "rows"), xs, outside), weights)
        if self.context_input_pairs is not None:
            self.context_input_pairs.index_add_(0, self._pair_index(xs, tri.select(x, "rows"), outside), weights)
        # the −1/V part of r_t only needs, per key position s, the weight Σ_{t≥s} c_t
        self.context_inputs.index_add_(0, self._token_index(x, outside), tri.tail.expand_as(x).reshape(-1))

    def end_first_pass(self, all_reduce: AllReduce = None) -> None:
        if self.seq_len is None:
            raise ValueError("no sequences were given: the corpus is empty")
        if all_reduce is not None:
            for t in (self.n, self.pair_counts, self.input_counts, self.context_pairs, self.context_inputs,
                      self.context_input_pairs):
                if t is not None:
                    all_reduce(t)
        V, fV, n, keep = self.V, self.full_V, float(self.n), self.keep
        d = self.input_counts[:-1]                                   # input counts inside the set
        e = self.context_inputs[:-1]
        C = self.pair_counts[:-1].view(V, V)                         # (x_t, y_t) counts
        K = self.context_pairs[:-1].view(V, V)                       # (y_t, x_s) · c_t sums
        self.input_frequency = d / n
        self.context_input = (self.context_input_pairs[:-1].view(V, V).div_(n)
                              if self.context_input_pairs is not None else None)
        self.context_input_pairs = None
        # the products with B̄ = (C − d1ᵀ/V)/n as products with C plus rank-one corrections (module docstring)
        nnz = int(torch.count_nonzero(C))
        sparse = _uses_sparse(nnz, V, self.device)
        with warnings.catch_warnings():   # "sparse CSR support is in beta": the products used here are tested
            warnings.simplefilter("ignore", UserWarning)
            C_op, Ct_op = (C.to_sparse_csr(), C.T.to_sparse_csr()) if sparse else (C, C.T)
        C_rows, Ct_d = C.sum(1), Ct_op @ d[:, None]                  # C1 and Cᵀd
        self.interchangeability = None
        if "interchangeability" in keep:
            # Σ_B = (CᵀC − (Cᵀd)1ᵀ/V − 1(Cᵀd)ᵀ/V + (dᵀd)/V² 11ᵀ)/n²
            sigma = Ct_op @ C
            sigma.sub_(Ct_d / fV).sub_(Ct_d.T / fV).add_(float(d @ d) / fV ** 2).div_(n * n)
            self.interchangeability = sigma
        # (B̄Φ̄) = B̄Φ̄ = (CK − d(Kᵀ1)ᵀ/V − (C1)eᵀ/V + V·d eᵀ/V²)/n²: the value map, transposed
        value_map_t = C_op @ K
        value_map_t.sub_(d[:, None] * (K.sum(0)[None, :] / fV)).sub_(C_rows[:, None] * (e[None, :] / fV))
        value_map_t.add_(d[:, None] * (e[None, :] * (V / fV ** 2))).div_(n * n)
        # in place: the count buffers become B̄ and Φ̄ (the spare last slot, pairs outside the set, is dropped)
        context = K.sub_(e[None, :] / fV).div_(n) if "context" in keep or self.identity_source else None
        # Ḡᵀ, written into a flat buffer indexed y·V + x whose spare last slot is 0, so that the pass-2
        # gather Ḡ[x_s, y_t] needs no mask outside the token set
        self.source_flat = self._flat_pairs()
        if self.identity_source:                                     # Ḡᵀ = Φ̄
            source_t = self.source_flat[:-1].view(V, V).copy_(context)
        self.context = context if "context" in keep else None
        del K, context, self.context_pairs
        if not self.identity_source:                                 # Ḡᵀ = B̄ᵀ (B̄Φ̄) = (Cᵀ (B̄Φ̄) − 1 (dᵀ(B̄Φ̄))/V)/n
            source_t = torch.matmul(Ct_op, value_map_t, out=self.source_flat[:-1].view(V, V))
            source_t.sub_((d @ value_map_t)[None, :] / fV).div_(n)
        del C_op, Ct_op
        self.bigram = C.sub_(d[:, None] / fV).div_(n) if "bigram" in keep else None
        del C, self.pair_counts
        self.value_map = value_map_t.T.contiguous() if "value_map" in keep else None
        del value_map_t
        self.attention_source = source_t.T
        # Σ_j Ḡ[k, j]/V: the uniform part of r_t seen through Ḡ, one number per key token
        self.source_uniform = torch.cat([source_t.sum(0) / fV, source_t.new_zeros(1)])
        self.attention_sum = self._flat_pairs()
        self.position_sum = torch.zeros(self.seq_len, dtype=self.dtype, device=self.device)
        self.n_second = torch.zeros((), dtype=torch.float64, device=self.device)

    # -- pass 2: Q̄ and p̄ ----------------------------------------------------------------------
    def add_second_pass(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.attention_source is None:
            raise RuntimeError("call end_first_pass() before the second pass")
        x, y, outside = self._prepare(x, y)
        tri = self.tri
        self.n_second += x.numel()
        xt, xs = tri.select(x, "rows"), tri.select(x, "cols")
        # M[t,s] = x_s Ḡ r_tᵀ = Ḡ[x_s, y_t] − Σ_j Ḡ[x_s, j]/V: a gather (zero where x_s is outside K,
        # and only the uniform part where y_t is)
        M = torch.index_select(self.source_flat, 0, self._pair_index(tri.select(y, "rows"), xs, outside))
        M = M.sub_(torch.index_select(self.source_uniform, 0, self._token_index(xs, outside))).view(xs.shape)
        dS = attention_scores_gradient(M, tri)
        self.attention_sum.index_add_(0, self._pair_index(xt, xs, outside), dS.view(-1))
        self.position_sum.index_add_(0, tri.distance, dS.sum(0))

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
            value_map=self.value_map,
            attention_source=kept("attention_source", self.attention_source),
            attention_map=kept("attention_map", attention_map),
            position_map=kept("position_map", self.position_sum / n), n_positions=int(n),
            input_frequency=kept("input_frequency", self.input_frequency),
            context_input=self.context_input)

def statistics_from_batches(batches, vocab_size: int, full_vocab_size: Optional[int] = None,
                            device="cpu", dtype=torch.float64, all_reduce: AllReduce = None,
                            progress: bool = False, keep: Optional[Iterable[str]] = None) -> CorpusStatistics:
    """Two streaming passes over `batches`: a re-iterable of (x, y) pairs, or a callable returning
    a fresh iterator each time it is called (for corpora that do not fit in memory).
    `keep`: the CorpusStatistics fields to return (default all; see the module docstring)."""
    acc = StatisticsAccumulator(vocab_size, full_vocab_size, device, dtype, keep)
    return two_passes(acc, batches, all_reduce, progress)


def two_passes(acc, batches, all_reduce: AllReduce = None, progress: bool = False) -> CorpusStatistics:
    """Feed `batches` (a re-iterable of argument tuples for the accumulator's add methods, or a callable
    returning a fresh iterator) to pass 1, end it, feed them again to pass 2 and finish."""
    for add, end, label in ((acc.add_first_pass, acc.end_first_pass, "statistics pass 1 (B̄, Φ̄)"),
                            (acc.add_second_pass, acc.finish, "statistics pass 2 (Q̄, p̄)")):
        for batch in progress_bar(batches() if callable(batches) else batches, desc=label, disable=not progress,
                                  leave=False):
            add(*batch)
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
