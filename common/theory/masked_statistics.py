"""Statistics of the masked objective (docs/theory.md §16): those of docs/theory.md §2 with the loss on
the selected positions S only, the corrupted input x̃ and attention over all positions.

    bigram            B̄ₘ = (1/n) Σ_{t∈S} e_{x̃_t} r_tᵀ                        n = |S|
    context           Φ̄ₘ = (1/n) Σ_{t∈S} r_t ā_tᵀ,   ā_t = (1/T) Σ_{all s} e_{x̃_s}
    interchangeability, value_map        B̄ₘᵀB̄ₘ, (B̄ₘΦ̄ₘ)ᵀ
    attention_source  G = (B̄ₘΦ̄ₘ)ᵀB̄ₘ (variant "residual") or Φ̄ₘᵀ (variant "identity": no residual, W_O = I)
    attention_map     Q̄ₘ = (1/n) Σ_{t∈S} Σ_s dS[t,s] e_{x̃_t} e_{x̃_s}ᵀ        (query rows)
    position_map      p̄ₘ[d + T − 1] = (1/n) Σ_{t∈S, t−s=d} dS[t,s]           (2T − 1 signed offsets)

with M[t,s] = x̃_s G r_tᵀ and dS[t,s] = (1/T)(M[t,s] − (1/T) Σ_{s'} M[t,s']), the bidirectional softmax
Jacobian of uniform attention in closed form; r_t = e_{y_t} − 1/V with V the model's vocabulary.

`masked_statistics` takes one corruption draw (x̃, y, selected): the accumulator of
common/theory/statistics.py with the pair scatters restricted to the selected query positions (every key
position), so the products with B̄ₘ are the same sparse count products plus rank-one corrections.

`expected_masked_statistics` takes the clean tokens and the MaskingScheme of common/theory/masking.py and
gives the statistics of the *expected* objective E[Σ_{t∈S} CE_t] / E[n], E[n] = πNT: B̄ₘ, Φ̄ₘ are the
expectations of the raw sums over E[n]; Q̄ₘ, p̄ₘ the expectations of their raw sums with the fixed G built
from those (the leading terms of gradient flow on the expected loss).  The closed form of docs/theory.md
§16: every position is corrupted independently, a selected one shows q_t = μ e_MASK + κ e_{x_t} + ρ u and
any other position shows p_s = α e_{x_s} + π(μ e_MASK + ρ u), α = 1 − π + πκ, so every expectation is
a pair scatter over all T² pairs of the clean sequence plus diagonal and rank-one corrections along
w = μ e_MASK + ρ u, and one product of G with the co-occurrence counts (sparse when they are).  B̄ₘ is
diagonal plus rank two (targets are the clean inputs), so Σ_B, (B̄ₘΦ̄ₘ)ᵀ and G cost O(V²).

Token sets (real checkpoints): ids index a set K, −1 marks a token outside it (zero one-hot row), and
`full_vocab_size` is the model's V.  mask_id = −1 puts MASK outside the set.  The random word is uniform
over [0, n_words) in the coordinates of x: each id of [0, min(n_words, vocab_size)) gets 1/n_words and the
rest of its mass falls outside the set (for a set that relabels word ids, e.g. the top-k of BERT's
30522, every id of the set is a word).
"""
import warnings
from typing import Iterable, Optional

import torch

from common.theory.masking import MaskingScheme
from common.theory.model import relative_position_index
from common.theory.statistics import (CorpusStatistics, StatisticsAccumulator, _uses_sparse, two_passes)
from common.theory.weight_kinds import VARIANTS


def _check_variant(variant: str, keep) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS} (got {variant!r})")
    if keep is not None and "context_input" in keep:
        raise ValueError("keep: context_input is a statistic of the causal objective only")


def _chunks(chunk_size: int, *tensors):
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 (got {chunk_size})")
    if tensors[0].dim() != 2 or tensors[0].shape[0] == 0:
        raise ValueError(f"no sequences were given: the corpus is empty (tokens of shape {tuple(tensors[0].shape)})")
    N = tensors[0].shape[0]
    return lambda: (tuple(t[i:i + chunk_size] for t in tensors) for i in range(0, N, chunk_size))


# -- one corruption draw --------------------------------------------------------------------------
class MaskedStatisticsAccumulator(StatisticsAccumulator):
    """StatisticsAccumulator for one corruption draw: add_first_pass / add_second_pass take
    (x_tilde, y, selected); the end of pass 1 (the products) and finish are the causal ones."""

    def __init__(self, vocab_size: int, full_vocab_size: Optional[int] = None, variant: str = "residual",
                 device="cpu", dtype=torch.float64, keep: Optional[Iterable[str]] = None):
        _check_variant(variant, keep)
        super().__init__(vocab_size, full_vocab_size, device, dtype, keep)
        self.identity_source = variant == "identity"

    def _prepare_masked(self, x_tilde, y, selected):
        x, y, outside = self._prepare(x_tilde, y)
        selected = selected.to(self.device)
        if selected.shape != x.shape or selected.dtype != torch.bool:
            raise ValueError(f"selected must be a BoolTensor of the shape of x_tilde {tuple(x.shape)}; "
                             f"got {selected.dtype} {tuple(selected.shape)}")
        seq, t = selected.nonzero(as_tuple=True)
        # the query (selected) positions: their input, target, and every key of their sequence
        return x, outside, selected, t, x[seq, t], y[seq, t], x[seq]

    def add_first_pass(self, x_tilde, y, selected) -> None:
        x, outside, selected, t, x_query, y_query, keys = self._prepare_masked(x_tilde, y, selected)
        T = x.shape[1]
        self.n += t.numel()
        ones = torch.ones(t.numel(), dtype=self.dtype, device=self.device)
        self.pair_counts.index_add_(0, self._pair_index(x_query, y_query, outside), ones)
        self.input_counts.index_add_(0, self._token_index(x_query, outside), ones)
        # Σ_{t∈S} Σ_s [y_t=j][x̃_s=k]/T: one scatter over (selected query, any key) pairs
        self.context_pairs.index_add_(0, self._pair_index(y_query[:, None].expand_as(keys), keys, outside),
                                      torch.full((keys.numel(),), 1.0 / T, dtype=self.dtype, device=self.device))
        # the −1/V part of r_t: key position s weighs (number of selected positions of its sequence)/T
        weight = (selected.sum(1, dtype=self.dtype) / T)[:, None].expand(x.shape)
        self.context_inputs.index_add_(0, self._token_index(x, outside), weight.reshape(-1))

    def end_first_pass(self, all_reduce=None) -> None:
        super().end_first_pass(all_reduce)
        if float(self.n) == 0:
            raise ValueError("no position is selected: the masked loss has no terms")
        self.position_sum = torch.zeros(2 * self.seq_len - 1, dtype=self.dtype, device=self.device)

    def add_second_pass(self, x_tilde, y, selected) -> None:
        if self.attention_source is None:
            raise RuntimeError("call end_first_pass() before the second pass")
        x, outside, selected, t, x_query, y_query, keys = self._prepare_masked(x_tilde, y, selected)
        T = x.shape[1]
        self.n_second += t.numel()
        # M[t,s] = x̃_s G r_tᵀ = G[x̃_s, y_t] − Σ_j G[x̃_s, j]/V, for every key s of every selected query t
        M = torch.index_select(self.source_flat, 0, self._pair_index(y_query[:, None].expand_as(keys), keys, outside))
        M = M.sub_(torch.index_select(self.source_uniform, 0, self._token_index(keys, outside))).view(keys.shape)
        dS = M.sub_(M.mean(1, keepdim=True)).div_(T)                 # J = (1/T)(I − 11ᵀ/T) on each row
        self.attention_sum.index_add_(0, self._pair_index(x_query[:, None].expand_as(keys), keys, outside),
                                      dS.view(-1))
        self.position_sum.index_add_(0, relative_position_index(T, self.device, causal=False)[t].view(-1), dS.view(-1))


def masked_statistics(x_tilde: torch.Tensor, y: torch.Tensor, selected: torch.Tensor, vocab_size: int,
                      variant: str = "residual", full_vocab_size: Optional[int] = None, chunk_size: int = 256,
                      progress: bool = False, keep: Optional[Iterable[str]] = None,
                      all_reduce=None) -> CorpusStatistics:
    """Statistics of one corruption draw: x_tilde (corrupted inputs) and y (targets) LongTensors [N, T],
    `selected` the BoolTensor [N, T] of loss positions; n_positions = |S|.  `all_reduce` (a sum over
    processes, as compute_statistics's): each process passes its shard of the sequences."""
    acc = MaskedStatisticsAccumulator(vocab_size, full_vocab_size, variant, keep=keep)
    return two_passes(acc, _chunks(chunk_size, x_tilde, y, selected), all_reduce, progress=progress)


# -- in expectation over the corruption -----------------------------------------------------------
def _cheapest(costs: dict) -> str:
    """The way with the fewest (weighted) multiply-adds (the tests force each way through this)."""
    return min(costs, key=costs.get)


class _DiagonalPlusLowRank:
    """A = diag(δ) + U Wᵀ (U, W: V × k) with its products in O(k V²)."""

    def __init__(self, diagonal, U, W):
        self.diagonal, self.U, self.W = diagonal, U, W

    def dense(self):
        return torch.diag(self.diagonal) + self.U @ self.W.T

    def left(self, X):            # A X
        return self.diagonal[:, None] * X + self.U @ (self.W.T @ X)

    def transposed_left(self, X):  # Aᵀ X
        return self.diagonal[:, None] * X + self.W @ (self.U.T @ X)


class ExpectedMaskedStatisticsAccumulator(StatisticsAccumulator):
    """Two passes over clean sequences x [N, T]: pass 1 the counts (inputs, all-pairs co-occurrence), pass 2
    the pair scatters of E Q̄ₘ, E p̄ₘ with the fixed G of E B̄ₘ, E Φ̄ₘ (docs/theory.md §16)."""

    def __init__(self, vocab_size: int, scheme: MaskingScheme, full_vocab_size: Optional[int] = None,
                 variant: str = "residual", device="cpu", dtype=torch.float64,
                 keep: Optional[Iterable[str]] = None):
        _check_variant(variant, keep)
        scheme.validate()
        if not (scheme.mask_id == -1 or 0 <= scheme.mask_id < vocab_size):
            raise ValueError(f"mask_id must be an id of the vocabulary [0, {vocab_size}) or −1 (outside the "
                             f"token set); got {scheme.mask_id}")
        super().__init__(vocab_size, full_vocab_size, device, dtype, keep)
        self.pair_counts = None                                  # targets are the inputs: no (x, y) pairs
        self.identity_source = variant == "identity"
        self.scheme = scheme
        pi, (mu, kappa, rho) = scheme.mask_prob, scheme.split
        self.pi, self.mu, self.kappa, self.rho = pi, mu, kappa, rho
        self.alpha = 1.0 - pi + pi * kappa                       # the weight of e_{x_s} in p_s: unselected, or shown as itself
        w = torch.zeros(vocab_size, dtype=dtype, device=self.device)  # w = μ e_MASK + ρ u
        w[:min(scheme.n_words, vocab_size)] = rho / scheme.n_words
        if scheme.mask_id >= 0:
            w[scheme.mask_id] += mu
        self.w = w
        self.distinct = torch.zeros((), dtype=torch.float64, device=self.device)

    def add_first_pass(self, x, y=None) -> None:
        x, _, outside = self._prepare(x, x)
        T = x.shape[1]
        self.n += x.numel()
        ones = torch.ones(x.numel(), dtype=self.dtype, device=self.device)
        self.input_counts.index_add_(0, self._token_index(x, outside), ones)
        # Σ_seq h hᵀ: the co-occurrence of every ordered pair (t, s), t = s included
        self.context_pairs.index_add_(0, self._pair_index(x[:, :, None].expand(-1, T, T),
                                                          x[:, None, :].expand(-1, T, T), outside),
                                      torch.ones(x.shape[0] * T * T, dtype=self.dtype, device=self.device))
        # nnz of the sequences' histograms H (N × V, Σ h hᵀ = HᵀH): the cost of streaming G HᵀH in pass 2
        ordered = x.sort(1).values
        self.distinct += float((ordered[:, 1:] != ordered[:, :-1]).sum() + x.shape[0])

    def end_first_pass(self, all_reduce=None) -> None:
        if self.seq_len is None:
            raise ValueError("no sequences were given: the corpus is empty")
        if all_reduce is not None:
            for t in (self.n, self.input_counts, self.context_pairs, self.distinct):
                all_reduce(t)
        V, fV, T, keep = self.V, self.full_V, self.seq_len, self.keep
        n_all, pi, kappa, alpha, w = float(self.n), self.pi, self.kappa, self.alpha, self.w
        L = T - 1
        cnt = self.input_counts[:-1]
        cooccurrence = self.context_pairs[:-1].view(V, V)
        self.context_pairs = None
        residual_total = cnt - n_all / fV                            # Σ_t r_t (targets are the clean inputs)
        # E B̄ₘ = (1/NT)[κ diag(cnt) − κ cnt 1ᵀ/V + w (Σ_t r_t)ᵀ]: diagonal plus rank two
        bigram = _DiagonalPlusLowRank(kappa * cnt / n_all, torch.stack([cnt, w], 1),
                                      torch.stack([torch.full_like(cnt, -kappa / (fV * n_all)),
                                                   residual_total / n_all], 1))
        self.input_frequency = (kappa * cnt + n_all * w) / n_all     # E Σ_{t∈S} e_{x̃_t} / E[n]
        # E Φ̄ₘ = (1/NT)(1/T)[α Σ h hᵀ + (κ−α) diag(cnt) + (1+Lπ) cnt wᵀ − 1 ((αT+κ−α) cnt + (1+Lπ) NT w)ᵀ/V]
        context = cooccurrence.mul(alpha)
        context.diagonal().add_((kappa - alpha) * cnt)
        context.add_(cnt[:, None] * ((1 + L * pi) * w)[None, :])
        context.sub_((((alpha * T + kappa - alpha) * cnt + (1 + L * pi) * n_all * w) / fV)[None, :])
        context.div_(n_all * T)
        bigram_dense = bigram.dense() if "interchangeability" in keep or "bigram" in keep else None
        self.interchangeability = bigram.transposed_left(bigram_dense) if "interchangeability" in keep else None
        value_map_t = bigram.left(context)                           # B̄ₘΦ̄ₘ
        source_t = context.clone() if self.identity_source else bigram.transposed_left(value_map_t)  # Gᵀ
        self.bigram = bigram_dense if "bigram" in keep else None
        del bigram_dense
        self.context = context if "context" in keep else None
        del context
        self.value_map = value_map_t.T.contiguous() if "value_map" in keep else None
        del value_map_t
        self.source_flat = self._flat_pairs()
        self.source_flat[:-1].view(V, V).copy_(source_t)
        self.attention_source = source_t.T
        source_uniform = source_t.sum(0) / fV                        # ḡ = G1/V
        self.source_uniform = torch.cat([source_uniform, source_uniform.new_zeros(1)])
        # ω_j = w·G r_j for a query whose clean token is j (spare last slot: outside the set, r = −1/V)
        w_uniform = float(w @ source_uniform)
        self.omega = torch.cat([source_t @ w - w_uniform, source_t.new_full((1,), -w_uniform)])
        self.source_total = source_t.T @ residual_total              # Σ_t g_t = G Σ_t r_t
        # −(α/T) diag(w) Σ_t g_t ĥ_tᵀ, with Σ_t g_t ĥ_tᵀ = G(Σ h hᵀ − diag(cnt)) − (T−1) ḡ cntᵀ (ĥ_t = h − e_t):
        # G Σ h hᵀ on the rows where w ≠ 0, either once with the co-occurrence counts (dense or sparse), or
        # streamed in pass 2 as Σ_chunks (G H_cᵀ) H_c with the chunk's histograms H_c (dense or sparse), whichever
        # costs fewer multiply-adds (the sparse ones weighed by the throughput gap of _uses_sparse)
        self.key_rows = torch.nonzero(w).view(-1)
        self.G_rows = source_t.T[self.key_rows]                      # the rows of G where w ≠ 0
        n_sequences, nnz = n_all / T, int(torch.count_nonzero(cooccurrence))
        costs = {"once": min(V * V, nnz * (16 if self.device.type == "cpu" else 256)),
                 "stream_dense": 2 * n_sequences * V,
                 "stream_sparse": 2 * float(self.distinct) * (16 if self.device.type == "cpu" else 256)}
        self.key_mode = _cheapest(costs)
        if self.key_mode == "once":
            if _uses_sparse(nnz, V, self.device):
                with warnings.catch_warnings():   # "sparse CSR support is in beta": the product used here is tested
                    warnings.simplefilter("ignore", UserWarning)
                    self.key_product = (cooccurrence.to_sparse_csr() @ self.G_rows.T.contiguous()).T  # symmetric
            else:
                self.key_product = self.G_rows @ cooccurrence
        else:
            self.key_product = self.G_rows.new_zeros(self.G_rows.shape)
        del cooccurrence
        self.cnt = cnt
        self.attention_sum = self._flat_pairs()                      # pair scatter at (x_t, x_s)
        self.key_sum = torch.zeros(V + 1, dtype=self.dtype, device=self.device)     # ⊗ w on the left
        self.query_sum = torch.zeros(V + 1, dtype=self.dtype, device=self.device)   # ⊗ w on the right
        self.diagonal_sum = torch.zeros(V + 1, dtype=self.dtype, device=self.device)
        self.scalar_sums = torch.zeros(2, dtype=self.dtype, device=self.device)     # Σ_t b_t, Σ_t s_t
        self.position_sum = torch.zeros(2 * T - 1, dtype=self.dtype, device=self.device)
        self.n_second = torch.zeros((), dtype=torch.float64, device=self.device)

    def add_second_pass(self, x, y=None) -> None:
        if self.attention_source is None:
            raise RuntimeError("call end_first_pass() before the second pass")
        x, _, outside = self._prepare(x, x)
        (N, T), V = x.shape, self.V
        pi, kappa, alpha, L = self.pi, self.kappa, self.alpha, T - 1
        self.n_second += x.numel()
        queries, keys = x[:, :, None].expand(-1, T, T), x[:, None, :].expand(-1, T, T)
        pairs = self._pair_index(queries, keys, outside)
        key_tokens = self._token_index(keys, outside)
        # M[t,s] = g_t[x_s] = G[x_s, x_t] − ḡ[x_s], every ordered pair of the clean sequence
        M = torch.index_select(self.source_flat, 0, pairs)
        M = M.sub_(torch.index_select(self.source_uniform, 0, key_tokens)).view(N, T, T)
        own = M.diagonal(dim1=1, dim2=2).clone()                      # g_t[x_t] (0 outside the set)
        eta = M.sum(2)                                               # h·g_t
        omega = torch.index_select(self.omega, 0, self._token_index(x, outside)).view(N, T)  # w·g_t
        s = alpha * (eta - own) + L * pi * omega                     # m_t·g_t, m_t = E Σ_{s≠t} x̃_s
        nu = kappa * own + omega                                     # q_t·g_t
        # p̄ₘ: E[dS[t,s]] = (π/T)(E g_t[x̃_s] − (ν_t + s_t)/T)
        expected_key = alpha * M + (pi * omega)[:, :, None]
        expected_key.diagonal(dim1=1, dim2=2).copy_(nu)
        expected_key.sub_(((nu + s) / T)[:, :, None])
        self.position_sum.index_add_(0, relative_position_index(T, self.device, causal=False).view(-1), expected_key.sum(0).view(-1))
        del expected_key
        a = (alpha / T) * (pi * omega - s)
        b = (pi / T) * (alpha * (eta - own) + L * pi * omega - L * s)
        c1 = alpha * (1.0 - (1.0 - alpha) / T)
        # R-part over pairs s ≠ t: c1 g_t[x_s] + a_t, scattered at (x_t, x_s) (times κ) and at x_s (⊗ w)
        pair_weight = M.mul_(c1).add_(a[:, :, None])
        pair_weight.diagonal(dim1=1, dim2=2).zero_()
        self.key_sum.index_add_(0, key_tokens, pair_weight.view(-1))
        pair_weight.mul_(kappa).sub_(((kappa * alpha / T) * own)[:, :, None])
        pair_weight.diagonal(dim1=1, dim2=2).zero_()
        self.attention_sum.index_add_(0, pairs, pair_weight.view(-1))
        query_tokens = self._token_index(x, outside)
        self.query_sum.index_add_(0, query_tokens, (kappa * b - (kappa * L * pi / T) * own).view(-1))
        self.diagonal_sum.index_add_(0, query_tokens, (kappa * ((1.0 - 1.0 / T) * own - s / T)).view(-1))
        self.scalar_sums += torch.stack([b.sum(), s.sum()])
        if self.key_mode != "once":                                  # Σ_i (G h_i) h_iᵀ over this chunk
            H = torch.zeros(N, V + 1, dtype=self.dtype, device=self.device)
            H.view(-1).index_add_(0, (torch.arange(N, device=self.device)[:, None] * (V + 1)
                                      + query_tokens.view(N, T)).view(-1),
                                  torch.ones(N * T, dtype=self.dtype, device=self.device))
            H = H[:, :-1]
            if self.key_mode == "stream_dense":
                self.key_product.addmm_((H @ self.G_rows.T).T, H)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    Y = H.to_sparse_csr() @ self.G_rows.T.contiguous()
                    self.key_product.add_((H.T.to_sparse_csr() @ Y).T)

    def finish(self, all_reduce=None) -> CorpusStatistics:
        if all_reduce is not None:
            for t in (self.n_second, self.attention_sum, self.key_sum, self.query_sum, self.diagonal_sum,
                      self.scalar_sums, self.position_sum) + ((self.key_product,) if self.key_mode != "once" else ()):
                all_reduce(t)
        if float(self.n_second) != float(self.n):
            raise RuntimeError(f"the two passes saw different data ({int(self.n)} vs {int(self.n_second)} positions)")
        V, T, n_all = self.V, self.seq_len, float(self.n)
        pi, kappa, L, w, cnt = self.pi, self.kappa, T - 1, self.w, self.cnt
        total_b, total_s = (float(v) for v in self.scalar_sums)
        g_total = self.source_total
        Q = self.attention_sum[:-1].view(V, V)
        self.attention_sum = None
        # κ Lπ(1−1/T) Σ_t e_t (g_t ⊙ w)ᵀ: row a is cnt[a] (G[:, a] − ḡ) ⊙ w
        Q.add_((kappa * L * pi * (1.0 - 1.0 / T)) * cnt[:, None]
               * (self.attention_source.T - self.source_uniform[None, :-1]) * w[None, :])
        Q.add_(self.query_sum[:-1, None] * w[None, :])
        Q.add_(w[:, None] * (self.key_sum[:-1] + (L * pi * (1.0 - 1.0 / T)) * g_total * w + total_b * w)[None, :])
        Q.sub_(((L * pi / T) * w * g_total)[:, None] * w[None, :])
        Q.diagonal().add_(self.diagonal_sum[:-1] + (1.0 - 1.0 / T) * w * g_total - (total_s / T) * w)
        rows, product = self.key_rows, self.key_product
        product.sub_(self.G_rows * cnt[None, :]).sub_(L * self.source_uniform[rows][:, None] * cnt[None, :])
        Q.index_add_(0, rows, product.mul_(-(self.alpha / T) * w[rows][:, None]))
        scale = 1.0 / (T * n_all)                                    # (π/T) / E[n], E[n] = π NT
        Q.mul_(scale)
        kept = lambda name, value: value if name in self.keep else None
        return CorpusStatistics(
            bigram=self.bigram, context=self.context, interchangeability=self.interchangeability,
            value_map=self.value_map, attention_source=kept("attention_source", self.attention_source),
            attention_map=kept("attention_map", Q), position_map=kept("position_map", self.position_sum * scale),
            n_positions=pi * n_all, input_frequency=kept("input_frequency", self.input_frequency))


def expected_masked_statistics(x: torch.Tensor, scheme: MaskingScheme, vocab_size: int, variant: str = "residual",
                               full_vocab_size: Optional[int] = None, chunk_size: int = 256, progress: bool = False,
                               keep: Optional[Iterable[str]] = None, all_reduce=None) -> CorpusStatistics:
    """The statistics of the expected masked objective over corrupt(x, scheme) of clean sequences x [N, T]
    (targets = x); n_positions = E[n] = πNT (a float).  `all_reduce` (a sum over processes, as
    compute_statistics's): each process passes its shard of the sequences."""
    acc = ExpectedMaskedStatisticsAccumulator(vocab_size, scheme, full_vocab_size, variant, keep=keep)
    return two_passes(acc, _chunks(chunk_size, x), all_reduce, progress=progress)
