"""Path-exact leading terms (docs/theory.md §10): the leading-order dynamics driven by the batches
actually trained on, tracked step by step beside the real weights.

From zero, at SGD step k (learning rate η) with the §2 statistics B̄_k, Φ̄_k of that step's batch:

    W_O(k+1) = W_O(k) + η B̄_k
    V(k+1)   = V(k)   + η Φ̄_kᵀ W_O(k)ᵀ                   (the same for every layer)
    W(k+1)   = W(k)   + η Q̄_k[Ḡ = V(k) W_O(k)]            (§2's Q̄ on batch k, with Ḡ replaced)
    P(k+1)   = P(k)   + η p̄_k[Ḡ = V(k) W_O(k)]

With every batch the whole corpus this is exactly §3's prediction (common/theory/leading_terms.py); with
minibatches it removes the batch-sampling noise from the comparison, so what is left of the relative
error is the higher-order terms alone.

Cost per step, with no V×V×V product and no V×V batch statistic: with R_t = r_t W_O(k)ᵀ = W_O(k)ᵀ[y_t]
− (1/V) W_O(k)1 (a row gather, [B, T, V]),
    Φ̄_kᵀ W_O(k)ᵀ  = (1/n) Σ_s x_sᵀ Σ_{t≥s} c_t R_t      a reverse cumulative sum over t, scattered to rows x_s
    M[t,s]        = x_s V(k) W_O(k) r_tᵀ = V(k)[x_s] · R_t   one batched [T×V]·[V×T] product per sequence
and Q̄_k, p̄_k are §2's closed-form softmax-Jacobian scatter of M (common/theory/statistics.py), so a step costs
O(B·T·V + B·T²·V + V²) — the same order as the model's own forward pass.  B̄_k is a pair-count scatter.

Masked language modelling (docs/theory.md §16): `add(x̃, y, selected)` with the corruption actually
drawn; the statistics of each step are then the masked ones of that draw (B̄ₘ,k, Φ̄ₘ,k: positions t ∈ S
only, n = |S| over the whole optimiser step), with attention over all positions when `causal=False`
(c_t = 1/T, the Jacobian J = (1/T)(I − 11ᵀ/T), p̄ indexed by t − s + T − 1).  The recursion is the same
for the residual model; in the identity variant (no residual, W_O frozen to the identity) it is the same
with W_O(k) = I held fixed:

    V(k+1) = V(k) + η Φ̄ₘ,kᵀ          W(k+1) = W(k) + η Q̄'_k[G = V(k)]         P likewise

(V's gradient at step k is −Φ̄ₘ,kᵀ up to higher order, and the attention score gradient reads the value
rows V(k)[x̃_s] through r_t directly).  With the same draw every step these equal the closed forms of
common/theory/leading_terms.py for the masked statistics of that draw (common/theory/masked_statistics.py).

Gradient accumulation and several processes: `add` every micro-batch of the optimiser step on every
process, then `apply(all_reduce)`: the raw sums are all-reduced and divided by the global number of
positions n, exactly like the averaged gradient.  The state (four tensors and the step count) goes in
a checkpoint through `state_dict` / `load_state_dict`.
"""
from typing import Iterable

import torch

from common.theory.model import position_bias_size
from common.theory.statistics import AllReduce, LowerTriangle, attention_scores_gradient
from common.theory.weight_kinds import VARIANTS


CHECKPOINT_PREFIX = "path_exact."   # the tracker's tensors in a checkpoint beside the model's


def attention_pairs(T: int, causal: bool, device, dtype) -> LowerTriangle:
    """The (query t, key s) pairs attention runs over, with c_t: the lower triangle s ≤ t (c_t = 1/(t+1)),
    or without the causal mask every pair (c_t = 1/T, `distance` the P index t − s + T − 1, `tail` the
    weight Σ_t c_t = 1 of every key position)."""
    if causal:
        return LowerTriangle.of(T, device, dtype)
    rows = torch.arange(T, device=device).repeat_interleave(T)
    cols = torch.arange(T, device=device).repeat(T)
    c = torch.full((T,), 1.0 / T, device=device, dtype=dtype)
    return LowerTriangle(rows, cols, rows - cols + (T - 1), c, c[rows], torch.ones(T, device=device, dtype=dtype))


def split_checkpoint(tensors: dict):
    """(model state, tracker state) of a checkpoint's tensors (the tracker's under CHECKPOINT_PREFIX)."""
    tracker = {k[len(CHECKPOINT_PREFIX):]: v for k, v in tensors.items() if k.startswith(CHECKPOINT_PREFIX)}
    return {k: v for k, v in tensors.items() if not k.startswith(CHECKPOINT_PREFIX)}, tracker


class PathExactTracker:
    """W_O, V, W, P of the path-exact recursion (docs/theory.md §10), in `dtype` (float64 by default).
    `causal=False`: attention over all positions (P with 2T − 1 entries); `variant`: "residual" or
    "identity" (common.theory.weight_kinds.model_variant; the identity variant has no W_O prediction)."""

    STATE = ("output_t", "value", "attention", "position", "steps")

    def __init__(self, vocab_size: int, seq_len: int, lr: float, device="cpu", dtype=torch.float64,
                 chunk: int = 64, *, causal: bool = True, variant: str = "residual"):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS} (got {variant!r})")
        self.V, self.T, self.lr, self.chunk = vocab_size, seq_len, lr, chunk
        self.causal, self.variant = bool(causal), variant
        self.device, self.dtype = torch.device(device), dtype
        V = vocab_size
        zeros = lambda *shape: torch.zeros(*shape, dtype=dtype, device=self.device)
        self.tri = attention_pairs(seq_len, self.causal, self.device, dtype)
        self.pair_flat = self.tri.rows * seq_len + self.tri.cols          # (t, s) in a flattened [T, T]
        self.position_entries = position_bias_size(seq_len, self.causal)   # entries of P
        # W_O is kept transposed ([V_out, V_in]) so that R_t = W_Oᵀ[y_t] − … is a row gather; the identity
        # variant holds it at I (then R_t = r_t), never updated
        self.output_t = zeros(V, V) if variant == "residual" else torch.eye(V, dtype=dtype, device=self.device)
        self.value, self.attention, self.position = zeros(V, V), zeros(V, V), zeros(self.position_entries)
        self.steps = torch.zeros((), dtype=torch.long, device=self.device)
        self._reset_sums()

    def _reset_sums(self) -> None:
        V, zeros = self.V, lambda *shape: torch.zeros(*shape, dtype=self.dtype, device=self.device)
        self.n = zeros(())
        self.pair_sum_t = zeros(V * V)       # (y_t, x_t) counts: B̄ᵀ's pair part
        self.input_sum = zeros(V)            # x_t counts: B̄ᵀ's uniform part
        self.value_sum, self.attention_sum = zeros(V, V), zeros(V * V)
        self.position_sum = zeros(self.position_entries)

    # -- one optimiser step ----------------------------------------------------------------------
    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor, selected=None) -> None:
        """Add one micro-batch (x, y: [B, T] token ids) of the current optimiser step; for masked
        language modelling x is the corrupted input x̃ and `selected` ([B, T] bool) the loss positions."""
        if x.shape != y.shape or x.dim() != 2 or x.shape[1] != self.T:
            raise ValueError(f"x and y must both be [B, {self.T}]; got {tuple(x.shape)} and {tuple(y.shape)}")
        if selected is not None and (selected.shape != x.shape or selected.dtype != torch.bool):
            raise ValueError(f"selected must be a boolean mask of shape {tuple(x.shape)}; "
                             f"got {selected.dtype} {tuple(selected.shape)}")
        x, y = x.to(self.device, torch.long), y.to(self.device, torch.long)
        V, tri = self.V, self.tri
        if selected is None:
            self.n += x.numel()
            loss_x, loss_y = x.reshape(-1), y.reshape(-1)
        else:
            selected = selected.to(self.device)
            self.n += selected.sum()
            loss_x, loss_y = x[selected], y[selected]
        if self.variant == "residual":
            ones = torch.ones(loss_x.numel(), dtype=self.dtype, device=self.device)
            self.pair_sum_t.index_add_(0, loss_y * V + loss_x, ones)
            self.input_sum.index_add_(0, loss_x, ones)
        uniform = self.output_t.sum(0) / V                               # (1/V) W_O 1
        for start in range(0, x.shape[0], self.chunk):
            xc, yc = x[start:start + self.chunk], y[start:start + self.chunk]
            R = torch.index_select(self.output_t, 0, yc.reshape(-1)).sub_(uniform).view(*yc.shape, V)
            if selected is not None:     # only the loss positions t ∈ S send a gradient
                R.mul_(selected[start:start + self.chunk, :, None].to(self.dtype))
            # V: Σ_{t attends s} c_t R_t scattered to the rows x_s
            weighted = R * tri.c[:, None]
            if self.causal:
                weighted = weighted.sum(1, keepdim=True) - weighted.cumsum(1) + weighted  # Σ_{t≥s} without flips
            else:
                weighted = weighted.sum(1, keepdim=True).expand_as(weighted)
            self.value_sum.index_add_(0, xc.reshape(-1), weighted.reshape(-1, V))
            # W, P: M[t,s] = V(k)[x_s] · R_t, then §2's closed-form Jacobian and scatter
            values = torch.index_select(self.value, 0, xc.reshape(-1)).view(*xc.shape, V)
            M = torch.bmm(R, values.transpose(1, 2))                      # [B, t, s]
            M = torch.index_select(M.view(M.shape[0], -1), 1, self.pair_flat)
            dS = attention_scores_gradient(M, tri)
            self.attention_sum.index_add_(0, (tri.select(xc, "rows") * V + tri.select(xc, "cols")).view(-1),
                                          dS.view(-1))
            self.position_sum.index_add_(0, tri.distance, dS.sum(0))

    @torch.no_grad()
    def apply(self, all_reduce: AllReduce = None) -> None:
        """End the optimiser step: reduce the sums across processes and advance the recursion."""
        sums = (self.n, self.pair_sum_t, self.input_sum, self.value_sum, self.attention_sum, self.position_sum)
        if all_reduce is not None:
            for t in sums:
                all_reduce(t)
        if float(self.n) == 0:
            raise RuntimeError("apply() without any add(): the step saw no data")
        V, scale = self.V, self.lr / float(self.n)
        # every update uses the state before this step (V(k), W_O(k)): the sums above were taken from it
        if self.variant == "residual":
            self.output_t.add_(self.pair_sum_t.view(V, V).sub_(self.input_sum[None, :] / V), alpha=scale)
        self.value.add_(self.value_sum, alpha=scale)
        self.attention.add_(self.attention_sum.view(V, V), alpha=scale)
        self.position.add_(self.position_sum, alpha=scale)
        self.steps += 1
        self._reset_sums()

    def step(self, micro_batches: Iterable, all_reduce: AllReduce = None) -> None:
        """`add` every (x, y) or (x̃, y, selected) of one optimiser step, then `apply`."""
        for batch in micro_batches:
            self.add(*batch)
        self.apply(all_reduce)

    # -- predictions and state -------------------------------------------------------------------
    def predictions(self) -> dict:
        """{'W_O', 'V', 'W', 'P'} → the path-exact prediction (the same V, W, P for every layer); no
        'W_O' in the identity variant (frozen, not predicted)."""
        weights = {"V": self.value, "W": self.attention, "P": self.position}
        return weights if self.variant == "identity" else {"W_O": self.output_t.T, **weights}

    def state_dict(self, prefix: str = "") -> dict:
        return {prefix + name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.STATE) - set(state)
        if missing:
            raise ValueError(f"path-exact state lacks {sorted(missing)}")
        for name in self.STATE:
            current = getattr(self, name)
            if state[name].shape != current.shape:
                raise ValueError(f"path-exact state {name} has shape {tuple(state[name].shape)}, "
                                 f"expected {tuple(current.shape)}")
            current.copy_(state[name])
        self._reset_sums()

