"""The naive formulations (common/theory/reference.py) are the other tests' ground truth, so they are
checked here against quantities small enough to write out by hand."""
import math

import pytest
import torch

from common.theory.model import AttentionOnlyTransformer
from common.theory.reference import naive_model_forward, naive_rsa, naive_statistics


def test_bigram_and_context_of_one_written_out_sequence():
    """x = (0, 1), y = (1, 0), V = 2: B̄ = (1/n) Σ x_tᵀ r_t and Φ̄ = (1/n) Σ r_tᵀ ā_t by hand."""
    x, y = torch.tensor([[0, 1]]), torch.tensor([[1, 0]])
    stats = naive_statistics(x, y, 2)
    # r_0 = (−½, ½), r_1 = (½, −½); ā_0 = (1, 0), ā_1 = (½, ½)
    assert torch.allclose(stats["bigram"], torch.tensor([[-0.25, 0.25], [0.25, -0.25]], dtype=torch.float64))
    context = (torch.outer(torch.tensor([-0.5, 0.5]), torch.tensor([1.0, 0.0]))
               + torch.outer(torch.tensor([0.5, -0.5]), torch.tensor([0.5, 0.5]))) / 2
    assert torch.allclose(stats["context"], context.double())
    assert torch.allclose(stats["interchangeability"], stats["bigram"].T @ stats["bigram"])


def test_rsa_of_a_matrix_with_itself_and_with_its_negative():
    a = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert naive_rsa(a, a) == pytest.approx(1.0)
    assert naive_rsa(a, 2 * a + 1) == pytest.approx(1.0)    # covariances ignore scale and row offsets


def test_forward_of_one_layer_written_out():
    """One layer, T = 2, uniform attention (W = 0, P = 0): position 1 averages the two tokens' value rows."""
    model = AttentionOnlyTransformer(3, 2, 1).double()
    with torch.no_grad():
        model.layers[0].V.copy_(torch.arange(9, dtype=torch.float64).reshape(3, 3))
        model.W_O.copy_(torch.eye(3, dtype=torch.float64))
    tokens = torch.tensor([[0, 2]])
    logits = naive_model_forward(model, tokens)[0]
    V = model.layers[0].V.detach()
    assert torch.allclose(logits[0], torch.eye(3, dtype=torch.float64)[0] + V[0])
    assert torch.allclose(logits[1], torch.eye(3, dtype=torch.float64)[2] + (V[0] + V[2]) / 2)
    with torch.no_grad():
        model.layers[0].P[1] = math.log(3.0)        # distance 1 weighs 3 : 1 against distance 0
    logits = naive_model_forward(model, tokens)[0]
    assert torch.allclose(logits[1], torch.eye(3, dtype=torch.float64)[2] + 0.75 * V[0] + 0.25 * V[2])
