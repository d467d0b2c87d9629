"""Each family's adapter against the model's own computation: the folded per-head W_Q, W_K reproduce the
attention module's query and key at position 0 (captured by a spy on its attention function), and
H_pre, H_mid, H_post equal what hooks and hidden states give."""
import importlib

import pytest
import torch

from common.checkpoints.architectures import BY_NAME, architecture_for, fold_norm
from common.checkpoints.loading import single_token_representations
from common.io import UserError
from conftest import VOCAB, tiny_model

FAMILIES = ("neox", "gpt2", "llama", "olmo")
MODULES = {"neox": "gpt_neox", "gpt2": "gpt2", "llama": "llama", "olmo": "olmo"}


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


def normalised(family, model, h):
    """x̂ the norm before attention divides out: (h − mean h)/σ for a LayerNorm, h/rms(h) for RMSNorm."""
    config = model.config
    if family == "llama":
        return h / (h.square().mean(dim=1, keepdim=True) + config.rms_norm_eps).sqrt()
    eps = {"neox": getattr(config, "layer_norm_eps", None), "gpt2": getattr(config, "layer_norm_epsilon", None),
           "olmo": 1e-5}[family]
    centred = h - h.mean(dim=1, keepdim=True)
    return centred / (centred.square().mean(dim=1, keepdim=True) + eps).sqrt()


@pytest.mark.parametrize("family", FAMILIES)
def test_folded_query_key_reproduce_the_modules_own_query_and_key(family, captured):
    model = tiny_model(family)
    architecture = architecture_for(model.config)
    ids = torch.arange(VOCAB)
    reps = single_token_representations(model, ids, batch_size=17)   # batches of uneven size
    with torch.no_grad():
        model(ids.view(-1, 1))                                         # captured at full batch
    # representations are stored in float32, and Llama's and OLMo's norms compute in float32 internally
    tolerance = 1e-5 if family in ("neox", "gpt2") else 1e-4
    for index, layer in enumerate(architecture.layers(model)):
        weights = architecture.folded_query_key(model, index)
        x = normalised(family, model, reps.pre(index).double())
        query, key, _ = captured[architecture.attention(layer)]
        query, key = query[:, :, 0].transpose(0, 1), key[:, :, 0].transpose(0, 1)   # [heads, n, size]
        group = weights.n_heads // key.shape[0]
        key = key[torch.arange(weights.n_heads) // group]                           # g(h) = h // group
        q = torch.einsum("nd,hdk->hnk", x, weights.W_Q) + weights.b_Q[:, None]
        k = torch.einsum("nd,hdk->hnk", x, weights.W_K) + weights.b_K[:, None]
        scale = query.abs().max()
        assert torch.allclose(q, query, atol=tolerance * scale, rtol=0), (family, index)
        assert torch.allclose(k, key, atol=tolerance * key.abs().max(), rtol=0), (family, index)
        products = q @ k.transpose(1, 2)                                 # every query token · every key token
        expected = query @ key.transpose(1, 2)
        assert torch.allclose(products, expected, atol=10 * tolerance * expected.abs().max(), rtol=0)
        # the norm rule: centred over d_model exactly when the norm subtracts the mean
        assert weights.centred == (family != "llama")
        spread = weights.W_Q.mean(dim=1).abs().max()
        assert (spread < 1e-12) if weights.centred else (spread > 1e-3)
        M = weights.mean_matrix()
        assert torch.allclose(M, sum(weights.head_matrix(h) for h in range(weights.n_heads)) / weights.n_heads)


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
    model = tiny_model(family, seed=1, layers=3)
    architecture = architecture_for(model.config)
    ids = torch.tensor([3, 0, 39, 7, 7, 12])
    reps = single_token_representations(model, ids, batch_size=4)
    mid_inputs, handles = {}, []
    layers = architecture.layers(model)
    for index, layer in enumerate(layers):
        # sequential families: H_mid is the residual entering the norm before the MLP
        norm = getattr(layer, "ln_2", None) or getattr(layer, "post_attention_layernorm")
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


def test_unsupported_families_are_refused_in_one_line():
    from transformers import BertConfig, Olmo2Config

    with pytest.raises(UserError, match="OLMo-2.*non-bilinear.*supported families: GPTNeoX") as error:
        architecture_for(Olmo2Config())
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="'bert' model; supported families: .*Llama.*OLMo v1"):
        architecture_for(BertConfig())
