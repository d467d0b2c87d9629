"""One adapter per family of checkpointed LM (docs/theory.md §12; BERT's masked LM: §17): where each family keeps what the
comparison of docs/theory.md §6 reads, kept apart from the generic rule written once below.

The general rule (docs/theory.md §12).  For tokens alone at position 0 (rotary embeddings are the identity
there) a layer's attention score between a query token a and a key token b, head h, is
    S_h[a, b] = q_h(a) · k_h(b),
with q_h(a), k_h(a) what the attention module itself computes for token a, before rotary, with the input
norm's per-token scale division left out (as the release does: its bilinear form H̃ M H̃ᵀ is the logits
times σ_a σ_b) and everything else kept — the norm's γ and β, the projections' biases, OLMo v1's
clip_qkv, a QK-norm's per-token rescaling (OLMo-2, OLMo-3, Qwen3).  So
    q_h(a) = σ_a · f_q( (x̂_a W_Q,h + b_Q,h) ),  x̂_a = the normalised input, σ_a its scale,
f_q the clip and the QK-norm (identity when absent); without them q_h(a) = H̃_a W'_Q,h + σ_a b'_Q,h, with
W' = the projection with γ folded in (and centred over d_model under a mean-subtracting norm) and
b' = b + β W.  Everything the comparison needs is these per-token vectors: the mean-over-heads score is
[q_1 … q_H]/H · [k_1 … k_H]ᵀ, a product of an n × (H·size) and a size n × (H·size) factor, so no n × n
(or V × V) matrix is formed.  Key heads are expanded to one per query head (grouped-query attention:
query head h reads key head h // (n_heads / n_kv_heads)).

Each adapter states only where things are:
  - the weight layout: the per-head query and key maps in the orientation q = x W + b,
    W [heads, d_model, head_size] (fused or separate projections, Conv1D [in, out] or Linear [out, in]);
  - the norm before attention: LayerNorm (γ, β; centre), RMSNorm (γ; no centring, H̃ = H_pre),
    parameter-free LayerNorm (centre only), or none (OLMo-2, OLMo-3: the attention reads the raw residual);
  - a QK-norm: RMSNorm over the whole query/key projection (OLMo-2, OLMo-3) or over each head (Qwen3);
  - where the representations are read (forward hooks): the residual stream entering each layer (H_pre),
    the attention branch's contribution to the residual (H_mid = H_pre + that; OLMo-2's branch ends in
    its post-attention norm) and the layer's output (H_post);
  - what position 0 adds to the token embedding (nothing with rotary embeddings, wpe[0] for GPT-2);
  - the model class of its checkpoints (a causal LM, or BERT's masked LM) and its training objective.

Families: GPTNeoX (Pythia), GPT-2, Llama (and Mistral), Qwen2, Qwen3, OLMo v1, OLMo-2, OLMo-3, BERT
(MultiBERTs; masked LM).  Any other `model_type`: one UserError line naming these.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from common.io import UserError


@dataclass
class QueryKeyWeights:
    """Folded per-head query/key maps of one layer: q_h = x̂ W_Q[h] + b_Q[h], k_h = x̂ W_K[h] + b_K[h], with
    x̂ = (x − mean x)/σ(x) (LayerNorm), x/rms(x) (RMSNorm) or x (no norm).  W_K holds the key head each query
    head reads (grouped-query attention expanded).  `centred`: the norm subtracts the mean, so the weights
    are centred over d_model and H̃ = H_pre centred per token; otherwise H̃ = H_pre."""
    W_Q: torch.Tensor  # [heads, d_model, head_size]
    W_K: torch.Tensor  # [heads, d_model, head_size]
    b_Q: torch.Tensor  # [heads, head_size]
    b_K: torch.Tensor  # [heads, head_size]
    centred: bool

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    def head_matrix(self, head: int) -> torch.Tensor:
        """W_Q^h W_K^{g(h)}ᵀ (d_model × d_model): the bilinear part of one head's scores."""
        return self.W_Q[head] @ self.W_K[head].T

    def mean_matrix(self) -> torch.Tensor:
        """M_l = mean over heads of W_Q^h W_K^{g(h)}ᵀ (d_model × d_model)."""
        return torch.einsum("hdk,hek->de", self.W_Q, self.W_K) / self.n_heads


@dataclass
class QueryKeyVectors:
    """Per-token query and key vectors of one layer (docs/theory.md §12, general rule), key heads expanded:
    head h's scores over the tokens are queries[h] @ keys[h]ᵀ."""
    queries: torch.Tensor  # [heads, n, head_size]
    keys: torch.Tensor     # [heads, n, head_size]

    @property
    def n_heads(self) -> int:
        return self.queries.shape[0]

    def head(self, head: int):
        """(query factor, key factor) of one head's n × n scores."""
        return self.queries[head], self.keys[head]

    def mean(self):
        """(query factor, key factor) of the mean over heads: [q_1 … q_H]/H and [k_1 … k_H], n × (H·size)."""
        flat = lambda v: v.transpose(0, 1).reshape(v.shape[1], -1)
        return flat(self.queries) / self.n_heads, flat(self.keys)


@dataclass
class QueryKeyNorm:
    """An RMSNorm on the query and key projections: over the whole projection (all heads together) or
    over each head's head_size dimensions."""
    gamma_q: torch.Tensor
    gamma_k: torch.Tensor
    eps: float
    per_head: bool


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


def rms_normalise(v: torch.Tensor, gamma: torch.Tensor, eps: float, dims) -> torch.Tensor:
    """v / (mean of v² over `dims` + ε)^{1/2} ∘ γ (γ broadcast over those dims)."""
    return v * (v.square().mean(dim=dims, keepdim=True) + eps).rsqrt() * gamma


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
    qk_norm = None              # an RMSNorm on queries and keys over each "head" or the whole "projection"
    position_zero = "nothing: rotary embeddings are the identity at position 0"
    model_class = "AutoModelForCausalLM"   # the transformers auto class of the family's checkpoints
    objective = "causal"        # causal (next token; docs/theory.md §6) or masked (docs/theory.md §16, §17)
    branch_ends_in_residual = False   # the attention branch's output is the residual stream itself (post-LN)
    single_token_inputs = {"use_cache": False}   # what the base model is called with besides the tokens

    # --- layout (per family)
    def base(self, model):
        raise NotImplementedError

    def layers(self, model):
        raise NotImplementedError

    def attention(self, layer):
        raise NotImplementedError

    def attention_branch(self, layer):
        """The module whose output is the attention's contribution to the residual stream."""
        return self.attention(layer)

    def input_norm(self, layer):
        """The norm the attention reads the residual through (None: it reads the raw residual)."""
        raise NotImplementedError

    def norm_parameters(self, layer):
        """(γ, β) of the norm before attention (None for an absent one)."""
        norm = self.input_norm(layer)
        return getattr(norm, "weight", None), getattr(norm, "bias", None)

    def norm_eps(self, layer) -> float:
        norm = self.input_norm(layer)
        return float(getattr(norm, "eps", None) or getattr(norm, "variance_epsilon"))

    def query_key_norm(self, layer, dtype) -> Optional[QueryKeyNorm]:
        """The attention module's `q_norm`, `k_norm` when the family has them (`qk_norm`)."""
        if self.qk_norm is None:
            return None
        attention = self.attention(layer)
        return QueryKeyNorm(attention.q_norm.weight.to(dtype), attention.k_norm.weight.to(dtype),
                            float(attention.q_norm.variance_epsilon), per_head=self.qk_norm == "head")

    def clip(self, config) -> Optional[float]:
        return None

    def raw_query_key(self, layer, dtype):
        """(W_Q [heads, d, size], b_Q, W_K [kv_heads, d, size], b_K) before the fold; biases may be None."""
        raise NotImplementedError

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        raise NotImplementedError

    def training_tokenizer(self, texts, vocab_size: int):
        """The tokenizer train_neox_checkpoints.py trains for this family: a BPE with an end-of-text token."""
        from common.corpus.tokenize import causal_lm_tokenizer

        return causal_lm_tokenizer(texts, vocab_size)

    # --- generic
    @torch.no_grad()
    def _folded(self, model, index: int, dtype):
        layer = self.layers(model)[index]
        W_Q, b_Q, W_K, b_K = self.raw_query_key(layer, dtype)
        gamma, beta = self.norm_parameters(layer)
        W_Q, b_Q = fold_norm(W_Q, b_Q, gamma, beta, self.centre)
        W_K, b_K = fold_norm(W_K, b_K, gamma, beta, self.centre)
        heads, kv_heads = W_Q.shape[0], W_K.shape[0]
        if heads % kv_heads:
            raise UserError(f"{heads} query heads cannot share {kv_heads} key heads evenly")
        key_head = torch.arange(heads, device=W_K.device) // (heads // kv_heads)   # g(h) = h // (heads / kv)
        return W_Q, b_Q, W_K, b_K, key_head

    @torch.no_grad()
    def folded_query_key(self, model, index: int, dtype=torch.float64) -> QueryKeyWeights:
        W_Q, b_Q, W_K, b_K, key_head = self._folded(model, index, dtype)
        return QueryKeyWeights(W_Q=W_Q, W_K=W_K[key_head], b_Q=b_Q, b_K=b_K[key_head], centred=self.centre)

    @torch.no_grad()
    def query_key_vectors(self, model, index: int, h_pre: torch.Tensor, dtype=torch.float64,
                          biases: bool = True) -> QueryKeyVectors:
        """The general rule (module docstring) for the tokens whose residual entering layer `index` is `h_pre`
        [n, d_model], computed in `dtype` (the weights folded in float64 first): by default the module's own
        vectors.  `biases=False` leaves the projections' biases (and the norm's β) out: the release's bilinear
        form H̃ W'_Q W'_Kᵀ H̃ᵀ, which the comparison uses unless --attention_bias=True (docs/theory.md §9)."""
        layer = self.layers(model)[index]
        W_Q, b_Q, W_K, b_K, key_head = self._folded(model, index, torch.float64)     # folded in float64
        W_Q, b_Q, W_K, b_K = (t.to(device=h_pre.device, dtype=dtype) for t in (W_Q, b_Q, W_K, b_K))
        h = h_pre.to(dtype)
        h = h - h.mean(dim=1, keepdim=True) if self.centre else h               # H̃
        has_norm = self.input_norm(layer) is not None
        # σ: the scale the input norm divides by (its variance is H̃'s mean square, the mean already removed)
        sigma = ((h.square().mean(dim=1, keepdim=True) + self.norm_eps(layer)).sqrt() if has_norm
                 else torch.ones(len(h), 1, dtype=dtype, device=h.device))
        clip, qk_norm = self.clip(model.config), self.query_key_norm(layer, dtype)

        def vectors(W, b, gamma):
            v = torch.einsum("nd,hdk->hnk", h, W)                                 # σ × (x̂ W')
            if biases:
                v = v + sigma[None] * b[:, None]                                   # σ × (x̂ W' + b')
            if clip is not None:
                v = torch.minimum(torch.maximum(v, -clip * sigma[None]), clip * sigma[None])
            if qk_norm is not None:   # the norm acts on the module's own projection x̂ W' + b', then σ again
                dims = (2,) if qk_norm.per_head else (0, 2)
                gamma = gamma.to(v).view(-1, 1, v.shape[2]) if not qk_norm.per_head else gamma.to(v)
                v = rms_normalise(v / sigma[None], gamma, qk_norm.eps, dims) * sigma[None]
            return v

        queries = vectors(W_Q, b_Q, None if qk_norm is None else qk_norm.gamma_q)
        keys = vectors(W_K, b_K, None if qk_norm is None else qk_norm.gamma_k)
        return QueryKeyVectors(queries=queries, keys=keys[key_head.to(keys.device)])

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

    def input_norm(self, layer):
        return layer.input_layernorm

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

    def input_norm(self, layer):
        return layer.ln_1

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
    """Llama family (LLM360 Amber, TinyLlama, SmolLM) and Mistral.  Sequential residual.  Separate q_proj,
    k_proj (nn.Linear [out, in]; biases when the config says so); grouped-query attention: query head h
    reads key head h // (n_heads / n_kv_heads).  RMSNorm (γ only, no mean subtraction): fold γ, do not
    centre, H̃ = H_pre."""
    family, model_types = "Llama", ("llama", "mistral")
    centre = False
    revision_template = "step-{N}"
    config_class = "LlamaConfig"
    config_has_head_dim = True   # the config takes head_dim (else it is hidden_size / n_heads)

    def base(self, model):
        return getattr(model, "model", model)

    def layers(self, model):
        return self.base(model).layers

    def attention(self, layer):
        return layer.self_attn

    def input_norm(self, layer):
        return layer.input_layernorm

    def raw_query_key(self, layer, dtype):
        attention = layer.self_attn
        size = attention.head_dim
        q, k = attention.q_proj, attention.k_proj
        return (*_per_head_linear(q.weight, q.bias, q.weight.shape[0] // size, dtype),
                *_per_head_linear(k.weight, k.bias, k.weight.shape[0] // size, dtype))

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        import transformers

        config_class = getattr(transformers, self.config_class)
        extra = {"head_dim": hidden_size // n_heads} if self.config_has_head_dim else {}
        return config_class(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=n_layers,
                            num_attention_heads=n_heads, num_key_value_heads=n_kv_heads or n_heads,
                            intermediate_size=4 * hidden_size, max_position_embeddings=max_seq_len,
                            tie_word_embeddings=False, bos_token_id=eos_token_id, eos_token_id=eos_token_id,
                            pad_token_id=None, **extra)


class Qwen2(Llama):
    """Qwen2: the Llama layout with biases on the query, key and value projections: the scores are an
    affine form of the residual, (H̃ W'_Q + σ b_Q)(H̃ W'_K + σ b_K)ᵀ."""
    family, model_types = "Qwen2", ("qwen2",)
    config_class = "Qwen2Config"


class Qwen3(Llama):
    """Qwen3: the Llama layout with an RMSNorm on each head's query and key (γ of size head_size) before
    rotary: each head's scores rescaled per query token and per key token."""
    family, model_types = "Qwen3", ("qwen3",)
    config_class = "Qwen3Config"
    qk_norm = "head"


class Olmo(Llama):
    """OLMo v1: the Llama layout (separate projections, sequential residual, rotary) with a LayerNorm
    without parameters (ε = 1e-5): centre, nothing to fold.  `clip_qkv`, when set, clips the projections:
    kept in the per-token vectors."""
    family, model_types = "OLMo v1", ("olmo",)
    centre = True
    revision_template = "step{N}-tokens{M}B"
    config_class = "OlmoConfig"
    config_has_head_dim = False

    def norm_parameters(self, layer):
        return None, None

    def norm_eps(self, layer) -> float:
        return 1e-5     # OlmoLayerNorm's fixed ε

    def clip(self, config):
        return getattr(config, "clip_qkv", None)


class Olmo2(Llama):
    """OLMo-2 (and OLMo-3, the same for single tokens; its sliding window does not reach past position 0):
    no norm before attention (the attention reads the raw residual, H̃ = H_pre); an RMSNorm over the whole
    query and key projections (all heads together, γ of size n_heads·head_size and n_kv_heads·head_size),
    then rotary; norms after attention and after the MLP, so the attention branch ends in
    `post_attention_layernorm` and H_mid = H_pre + that norm's output."""
    family, model_types = "OLMo-2", ("olmo2",)
    centre = False
    revision_template = "stage1-step{N}-tokens{M}B"
    config_class = "Olmo2Config"
    config_has_head_dim = False
    qk_norm = "projection"

    def attention_branch(self, layer):
        return layer.post_attention_layernorm

    def input_norm(self, layer):
        return None


class Olmo3(Olmo2):
    family, model_types = "OLMo-3", ("olmo3",)
    config_class = "Olmo3Config"


class Bert(Architecture):
    """BERT (MultiBERTs, docs/theory.md §17): a masked LM.  Word + absolute position + token-type embeddings,
    then the embedding LayerNorm; post-LN layers: H_mid = LN(H_pre + attention), H_post = LN(H_mid + MLP),
    so the attention reads the previous norm's output with no norm of its own (H̃ = H_pre, σ = 1, nothing to
    fold).  Separate `query`, `key` (nn.Linear [out, in], heads contiguous) with biases.  The attention
    branch (`attention`: self-attention, dense, then the norm over the residual sum) ends in the residual
    stream, which is H_mid.  A token alone at position 0: H_pre of layer 0 is the embedding LayerNorm of
    word + position 0 + token type 0."""
    family, model_types = "BERT", ("bert",)
    centre = False
    revision_template = "{N}"   # train_neox_checkpoints.py: {out_dir}/seed{S}-step_{N}, as MultiBERTs' -step_{N}k
    position_zero = "the position-0 and token-type-0 embeddings, through the embedding LayerNorm"
    model_class = "AutoModelForMaskedLM"
    objective = "masked"
    branch_ends_in_residual = True
    single_token_inputs = {}    # token type 0 and position 0 by default

    def base(self, model):
        return getattr(model, "bert", model)

    def layers(self, model):
        return self.base(model).encoder.layer

    def attention(self, layer):
        return layer.attention.self

    def attention_branch(self, layer):
        return layer.attention

    def input_norm(self, layer):
        return None

    def raw_query_key(self, layer, dtype):
        attention = layer.attention.self
        heads = attention.num_attention_heads
        return (*_per_head_linear(attention.query.weight, attention.query.bias, heads, dtype),
                *_per_head_linear(attention.key.weight, attention.key.bias, heads, dtype))

    def training_config(self, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len, eos_token_id):
        from transformers import BertConfig

        # BERT's own choices: GELU, 4× MLP, two token types, decoder tied to the word embeddings
        return BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=n_layers,
                          num_attention_heads=n_heads, intermediate_size=4 * hidden_size,
                          max_position_embeddings=max_seq_len, type_vocab_size=2, pad_token_id=0)

    def training_tokenizer(self, texts, vocab_size: int):
        """BERT's kind: a lower-casing WordPiece with [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0 … 4) and the template
        [CLS] $A [SEP].  Its vocabulary is counted, not trained: every character of the texts and its `##`
        continuation, then the most frequent words (ties by spelling) up to `vocab_size`, so a rarer word falls
        back to word pieces.  Not `tokenizers`' WordPieceTrainer, nor its BPE trainer with the `##` prefix:
        both give another vocabulary in every process (measured: three runs, three tokenizers), and the same
        corpus must give the same tokenizer, bit for bit (docs/theory.md §13)."""
        from collections import Counter

        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
        counts = Counter(word for text in texts
                         for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
        characters = sorted({c for word in counts for c in word})
        alphabet = characters + ["##" + c for c in characters]
        room = max(0, vocab_size - len(special) - len(alphabet))
        words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if len(w) > 1][:room]
        vocabulary = {token: i for i, token in enumerate(special + alphabet + words)}
        wordpiece = Tokenizer(models.WordPiece(vocab=vocabulary, unk_token="[UNK]"))
        wordpiece.normalizer, wordpiece.pre_tokenizer = normalizer, pre_tokenizer
        wordpiece.decoder = decoders.WordPiece()
        wordpiece.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        return PreTrainedTokenizerFast(tokenizer_object=wordpiece, pad_token="[PAD]", unk_token="[UNK]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


ARCHITECTURES = (GPTNeoX(), GPT2(), Llama(), Olmo(), Olmo2(), Olmo3(), Qwen2(), Qwen3(), Bert())
BY_MODEL_TYPE = {model_type: a for a in ARCHITECTURES for model_type in a.model_types}
BY_NAME = dict(zip(("neox", "gpt2", "llama", "olmo", "olmo2", "olmo3", "qwen2", "qwen3", "bert"), ARCHITECTURES))
SUPPORTED = ", ".join(f"{a.family} (model_type {'/'.join(a.model_types)})" for a in ARCHITECTURES)


def architecture_for(config, what: str = "the checkpoint") -> Architecture:
    """The adapter of a transformers config; one UserError line for every other family."""
    model_type = getattr(config, "model_type", None)
    if model_type not in BY_MODEL_TYPE:
        raise UserError(f"{what} is a {model_type!r} model; supported families: {SUPPORTED}")
    return BY_MODEL_TYPE[model_type]


def shape_of(config) -> dict:
    """What revisions of one run must share: family, vocabulary and the attention geometry."""
    heads = config.num_attention_heads
    return {"model_type": config.model_type, "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers, "num_attention_heads": heads,
            "num_key_value_heads": getattr(config, "num_key_value_heads", None) or heads}
