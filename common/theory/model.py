"""The attention-only transformer of docs/theory.md §1, and its masked-language-model variants (§16).

    h⁰ = X (one-hot rows, T × V)
    S^l = h^{l-1} W^l (h^{l-1})ᵀ + DM(P^l) + causal mask
    h^l = h^{l-1} + softmax_rows(S^l) h^{l-1} V^l
    logits = h^L W_O

No embedding, no MLP, no LayerNorm: every weight lives in token space (V × V), which is what lets
its early training be written in closed form from corpus statistics (common/theory/leading_terms.py).
W[a, b] couples a *query* token a (row) with a *key* token b (column).

The variants of docs/theory.md §16 (the defaults are the model above, unchanged):
    causal=False        attention over all positions, no mask; P holds one bias per signed offset
                        t − s ∈ {−(T−1) … T−1}: DM(P)[t, s] = P[t − s + T − 1] (2T − 1 entries)
    residual=False      h^l = softmax_rows(S^l) h^{l-1} V^l
    output="identity"   logits = h^L: W_O is frozen to the identity, so it is no parameter at all
                        (with residual=False: Li, Li & Risteski 2023's model)
`loss(x, y, selected)` averages the cross-entropy over the selected positions only (masked LM).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


OUTPUTS = ("trained", "identity")   # logits = h^L W_O with W_O trained, or logits = h^L (W_O frozen to I)


def relative_position_index(seq_len: int, device=None, causal: bool = True) -> torch.Tensor:
    """[T, T] index into P: t − s for s ≤ t (0 above the diagonal, which the causal mask hides anyway),
    or, without the causal mask, the signed offset shifted to t − s + T − 1 ∈ [0, 2T − 1).

    Precomputed once so that DM(P) is a single gather P[index] rather than a loop over diagonals.
    Shorter sequences use its top-left [T', T'] block, which keeps the offsets of the full length.
    """
    t = torch.arange(seq_len, device=device)
    offset = t[:, None] - t[None, :]
    return offset.clamp_min(0) if causal else offset + (seq_len - 1)


def position_bias_size(seq_len: int, causal: bool = True) -> int:
    """The number of entries of P: one per distance t − s ≥ 0, or one per signed offset without the mask."""
    return seq_len if causal else 2 * seq_len - 1


class AttentionLayer(nn.Module):
    """One attention layer: `W` (query × key), `V` (value map), `P` (one bias per relative distance)."""

    def __init__(self, vocab_size: int, seq_len: int, init_std: float = 0.0, causal: bool = True,
                 residual: bool = True):
        super().__init__()
        self.residual = residual
        self.W = nn.Parameter(torch.randn(vocab_size, vocab_size) * init_std)
        self.V = nn.Parameter(torch.randn(vocab_size, vocab_size) * init_std)
        self.P = nn.Parameter(torch.randn(position_bias_size(seq_len, causal)) * init_std)

    def attention_weights(self, scores: torch.Tensor, position_index: torch.Tensor,
                          causal) -> torch.Tensor:
        """softmax over the keys of scores + DM(P), masked above the diagonal unless `causal` is None."""
        T = scores.shape[-1]
        scores = scores + self.P[position_index[:T, :T]]
        if causal is not None:
            scores = scores.masked_fill(~causal[:T, :T], float("-inf"))
        return torch.softmax(scores, dim=-1)

    def forward_tokens(self, tokens, position_index, causal, record=None):
        """First layer: h⁰ is one-hot, so h⁰W = W[tokens] and h⁰W(h⁰)ᵀ = W[tokens_t, tokens_s] (gathers).
        `record`: a list that receives the attention pattern (analysis only)."""
        scores = self.W[tokens[:, :, None], tokens[:, None, :]]
        attn = self.attention_weights(scores, position_index, causal)
        if record is not None:
            record.append(attn)
        h = attn @ self.V[tokens]
        if not self.residual:
            return h
        # add the one-hot residual in place of materialising X and adding it
        return h.scatter_add(-1, tokens[..., None], torch.ones_like(h[..., :1]))

    def forward(self, h, position_index, causal, record=None):
        scores = (h @ self.W) @ h.transpose(1, 2)
        attn = self.attention_weights(scores, position_index, causal)
        if record is not None:
            record.append(attn)
        out = attn @ (h @ self.V)
        return h + out if self.residual else out


class AttentionOnlyTransformer(nn.Module):
    """L-layer attention-only transformer on one-hot tokens (docs/theory.md §1). Zero-initialised by default.
    `causal`, `residual`, `output`: the variants of docs/theory.md §16 (module docstring)."""

    def __init__(self, vocab_size: int, seq_len: int, n_layers: int, init_std: float = 0.0,
                 causal: bool = True, residual: bool = True, output: str = "trained"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS} (got {output!r})")
        if output == "identity" and n_layers < 1:
            raise ValueError("output='identity' needs at least one layer (the logits are the last layer's output)")
        self.vocab_size, self.seq_len, self.n_layers = vocab_size, seq_len, n_layers
        self.is_causal, self.residual, self.output = bool(causal), bool(residual), output
        self.layers = nn.ModuleList(AttentionLayer(vocab_size, seq_len, init_std, causal, residual)
                                    for _ in range(n_layers))
        # W_O frozen to the identity is no parameter: logits = h^L (no V×V buffer either)
        self.W_O = nn.Parameter(torch.randn(vocab_size, vocab_size) * init_std) if output == "trained" else None
        self.register_buffer("position_index", relative_position_index(seq_len, causal=causal), persistent=False)
        # the causal mask, or None: attention over all positions
        self.register_buffer("causal", torch.ones(seq_len, seq_len, dtype=torch.bool).tril() if causal else None,
                             persistent=False)

    def forward(self, tokens: torch.Tensor, record=None) -> torch.Tensor:
        """tokens: LongTensor [B, T] (T ≤ seq_len) → logits [B, T, V]. `record`: a list that receives
        each layer's attention pattern [B, T, T] (see `attention_patterns`)."""
        if tokens.shape[-1] > self.seq_len:
            raise ValueError(f"sequence length {tokens.shape[-1]} exceeds the model's seq_len {self.seq_len}")
        if not self.layers:
            return self.W_O[tokens]
        h = self.layers[0].forward_tokens(tokens, self.position_index, self.causal, record)
        for layer in self.layers[1:]:
            h = layer(h, self.position_index, self.causal, record)
        return h if self.W_O is None else h @ self.W_O

    @torch.no_grad()
    def attention_patterns(self, tokens: torch.Tensor) -> list:
        """The post-softmax attention A^l [B, T, T] of every layer l (rows: query positions t,
        columns: key positions s ≤ t, or every s without the causal mask) — for analysis; training
        uses `forward`."""
        record = []
        self.forward(tokens, record)
        return record

    def loss(self, x: torch.Tensor, y: torch.Tensor, selected=None) -> torch.Tensor:
        """Mean cross-entropy over every (sequence, position), or over the positions where the boolean
        `selected` [B, T] is true (masked language modelling: the loss positions)."""
        logits = self.forward(x)
        if selected is None:
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if selected.shape != y.shape:
            raise ValueError(f"selected must have the shape of y {tuple(y.shape)} (got {tuple(selected.shape)})")
        return F.cross_entropy(logits[selected], y[selected])

    def config(self) -> dict:
        """The constructor's arguments (without init_std): AttentionOnlyTransformer(**config) rebuilds
        the architecture; a config without the variant keys (older runs) gives the causal model."""
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len, "n_layers": self.n_layers,
                "causal": self.is_causal, "residual": self.residual, "output": self.output}
