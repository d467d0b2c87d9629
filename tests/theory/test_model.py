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
