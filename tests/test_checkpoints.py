import os
import subprocess
import sys

import pytest
import torch

from common.checkpoints import (CheckpointSource, folded_query_key, revision_step, single_token_representations,
                                sort_revisions)
from common.io import UserError
from tests.conftest import ROOT


def tiny_neox(seed=0, layers=3, d=24, heads=3, vocab=40, scale=0.3):
    """A random GPTNeoX in float64 whose LayerNorms, biases and weights are all far from their defaults
    (so a missing fold, a wrong centring or a wrong head layout shows up)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=2 * d, rotary_pct=0.25, max_position_embeddings=16,
                           use_parallel_residual=True, attn_implementation="eager")
    model = GPTNeoXForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "layernorm.weight" in name or "layer_norm.weight" in name else 0.0, scale)
    return model.double()


@pytest.fixture
def captured_attention(monkeypatch):
    """The query, key and value states each attention module computes (after rotary), by layer."""
    import transformers.models.gpt_neox.modeling_gpt_neox as neox

    captured, original = {}, neox.eager_attention_forward

    def spy(module, query, key, value, *args, **kwargs):
        captured[module.layer_idx] = (query.detach().clone(), key.detach().clone(), value.detach().clone())
        return original(module, query, key, value, *args, **kwargs)

    monkeypatch.setattr(neox, "eager_attention_forward", spy)
    return captured


def test_folded_query_key_reproduce_the_modules_own_products(captured_attention):
    model = tiny_neox()
    ids = torch.arange(model.config.vocab_size)
    reps = single_token_representations(model, ids, batch_size=17)  # batches of uneven size
    model(ids.view(-1, 1))                                           # captured at full batch
    eps = model.config.layer_norm_eps
    for index, layer in enumerate(model.gpt_neox.layers):
        weights = folded_query_key(layer)
        h = reps.pre(index).double()
        sigma = (h.var(dim=1, unbiased=False, keepdim=True) + eps).sqrt()
        for normalised in (h / sigma, (h - h.mean(dim=1, keepdim=True)) / sigma):  # centring is in the weights
            q = torch.einsum("nd,hdk->hnk", normalised, weights.W_Q) + weights.b_Q[:, None]
            k = torch.einsum("nd,hdk->hnk", normalised, weights.W_K) + weights.b_K[:, None]
            query, key, _ = captured_attention[index]
            query, key = query[:, :, 0].transpose(0, 1), key[:, :, 0].transpose(0, 1)   # [heads, n, head_size]
            assert torch.allclose(q, query, atol=1e-5), index
            assert torch.allclose(k, key, atol=1e-5), index
            products = q @ k.transpose(1, 2)                         # every query token · every key token
            assert torch.allclose(products, query @ key.transpose(1, 2), atol=1e-4)
        # the weights are centred over d_model, and the bilinear part is what M uses
        assert weights.W_Q.mean(dim=1).abs().max() < 1e-12 and weights.W_K.mean(dim=1).abs().max() < 1e-12
        M = weights.mean_matrix()
        expected = sum(weights.head_matrix(h) for h in range(weights.W_Q.shape[0])) / weights.W_Q.shape[0]
        assert torch.allclose(M, expected)


def test_head_layout_matters():
    # a wrong split of the fused weight ([q|k|v] blocks of d_model rows) gives other matrices
    layer = tiny_neox().gpt_neox.layers[0]
    weights = folded_query_key(layer)
    W = layer.attention.query_key_value.weight.double()
    d = W.shape[1]
    wrong_q = W[:d].view(3, 8, d)[1].T                                  # head 1 under the wrong layout
    wrong_q = layer.input_layernorm.weight.double()[:, None] * wrong_q
    assert not torch.allclose(wrong_q - wrong_q.mean(0), weights.W_Q[1], atol=1e-3)
    right_q = W.view(3, 3, 8, d)[1, 0].T                                # head-major: [head, (q, k, v), size]
    right_q = layer.input_layernorm.weight.double()[:, None] * right_q
    assert torch.allclose(right_q - right_q.mean(0), weights.W_Q[1])


def test_representations_match_hidden_states_and_hooks(captured_attention):
    model = tiny_neox(seed=1)
    ids = torch.tensor([3, 0, 39, 7, 7, 12])
    reps = single_token_representations(model, ids, batch_size=4)
    with torch.no_grad():
        hidden = model(ids.view(-1, 1), output_hidden_states=True).hidden_states
    L = model.config.num_hidden_layers
    assert len(hidden) == L + 1 and reps.n_layers == L
    for index in range(L):
        assert torch.allclose(reps.pre(index), hidden[index][:, 0].float())
    for index in range(L - 1):
        assert torch.allclose(reps.post[index], hidden[index + 1][:, 0].float())
    # the trap: the last hidden state has the final LayerNorm applied; H_post of the last layer is raw
    final_norm = model.gpt_neox.final_layer_norm
    assert not torch.allclose(reps.post[-1], hidden[L][:, 0].float(), atol=1e-2)
    assert torch.allclose(final_norm(reps.post[-1].double()), hidden[L][:, 0], atol=1e-5)
    with torch.no_grad():
        for index, layer in enumerate(model.gpt_neox.layers):
            # H_mid = H_pre + dense(value) — one key at position 0, so attention passes the value through
            value = captured_attention[index][2][:, :, 0].reshape(len(ids), -1)
            h_pre = reps.pre(index).double()
            assert torch.allclose(reps.mid[index].double(), h_pre + layer.attention.dense(value), atol=1e-5)
            # and H_post − H_mid is the MLP branch of the parallel residual
            mlp = layer.mlp(layer.post_attention_layernorm(h_pre))
            assert torch.allclose(reps.post[index].double() - reps.mid[index].double(), mlp, atol=1e-5)


def test_revisions(tmp_path):
    assert revision_step("step512") == 512
    assert sort_revisions(["step1000", "step2", "step0", "step2"]) == ["step0", "step2", "step1000"]
    with pytest.raises(UserError, match="unknown revision"):
        revision_step("main")
    hub = CheckpointSource("EleutherAI/pythia-1.4b-deduped")
    assert hub.local is None
    assert hub.resolve("step4,step1".split(",")) == ["step1", "step4"]
    with pytest.raises(UserError, match="unknown revision 'step3'"):
        hub.resolve(["step3"])
    with pytest.raises(UserError, match="needs a local"):
        hub.resolve(["all"])
    for name in ("step0", "step16", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "step0" / "config.json").write_text("{}")
    (tmp_path / "step16" / "config.json").write_text("{}")
    local = CheckpointSource(str(tmp_path))
    assert local.resolve(["all"]) == ["step0", "step16"]
    with pytest.raises(UserError, match="'step8' not found"):
        local.resolve(["step0", "step8"])
    with pytest.raises(UserError, match="checkpoint folder not found"):
        CheckpointSource(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="could not load"):
        local.load_config("step0")   # an empty config is not a GPTNeoX checkpoint


def test_failed_download_is_one_line():
    # offline: the hub refuses at once; the message names the fix
    code = ("from common.checkpoints import CheckpointSource\n"
            "from common.io import exit_on_user_error\n"
            "with exit_on_user_error():\n"
            "    CheckpointSource('EleutherAI/pythia-14m').load_config('step0')\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not load") and "local folder" in lines[0]
