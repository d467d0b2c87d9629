"""The attention-only transformer of docs/theory.md §1.

    h⁰ = X (one-hot rows, T × V)
    S^l = h^{l-1} W^l (h^{l-1})ᵀ + DM(P^l) + causal mask
    h^l = h^{l-1} + softmax_rows(S^l) h^{l-1} V^l
    logits = h^L W_O

No embedding, no MLP, no LayerNorm: every weight lives in token space (V × V), which is what lets
its early training be written in closed form from corpus statistics (common/theory/leading_terms.py).
W[a, b] couples a *query* token a (row) with a *key* token b (column).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def relative_position_index(seq_len: int, device=None) -> torch.Tensor:
    """[T, T] index t − s for s ≤ t (0 above the diagonal, which the causal mask hides anyway).

    Precomputed once so that DM(P) is a single gather P[index] rather than a loop over diagonals.
    """
    t = torch.arange(seq_len, device=device)
    return (t[:, None] - t[None, :]).clamp_min(0)


class AttentionLayer(nn.Module):
    """One attention layer: `W` (query × key), `V` (value map), `P` (one bias per relative distance)."""

    def __init__(self, vocab_size: int, seq_len: int, init_std: float = 0.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(vocab_size, vocab_size) * init_std)
        self.V = nn.Parameter(torch.randn(vocab_size, vocab_size) * init_std)
        self.P = nn.Parameter(torch.randn(seq_len) * init_std)

    def attention_weights(self, scores: torch.Tensor, position_index: torch.Tensor,
                          causal: torch.Tensor) -> torch.Tensor:
        T = scores.shape[-1]
        scores = scores + self.P[position_index[:T, :T]]
        return torch.softmax(scores.masked_fill(~causal[:T, :T], float("-inf")), dim=-1)

    def forward_tokens(self, tokens, position_index, causal, record=None):
        """First layer: h⁰ is one-hot, so h⁰W = W[tokens] and h⁰W(h⁰)ᵀ = W[tokens_t, tokens_s] (gathers).
        `record`: a list that receives the attention pattern (analysis only)."""
        scores = self.W[tokens[:, :, None], tokens[:, None, :]]
        attn = self.attention_weights(scores, position_index, causal)
        if record is not None:
            record.append(attn)
        h = attn @ self.V[tokens]
        # add the one-hot residual in place of materialising X and adding it
        return h.scatter_add(-1, tokens[..., None], torch.ones_like(h[..., :1]))

    def forward(self, h, position_index, causal, record=None):
        scores = (h @ self.W) @ h.transpose(1, 2)
        attn = self.attention_weights(scores, position_index, causal)
        if record is not None:
            record.append(attn)
        return h + attn @ (h @ self.V)


class AttentionOnlyTransformer(nn.Module):
    """L-layer attention-only transformer on one-hot tokens (docs/theory.md §1). Zero-initialised by default."""

    def __init__(self, vocab_size: int, seq_len: int, n_layers: int, init_std: float = 0.0):
        super().__init__()
        self.vocab_size, self.seq_len, self.n_layers = vocab_size, seq_len, n_layers
        self.layers = nn.ModuleList(AttentionLayer(vocab_size, seq_len, init_std) for _ in range(n_layers))
        self.W_O = nn.Parameter(torch.randn(vocab_size, vocab_size) * init_std)
        self.register_buffer("position_index", relative_position_index(seq_len), persistent=False)
        self.register_buffer("causal", torch.ones(seq_len, seq_len, dtype=torch.bool).tril(),
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
        return h @ self.W_O

    @torch.no_grad()
    def attention_patterns(self, tokens: torch.Tensor) -> list:
        """The post-softmax attention A^l [B, T, T] of every layer l (rows: query positions t,
        columns: key positions s ≤ t) — for analysis; training uses `forward`."""
        record = []
        self.forward(tokens, record)
        return record

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every (sequence, position)."""
        logits = self.forward(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def config(self) -> dict:
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len, "n_layers": self.n_layers}
