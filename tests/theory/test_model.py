import pytest
import torch

from common.theory.model import AttentionOnlyTransformer, relative_position_index
from common.theory.reference import naive_model_forward as naive_forward


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_forward_and_gradients_match_naive(n_layers):
    torch.manual_seed(0)
    V, T = 17, 9
    model = AttentionOnlyTransformer(V, T, n_layers, init_std=0.3).double()
    tokens = torch.randint(V, (4, T))
    logits = model(tokens)
    assert logits.shape == (4, T, V)
    reference = naive_forward(model, tokens)
    assert torch.allclose(logits, reference, atol=1e-12)
    grads = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad(reference.square().sum(), list(model.parameters()))
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-10)


def test_parameter_names_and_zero_init():
    model = AttentionOnlyTransformer(11, 6, 3)
    names = {name for name, _ in model.named_parameters()}
    assert names == {"W_O"} | {f"layers.{l}.{k}" for l in range(3) for k in "WVP"}
    assert model.layers[2].P.shape == (6,) and model.layers[0].W.shape == (11, 11)
    assert all(float(p.detach().abs().max()) == 0.0 for p in model.parameters())
    # a zero model predicts uniformly: loss = log V
    tokens = torch.randint(11, (2, 6))
    assert torch.isclose(model.loss(tokens, tokens), torch.log(torch.tensor(11.0)))


def test_causality():
    torch.manual_seed(1)
    model = AttentionOnlyTransformer(13, 8, 2, init_std=0.5)
    a = torch.randint(13, (1, 8))
    b = a.clone()
    b[0, 5:] = (b[0, 5:] + 1) % 13
    assert torch.allclose(model(a)[0, :5], model(b)[0, :5], atol=1e-6)
    assert not torch.allclose(model(a)[0, 5:], model(b)[0, 5:], atol=1e-6)


def test_shorter_sequences_and_too_long():
    model = AttentionOnlyTransformer(5, 4, 1, init_std=0.1)
    assert model(torch.randint(5, (2, 3))).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.randint(5, (2, 5)))


def test_relative_position_index():
    idx = relative_position_index(4)
    assert idx[3, 0] == 3 and idx[2, 1] == 1 and idx[1, 1] == 0


def test_attention_patterns_are_the_softmax_of_the_scores():
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(9, 6, 2, init_std=0.5).double()
    tokens = torch.randint(9, (3, 6))
    patterns = model.attention_patterns(tokens)
    assert len(patterns) == 2 and all(p.shape == (3, 6, 6) for p in patterns)
    # layer 0 by hand: S = X W Xᵀ + DM(P), masked, softmax over keys
    X = torch.nn.functional.one_hot(tokens, 9).double()
    layer = model.layers[0]
    dm = torch.stack([torch.stack([layer.P[t - s] if s <= t else torch.tensor(0.0, dtype=torch.float64)
                                   for s in range(6)]) for t in range(6)])
    scores = X @ layer.W @ X.transpose(1, 2) + dm
    expected = torch.softmax(scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf")), -1)
    assert torch.allclose(patterns[0], expected, atol=1e-12)
    assert torch.allclose(patterns[1].sum(-1), torch.ones(3, 6, dtype=torch.float64))
    assert torch.equal(model(tokens), model.forward(tokens, record=[]))


# -- the masked-language-model variants (docs/theory.md §16) ----------------------------------------------
VARIANTS = [dict(causal=False), dict(causal=False, residual=False, output="identity"),
            dict(residual=False), dict(causal=False, output="identity")]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_layers", [1, 2])
def test_variants_match_naive_forward_and_gradients(variant, n_layers):
    torch.manual_seed(2)
    V, T = 11, 7
    model = AttentionOnlyTransformer(V, T, n_layers, init_std=0.3, **variant).double()
    tokens = torch.randint(V, (3, 5))                      # shorter than seq_len: the offsets of seq_len are kept
    logits = model(tokens)
    reference = naive_forward(model, tokens)
    assert logits.shape == (3, 5, V) and torch.allclose(logits, reference, atol=1e-12)
    grads = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad(reference.square().sum(), list(model.parameters()))
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-10)


def test_bidirectional_position_bias_and_patterns():
    torch.manual_seed(3)
    V, T = 6, 5
    model = AttentionOnlyTransformer(V, T, 2, init_std=0.5, causal=False).double()
    assert model.layers[0].P.shape == (2 * T - 1,)
    assert model.causal is None
    idx = relative_position_index(T, causal=False)
    assert idx[4, 0] == 4 + T - 1 and idx[0, 4] == -4 + T - 1 and idx[2, 2] == T - 1
    tokens = torch.randint(V, (2, T))
    patterns = model.attention_patterns(tokens)
    X = torch.nn.functional.one_hot(tokens, V).double()
    layer = model.layers[0]
    dm = torch.stack([torch.stack([layer.P[t - s + T - 1] for s in range(T)]) for t in range(T)])
    expected = torch.softmax(X @ layer.W @ X.transpose(1, 2) + dm, -1)
    assert torch.allclose(patterns[0], expected, atol=1e-12)
    assert bool((patterns[1] > 0).all())                   # every key is seen, above the diagonal too
    # a later token changes an earlier position's output: no causal mask
    b = tokens.clone()
    b[0, 4] = (b[0, 4] + 1) % V
    assert not torch.allclose(model(tokens)[0, 0], model(b)[0, 0], atol=1e-9)


def test_identity_output_and_no_residual():
    model = AttentionOnlyTransformer(8, 5, 1, causal=False, residual=False, output="identity")
    assert {name for name, _ in model.named_parameters()} == {"layers.0.W", "layers.0.V", "layers.0.P"}
    assert set(model.state_dict()) == {"layers.0.W", "layers.0.V", "layers.0.P"} and model.W_O is None
    torch.manual_seed(0)
    with torch.no_grad():
        model.layers[0].V.normal_()
    tokens = torch.randint(8, (2, 5))
    # zero W and P: uniform attention over all positions, logits = mean of the value rows, no one-hot residual
    expected = model.layers[0].V[tokens].mean(1, keepdim=True).expand(2, 5, 8)
    assert torch.allclose(model(tokens), expected, atol=1e-6)
    with pytest.raises(ValueError, match="output"):
        AttentionOnlyTransformer(8, 5, 1, output="tied")
    with pytest.raises(ValueError, match="at least one layer"):
        AttentionOnlyTransformer(8, 5, 0, output="identity")


def test_loss_over_selected_positions():
    torch.manual_seed(4)
    model = AttentionOnlyTransformer(9, 6, 1, init_std=0.4, causal=False).double()
    x, y = torch.randint(9, (3, 6)), torch.randint(9, (3, 6))
    selected = torch.rand(3, 6) < 0.4
    selected[0, 0] = True
    logits = model(x)
    per_position = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    expected = per_position[selected].sum() / selected.sum()
    assert torch.isclose(model.loss(x, y, selected), expected, rtol=1e-12)
    assert torch.equal(model.loss(x, y, torch.ones(3, 6, dtype=torch.bool)), model.loss(x, y))
    with pytest.raises(ValueError, match="shape"):
        model.loss(x, y, selected[:, :5])


def test_config_rebuilds_every_variant_and_old_configs_give_the_causal_model():
    for variant in [{}] + VARIANTS:
        model = AttentionOnlyTransformer(7, 4, 2, **variant)
        rebuilt = AttentionOnlyTransformer(**model.config())
        assert rebuilt.config() == model.config()
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    old = AttentionOnlyTransformer(**{"vocab_size": 7, "seq_len": 4, "n_layers": 2})
    assert old.config() == {"vocab_size": 7, "seq_len": 4, "n_layers": 2, "causal": True, "residual": True,
                            "output": "trained"}
    assert set(old.state_dict()) == {"W_O"} | {f"layers.{l}.{k}" for l in range(2) for k in "WVP"}
