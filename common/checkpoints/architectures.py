"""One adapter per family of checkpointed causal LM (docs/theory.md §12): where each family keeps what the
comparison of docs/theory.md §6 reads, kept apart from the generic fold and centring written once below.

Each adapter states
  - the weight layout: how the per-head query and key maps come out of the weights, returned in the
    orientation q = x W + b, W [heads, d_model, head_size] (fused or separate projections, Conv1D
    [in, out] or Linear [out, in]; grouped-query key heads, one per group of query heads);
  - the norm rule before attention: LayerNorm (γ, β: fold γ into W, β into the biases, centre over
    d_model), RMSNorm (γ only: fold γ, no centring, H̃ = H_pre itself), parameter-free LayerNorm
    (centre only);
  - where the representations are read: the residual stream entering each layer (H_pre), the output
    of its attention module (H_mid = H_pre + that output, the residual between attention and MLP of a
    sequential layer, the parallel-residual layer without its MLP branch) and the layer's output
    (H_post), all through forward hooks;
  - what position 0 adds to the token embedding (nothing with rotary embeddings, wpe[0] for GPT-2).

Families: GPTNeoX (Pythia), GPT-2, Llama (with grouped-query attention), OLMo v1.  OLMo-2 and any
other `model_type`: one UserError line naming these.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from common.io import UserError


@dataclass
class QueryKeyWeights:
    """Folded per-head query/key maps of one layer: q_h = x̂ W_Q[h] + b_Q[h], k_h = x̂ W_K[h] + b_K[h], with
    x̂ = (x − mean x)/σ(x) (LayerNorm) or x/rms(x) (RMSNorm).  W_K holds the key head each query head
    reads (grouped-query attention expanded).  `centred`: the norm subtracts the mean, so the weights are
    centred over d_model and H̃ = H_pre centred per token; otherwise H̃ = H_pre."""
    W_Q: torch.Tensor  # [heads, d_model, head_size]
    W_K: torch.Tensor  # [heads, d_model, head_size]
    b_Q: torch.Tensor  # [heads, head_size]
    b_K: torch.Tensor  # [heads, head_size]
    centred: bool

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    def head_matrix(self, head: int) -> torch.Tensor:
        """W_Q^h W_K^{g(h)}ᵀ (d_model × d_model)."""
        return self.W_Q[head] @ self.W_K[head].T

    def mean_matrix(self) -> torch.Tensor:
        """M_l = mean over heads of W_Q^h W_K^{g(h)}ᵀ (d_model × d_model)."""
        return torch.einsum("hdk,hek->de", self.W_Q, self.W_K) / self.n_heads


def fold_norm(W: torch.Tensor, b: Optional[torch.Tensor], gamma, beta, centre: bool):
    """The norm's affine part folded into a projection q = norm(x) W + b (W [heads, d_model, size]):
    norm(x) = γ∘x̂ + β gives q = x̂ (γ∘W) + (b + β W); with centring, (x − mean x) W = x (W − mean_d W)."""
    b = torch.zeros(W.shape[0], W.shape[2], dtype=W.dtype, device=W.device) if b is None else b
    if beta is not None:
        b = b + torch.einsum("d,hdk->hk", beta.to(W), W)
    if gamma is not None:
        W = gamma.to(W)[None, :, None] * W
    if centre:
        W = W - W.mean(dim=1, keepdim=True)
    return W, b


def _per_head_linear(weight, bias, heads, dtype):
    """nn.Linear [heads·size, d_model] (+ bias) → W [heads, d_model, size], b [heads, size]."""
    weight = weight.to(dtype)
    W = weight.view(heads, -1, weight.shape[1]).transpose(1, 2)
    return W, (None if bias is None else bias.to(dtype).reshape(heads, -1))


class Architecture:
    """The generic part; a family overrides the layout methods and the class attributes."""
    family = ""                 # the name users know
    model_types = ()            # transformers `model_type`
    centre = True               # the norm before attention subtracts the mean
    revision_template = "step{N}"  # how train_neox_checkpoints.py names this family's revisions
    position_zero = "nothing: rotary embeddings are the identity at position 0"

    # --- layout (per family)
    def base(self, model):
        raise NotImplementedError

    def layers(self, model):
        raise NotImplementedError

    def attention(self, layer):
        raise NotImplementedError

    def norm_parameters(self, layer):
        """(γ, β) of the norm before attention (None for an absent one)."""
        raise NotImplementedError

    def raw_query_key(self, layer, dtype):
        """(W_Q [heads, d, size], b_Q, W_K [kv_heads, d, size], b_K) before the fold; biases may be None."""
        raise NotImplementedError

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        raise NotImplementedError

    # --- generic
    @torch.no_grad()
    def folded_query_key(self, model, index: int, dtype=torch.float64) -> QueryKeyWeights:
        layer = self.layers(model)[index]
        W_Q, b_Q, W_K, b_K = self.raw_query_key(layer, dtype)
        gamma, beta = self.norm_parameters(layer)
        W_Q, b_Q = fold_norm(W_Q, b_Q, gamma, beta, self.centre)
        W_K, b_K = fold_norm(W_K, b_K, gamma, beta, self.centre)
        heads, kv_heads = W_Q.shape[0], W_K.shape[0]
        if heads % kv_heads:
            raise UserError(f"{heads} query heads cannot share {kv_heads} key heads evenly")
        key_head = torch.arange(heads, device=W_K.device) // (heads // kv_heads)   # g(h) = h // (heads / kv)
        return QueryKeyWeights(W_Q=W_Q, W_K=W_K[key_head], b_Q=b_Q, b_K=b_K[key_head], centred=self.centre)

    def revision_name(self, step: int, tokens: int) -> str:
        return self.revision_template.format(N=step, M=round(tokens / 1e9))


class GPTNeoX(Architecture):
    """Pythia.  Parallel residual: H_post = H_pre + attention(LN₁ H_pre) + MLP(LN₂ H_pre).  The fused
    `query_key_value` (nn.Linear, [3·d_model, d_model]) holds its output rows head by head as
    [head, (q, k, v), head_size].  LayerNorm (γ, β)."""
    family, model_types = "GPTNeoX (Pythia)", ("gpt_neox",)

    def base(self, model):
        return getattr(model, "gpt_neox", model)

    def layers(self, model):
        return self.base(model).layers

    def attention(self, layer):
        return layer.attention

    def norm_parameters(self, layer):
        return layer.input_layernorm.weight, layer.input_layernorm.bias

    def raw_query_key(self, layer, dtype):
        fused = layer.attention.query_key_value
        size = layer.attention.head_size
        heads = fused.weight.shape[1] // size
        W, b = _per_head_linear(fused.weight, fused.bias, heads, dtype)      # [heads, d, 3·size]
        W, b = W.reshape(heads, W.shape[1], 3, size), (None if b is None else b.reshape(heads, 3, size))
        pick = lambda part: (W[:, :, part], None if b is None else b[:, part])
        return (*pick(0), *pick(1))

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        from transformers import GPTNeoXConfig

        return GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=n_layers,
                             num_attention_heads=n_heads, intermediate_size=4 * hidden_size,
                             max_position_embeddings=max_seq_len, rotary_pct=0.25, use_parallel_residual=True,
                             tie_word_embeddings=False, bos_token_id=eos_token_id, eos_token_id=eos_token_id)


class GPT2(Architecture):
    """Stanford CRFM GPT-2.  Sequential residual: H_mid is the residual between attention and MLP.
    `c_attn` is a Conv1D ([in, out] = [d_model, 3·d_model]) whose output is [q | k | v], each split into
    heads as contiguous head_size chunks.  LayerNorm (γ, β).  Position 0 adds the learned wpe[0]: H_pre of
    layer 0 is wte[token] + wpe[0]."""
    family, model_types = "GPT-2", ("gpt2",)
    revision_template = "checkpoint-{N}"
    position_zero = "the learned position embedding wpe[0]"

    def base(self, model):
        return getattr(model, "transformer", model)

    def layers(self, model):
        return self.base(model).h

    def attention(self, layer):
        return layer.attn

    def norm_parameters(self, layer):
        return layer.ln_1.weight, layer.ln_1.bias

    def raw_query_key(self, layer, dtype):
        attention = layer.attn
        weight, bias = attention.c_attn.weight.to(dtype), attention.c_attn.bias.to(dtype)   # [d, 3d], [3d]
        d, size = weight.shape[0], attention.head_dim
        heads = attention.split_size // size

        def part(index):   # columns of q (0) or k (1), head h = columns h·size … (h+1)·size
            columns = slice(index * attention.split_size, (index + 1) * attention.split_size)
            return (weight[:, columns].reshape(d, heads, size).permute(1, 0, 2),
                    bias[columns].reshape(heads, size))
        return (*part(0), *part(1))

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        from transformers import GPT2Config

        return GPT2Config(vocab_size=vocab_size, n_embd=hidden_size, n_layer=n_layers, n_head=n_heads,
                          n_inner=4 * hidden_size, n_positions=max_seq_len, tie_word_embeddings=False,
                          bos_token_id=eos_token_id, eos_token_id=eos_token_id)


class Llama(Architecture):
    """Llama family (LLM360 Amber, TinyLlama, SmolLM).  Sequential residual.  Separate q_proj, k_proj
    (nn.Linear [out, in]); grouped-query attention: query head h reads key head h // (n_heads /
    n_kv_heads).  RMSNorm (γ only, no mean subtraction): fold γ, do not centre, H̃ = H_pre."""
    family, model_types = "Llama", ("llama",)
    centre = False
    revision_template = "step-{N}"

    def base(self, model):
        return getattr(model, "model", model)

    def layers(self, model):
        return self.base(model).layers

    def attention(self, layer):
        return layer.self_attn

    def norm_parameters(self, layer):
        return layer.input_layernorm.weight, None

    def raw_query_key(self, layer, dtype):
        attention = layer.self_attn
        size = attention.head_dim
        q, k = attention.q_proj, attention.k_proj
        return (*_per_head_linear(q.weight, q.bias, q.weight.shape[0] // size, dtype),
                *_per_head_linear(k.weight, k.bias, k.weight.shape[0] // size, dtype))

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=n_layers,
                           num_attention_heads=n_heads, num_key_value_heads=n_kv_heads or n_heads,
                           intermediate_size=4 * hidden_size, max_position_embeddings=max_seq_len,
                           tie_word_embeddings=False, bos_token_id=eos_token_id, eos_token_id=eos_token_id)


class Olmo(Llama):
    """OLMo v1: the Llama layout (separate projections, sequential residual, rotary) with a LayerNorm
    without parameters: centre, nothing to fold.  (`clip_qkv`, when set, clips queries and keys: the
    logits are bilinear only while they stay inside the clip.)"""
    family, model_types = "OLMo v1", ("olmo",)
    centre = True
    revision_template = "step{N}-tokens{M}B"

    def norm_parameters(self, layer):
        return None, None

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        from transformers import OlmoConfig

        return OlmoConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=n_layers,
                          num_attention_heads=n_heads, num_key_value_heads=n_kv_heads or n_heads,
                          intermediate_size=4 * hidden_size, max_position_embeddings=max_seq_len,
                          tie_word_embeddings=False, bos_token_id=eos_token_id, eos_token_id=eos_token_id,
                          pad_token_id=None)


ARCHITECTURES = (GPTNeoX(), GPT2(), Llama(), Olmo())
BY_MODEL_TYPE = {model_type: a for a in ARCHITECTURES for model_type in a.model_types}
BY_NAME = {"neox": ARCHITECTURES[0], "gpt2": ARCHITECTURES[1], "llama": ARCHITECTURES[2], "olmo": ARCHITECTURES[3]}
SUPPORTED = ", ".join(f"{a.family} (model_type {'/'.join(a.model_types)})" for a in ARCHITECTURES)


def architecture_for(config, what: str = "the checkpoint") -> Architecture:
    """The adapter of a transformers config; one UserError line for OLMo-2 and every other family."""
    model_type = getattr(config, "model_type", None)
    if model_type == "olmo2":
        raise UserError(f"{what} is an OLMo-2 model: its RMSNorm on the whole query and key projections makes "
                        f"the attention logits non-bilinear in the residual stream, so this comparison does not "
                        f"apply; supported families: {SUPPORTED}")
    if model_type not in BY_MODEL_TYPE:
        raise UserError(f"{what} is a {model_type!r} model; supported families: {SUPPORTED}")
    return BY_MODEL_TYPE[model_type]


def shape_of(config) -> dict:
    """What revisions of one run must share: family, vocabulary and the attention geometry."""
    heads = config.num_attention_heads
    return {"model_type": config.model_type, "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers, "num_attention_heads": heads,
            "num_key_value_heads": getattr(config, "num_key_value_heads", None) or heads}
