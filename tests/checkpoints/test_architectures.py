"""Each family's adapter against the model's own computation: the per-token query and key vectors (the
general rule of docs/theory.md §12) reproduce what the attention module computes at position 0 (captured by
a spy on its attention function, where rotary is the identity), up to the input norm's per-token scale; the
folded W_Q, W_K are their bilinear part; H_pre, H_mid, H_post equal what hooks and hidden states give.

Tolerances: the models are float64, but the representations are stored in float32 and the library's
RMSNorm and OLMo's LayerNorm compute in float32 (then cast back), so the module's own q and k carry
float32 rounding (relative ~1e-7); we allow 1e-5 of the largest entry (1e-4 where such a float32 norm
precedes the projection and its rounding is multiplied by the weights)."""
import importlib

import pytest
import torch

from common.checkpoints.architectures import BY_NAME, architecture_for, fold_norm
from common.checkpoints.loading import single_token_representations
from common.io import UserError
from conftest import VOCAB, tiny_model

FAMILIES = ("neox", "gpt2", "llama", "olmo", "olmo2", "olmo3", "qwen2", "qwen3")
MODULES = {"neox": "gpt_neox", "gpt2": "gpt2", "llama": "llama", "olmo": "olmo", "olmo2": "olmo2",
           "olmo3": "olmo3", "qwen2": "qwen2", "qwen3": "qwen3"}
FLOAT32_NORM = ("llama", "olmo", "olmo2", "olmo3", "qwen2", "qwen3")


def family_model(family, **kwargs):
    """Grouped-query attention (4 query heads over 2 key heads) wherever the family has it; OLMo v1 with a
    clip that cuts some of its queries and keys."""
    kv_heads = 0 if family in ("neox", "gpt2") else 2
    model = tiny_model(family, kv_heads=kv_heads, **kwargs)
    if family == "olmo":
        model.config.clip_qkv = 0.4
    return model


@pytest.fixture
def captured(monkeypatch):
    """{attention module: (query, key, value)} as each family's attention function receives them (after
    rotary, keys before grouped-query repetition)."""
    seen = {}
    for name in MODULES.values():
        module = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        original = module.eager_attention_forward

        def spy(attention, query, key, value, *args, original=original, **kwargs):
            seen[attention] = (query.detach().clone(), key.detach().clone(), value.detach().clone())
            return original(attention, query, key, value, *args, **kwargs)

        monkeypatch.setattr(module, "eager_attention_forward", spy)
    return seen


def input_scale(family, model, h):
    """σ: what the norm before attention divides by (1 without one: OLMo-2, OLMo-3)."""
    config = model.config
    if family in ("olmo2", "olmo3"):
        return torch.ones(len(h), 1, dtype=h.dtype)
    if family in ("llama", "qwen2", "qwen3"):
        return (h.square().mean(dim=1, keepdim=True) + config.rms_norm_eps).sqrt()
    eps = {"neox": getattr(config, "layer_norm_eps", None), "gpt2": getattr(config, "layer_norm_epsilon", None),
           "olmo": 1e-5}[family]
    centred = h - h.mean(dim=1, keepdim=True)
    return (centred.square().mean(dim=1, keepdim=True) + eps).sqrt()


@pytest.mark.parametrize("family", FAMILIES)
def test_query_key_vectors_are_the_modules_own_before_rotary(family, captured):
    model = family_model(family)
    architecture = architecture_for(model.config)
    ids = torch.arange(VOCAB)
    reps = single_token_representations(model, ids, batch_size=17)   # batches of uneven size
    with torch.no_grad():
        model(ids.view(-1, 1))                                         # captured at full batch
    tolerance = 1e-4 if family in FLOAT32_NORM else 1e-5
    clipped = 0
    for index, layer in enumerate(architecture.layers(model)):
        h_pre = reps.pre(index).double()
        vectors = architecture.query_key_vectors(model, index, h_pre)
        query, key, _ = captured[architecture.attention(layer)]
        query, key = query[:, :, 0].transpose(0, 1), key[:, :, 0].transpose(0, 1)   # [heads, n, size]
        group = vectors.n_heads // key.shape[0]
        key = key[torch.arange(vectors.n_heads) // group]                           # g(h) = h // group
        sigma = input_scale(family, model, h_pre)
        q, k = vectors.queries / sigma, vectors.keys / sigma                         # the module's own scale
        assert torch.allclose(q, query, atol=tolerance * query.abs().max(), rtol=0), (family, index)
        assert torch.allclose(k, key, atol=tolerance * key.abs().max(), rtol=0), (family, index)
        scores, expected = q @ k.transpose(1, 2), query @ key.transpose(1, 2)      # every query · every key
        assert torch.allclose(scores, expected, atol=10 * tolerance * expected.abs().max(), rtol=0)
        # the mean over heads is one product of concatenated factors
        left, right = vectors.mean()
        assert torch.allclose(left @ right.T, (vectors.queries @ vectors.keys.transpose(1, 2)).mean(0))
        if family == "olmo":
            clipped += int((query.abs() >= 0.4 - 1e-12).sum())
    assert family != "olmo" or clipped > 0                                          # the clip was exercised


@pytest.mark.parametrize("family", ["neox", "gpt2", "llama", "olmo", "qwen2"])
def test_without_biases_and_extras_the_scores_are_the_folded_bilinear_form(family):
    model = family_model(family)
    model.config.clip_qkv = None
    architecture = architecture_for(model.config)
    reps = single_token_representations(model, torch.arange(VOCAB))
    for index in range(2):
        weights = architecture.folded_query_key(model, index)
        h = reps.pre(index).double()
        h = h - h.mean(dim=1, keepdim=True) if weights.centred else h                 # H̃
        vectors = architecture.query_key_vectors(model, index, reps.pre(index), biases=False)
        left, right = vectors.mean()
        assert torch.allclose(left @ right.T, h @ weights.mean_matrix() @ h.T, atol=1e-12)
        for head in range(weights.n_heads):
            q, k = vectors.head(head)
            assert torch.allclose(q @ k.T, h @ weights.head_matrix(head) @ h.T, atol=1e-12)
        # the norm rule: centred over d_model exactly when the norm subtracts the mean
        assert weights.centred == (family in ("neox", "gpt2", "olmo"))
        spread = weights.W_Q.mean(dim=1).abs().max()
        assert (spread < 1e-12) if weights.centred else (spread > 1e-3)
        if family in ("neox", "gpt2", "qwen2"):   # the biases do change the scores (query bias · keys)
            with_bias = architecture.query_key_vectors(model, index, reps.pre(index))
            assert not torch.allclose(with_bias.mean()[0] @ with_bias.mean()[1].T, left @ right.T, atol=1e-3)


def test_qk_norm_is_a_per_token_rescaling_of_the_bilinear_form():
    # OLMo-2 (docs/theory.md §12): S_h = D_q⁻¹ H (W_Q,hᵀ diag γ_q,h)(diag γ_k,h W_K,h) Hᵀ D_k⁻¹ with
    # D_q[a] = (mean over all heads' query dimensions of (W_Q h_a)² + ε)^{1/2}
    model = family_model("olmo2")
    architecture = architecture_for(model.config)
    h = single_token_representations(model, torch.arange(VOCAB)).pre(1).double()
    attention = architecture.layers(model)[1].self_attn
    W_Q, W_K = attention.q_proj.weight.double(), attention.k_proj.weight.double()      # [out, d]
    eps = attention.q_norm.variance_epsilon
    D_q = ((h @ W_Q.T).square().mean(1) + eps).sqrt()
    D_k = ((h @ W_K.T).square().mean(1) + eps).sqrt()
    g_q, g_k = attention.q_norm.weight.double().view(4, -1), attention.k_norm.weight.double().view(2, -1)
    vectors = architecture.query_key_vectors(model, 1, h)
    for head in range(4):
        rows = slice(head * 6, head * 6 + 6)
        kv_rows = slice((head // 2) * 6, (head // 2) * 6 + 6)
        bilinear = (h @ (W_Q[rows].T * g_q[head])) @ (h @ (W_K[kv_rows].T * g_k[head // 2])).T
        q, k = vectors.head(head)
        assert torch.allclose(q @ k.T, bilinear / D_q[:, None] / D_k[None, :], atol=1e-12)
    # a per-head QK-norm (Qwen3) differs from the whole-projection one
    assert architecture.query_key_norm(architecture.layers(model)[1], torch.float64).per_head is False
    qwen3 = architecture_for(family_model("qwen3").config)
    assert qwen3.query_key_norm(qwen3.layers(family_model("qwen3"))[0], torch.float64).per_head is True


def test_grouped_query_heads_share_their_key_head():
    model = tiny_model("llama")
    weights = architecture_for(model.config).folded_query_key(model, 0)
    assert weights.n_heads == 4 and model.config.num_key_value_heads == 2
    assert torch.equal(weights.W_K[0], weights.W_K[1]) and torch.equal(weights.W_K[2], weights.W_K[3])
    assert not torch.allclose(weights.W_K[1], weights.W_K[2])
    k_proj = model.model.layers[0].self_attn.k_proj.weight.double()     # [kv_heads · size, d]
    gamma = model.model.layers[0].input_layernorm.weight.double()
    assert torch.allclose(weights.W_K[3], gamma[:, None] * k_proj[6:12].T)   # head 3 reads key head 1


def test_head_layouts_matter():
    # a wrong split of GPTNeoX's fused weight ([q|k|v] blocks instead of head-major) gives other matrices
    model = tiny_model("neox")
    weights = architecture_for(model.config).folded_query_key(model, 0)
    layer = model.gpt_neox.layers[0]
    W, gamma = layer.attention.query_key_value.weight.double(), layer.input_layernorm.weight.double()
    d = W.shape[1]
    for candidate, right in ((W[:d].view(4, 6, d)[1].T, False), (W.view(4, 3, 6, d)[1, 0].T, True)):
        candidate = gamma[:, None] * candidate
        assert torch.allclose(candidate - candidate.mean(0), weights.W_Q[1]) == right
    # GPT-2's Conv1D is [in, out]: head 1's query columns are 6 … 11 of the first d_model columns
    model = tiny_model("gpt2")
    weights = architecture_for(model.config).folded_query_key(model, 0)
    block = model.transformer.h[0]
    candidate = block.ln_1.weight.double()[:, None] * block.attn.c_attn.weight.double()[:, 6:12]
    assert torch.allclose(candidate - candidate.mean(0), weights.W_Q[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_representations_match_hidden_states_and_hooks(family, captured):
    model = family_model(family, seed=1, layers=3)
    architecture = architecture_for(model.config)
    ids = torch.tensor([3, 0, 39, 7, 7, 12])
    reps = single_token_representations(model, ids, batch_size=4)
    mid_inputs, handles = {}, []
    layers = architecture.layers(model)
    for index, layer in enumerate(layers):
        # sequential families: H_mid is the residual entering the MLP's norm (OLMo-2: the MLP itself)
        norm = getattr(layer, "ln_2", None) or (layer.mlp if family in ("olmo2", "olmo3")
                                                else layer.post_attention_layernorm)
        handles.append(norm.register_forward_pre_hook(
            lambda module, args, index=index: mid_inputs.__setitem__(index, args[0][:, 0].detach().clone())))
    with torch.no_grad():
        hidden = model(ids.view(-1, 1), output_hidden_states=True).hidden_states
    for handle in handles:
        handle.remove()
    L = model.config.num_hidden_layers
    assert len(hidden) == L + 1 and reps.n_layers == L
    for index in range(L):
        assert torch.allclose(reps.pre(index), hidden[index][:, 0].float())
    for index in range(L - 1):
        assert torch.allclose(reps.post[index], hidden[index + 1][:, 0].float())
    # the trap: the last hidden state has the final norm applied; H_post of the last layer is raw
    assert not torch.allclose(reps.post[-1], hidden[L][:, 0].float(), atol=1e-2)
    if family == "gpt2":   # position 0 adds the learned wpe[0]
        wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
        assert torch.allclose(reps.embedding, (wte[ids] + wpe[0]).float())
    with torch.no_grad():
        for index, layer in enumerate(layers):
            if family != "neox":
                assert torch.allclose(reps.mid[index], mid_inputs[index].float(), atol=1e-6)
                continue
            # parallel residual: H_mid = H_pre + dense(value) (one key at position 0), H_post − H_mid = MLP
            value = captured[layer.attention][2][:, :, 0].reshape(len(ids), -1)
            h_pre = reps.pre(index).double()
            assert torch.allclose(reps.mid[index].double(), h_pre + layer.attention.dense(value), atol=1e-5)
            mlp = layer.mlp(layer.post_attention_layernorm(h_pre))
            assert torch.allclose(reps.post[index].double() - reps.mid[index].double(), mlp, atol=1e-5)


def test_fold_norm_is_the_affine_part():
    g = torch.Generator().manual_seed(0)
    W, b = torch.randn(2, 5, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    gamma, beta = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    x_hat = (x - x.mean(1, keepdim=True)) / x.std(1, unbiased=False, keepdim=True)
    expected = torch.einsum("nd,hdk->hnk", gamma * x_hat + beta, W) + b[:, None]
    for centre in (True, False):
        folded, bias = fold_norm(W, b, gamma, beta, centre)
        # with centring, an uncentred input gives the same queries (the mean is in the weights)
        inputs = x / x.std(1, unbiased=False, keepdim=True) if centre else x_hat
        assert torch.allclose(torch.einsum("nd,hdk->hnk", inputs, folded) + bias[:, None], expected)


def test_every_family_trains_under_its_revision_naming_and_others_are_refused():
    from transformers import T5Config

    assert {a.revision_name(1000, 4e9) for a in BY_NAME.values()} >= {
        "step1000", "checkpoint-1000", "step-1000", "step1000-tokens4B", "stage1-step1000-tokens4B", "1000"}
    assert architecture_for(family_model("olmo2").config).family == "OLMo-2"
    with pytest.raises(UserError, match="'t5' model; supported families: .*Llama.*OLMo v1.*OLMo-2.*BERT") as error:
        architecture_for(T5Config())
    assert "\n" not in str(error.value)


# -- BERT (docs/theory.md §17): post-LN, no norm before attention, q/k/v biases ------------------------------
def test_bert_query_key_vectors_and_representations_are_the_modules_own(monkeypatch):
    from conftest import tiny_bert

    module = importlib.import_module("transformers.models.bert.modeling_bert")
    original, seen = module.eager_attention_forward, {}

    def spy(attention, query, key, value, *args, **kwargs):
        seen[attention] = (query.detach().clone(), key.detach().clone())
        return original(attention, query, key, value, *args, **kwargs)

    monkeypatch.setattr(module, "eager_attention_forward", spy)
    model = tiny_bert()
    architecture = architecture_for(model.config)
    assert architecture.family == "BERT" and architecture.objective == "masked" and not architecture.centre
    ids = torch.arange(VOCAB)
    reps = single_token_representations(model, ids, batch_size=17)
    with torch.no_grad():
        hidden = model.bert(ids.view(-1, 1), output_hidden_states=True).hidden_states
    embeddings = model.bert.embeddings
    with torch.no_grad():   # H_pre of layer 0 by hand: LN(word + position 0 + token type 0)
        h0 = embeddings.LayerNorm(embeddings.word_embeddings.weight + embeddings.position_embeddings.weight[0]
                                  + embeddings.token_type_embeddings.weight[0])
    assert torch.allclose(reps.embedding.double(), h0, atol=1e-5 * h0.abs().max())
    for index, layer in enumerate(architecture.layers(model)):
        h_pre = reps.pre(index).double()
        assert torch.allclose(h_pre, hidden[index][:, 0], atol=1e-5 * h_pre.abs().max())
        with torch.no_grad():   # one token: attention returns its own value; post-LN: H_mid = LN(H_pre + W_O v + b)
            attention = layer.attention
            mid = attention.output.LayerNorm(attention.output.dense(attention.self.value(h_pre)) + h_pre)
            post = layer.output.LayerNorm(layer.output.dense(layer.intermediate(mid)) + mid)
        assert torch.allclose(reps.mid[index].double(), mid, atol=1e-5 * mid.abs().max()), index
        assert torch.allclose(reps.post[index].double(), post, atol=1e-5 * post.abs().max()), index
        # the module's own q, k (no norm before attention: σ = 1, H̃ = H_pre), biases included
        vectors = architecture.query_key_vectors(model, index, h_pre)
        query, key = (t[:, :, 0].transpose(0, 1) for t in seen[attention.self])
        assert torch.allclose(vectors.queries, query, atol=1e-5 * query.abs().max(), rtol=0), index
        assert torch.allclose(vectors.keys, key, atol=1e-5 * key.abs().max(), rtol=0), index
        # without biases: the bilinear form H M Hᵀ of the raw projections (nothing folded, nothing centred)
        weights = architecture.folded_query_key(model, index)
        plain = architecture.query_key_vectors(model, index, h_pre, biases=False)
        W_Q, W_K = attention.self.query.weight.double(), attention.self.key.weight.double()
        size = W_Q.shape[0] // 4
        for head in range(4):
            rows = slice(head * size, (head + 1) * size)
            expected = (h_pre @ W_Q[rows].T) @ (h_pre @ W_K[rows].T).T
            q, k = plain.head(head)
            assert torch.allclose(q @ k.T, expected, atol=1e-12 * float(expected.abs().max().detach()))
            assert torch.allclose(h_pre @ weights.head_matrix(head) @ h_pre.T, expected, atol=1e-10)
        assert not torch.allclose(vectors.mean()[0] @ vectors.mean()[1].T, plain.mean()[0] @ plain.mean()[1].T,
                                  atol=1e-3)   # the biases change the scores
