import pytest
import torch

from common.leading_terms import leading_coefficients, predicted_weights
from common.model import AttentionOnlyTransformer
from common.similarity import matrix_cosine, relative_error
from common.stats import compute_statistics


def train_full_batch(x, y, V, T, n_layers, lr, steps):
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(V, T, n_layers).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(x, y).backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("n_layers", [1, 3])
def test_theorem_full_batch_sgd(markov, n_layers):
    V, T, lr, steps = 30, 12, 0.5, 5
    x, y = markov(64, T, V, seed=11)
    stats = compute_statistics(x, y, V)
    model = train_full_batch(x, y, V, T, n_layers, lr, steps)
    predicted = predicted_weights(stats, lr, steps)
    pairs = [("W_O", model.W_O)] + [(k, getattr(layer, k)) for layer in model.layers for k in ("V", "W", "P")]
    for name, weight in pairs:
        assert relative_error(weight, predicted[name]) < 0.02, name
        assert matrix_cosine(weight, predicted[name]) > 0.9999, name


def test_prediction_fails_for_wrong_orientation(markov):
    # the test above must be able to fail: the transposed Q̄ (the release's Pythia orientation)
    # and a wrong step count are clearly rejected
    V, T, lr, steps = 30, 12, 0.5, 5
    x, y = markov(64, T, V, seed=11)
    stats = compute_statistics(x, y, V)
    model = train_full_batch(x, y, V, T, 1, lr, steps)
    predicted = predicted_weights(stats, lr, steps)
    assert matrix_cosine(model.layers[0].W, predicted["W"].T) < 0.999
    assert relative_error(model.W_O, predicted_weights(stats, lr, steps + 1)["W_O"]) > 0.1


def test_coefficients():
    c = leading_coefficients(0.5, 5)
    assert c["W_O"] == 2.5
    assert c["V"] == 0.25 * 10
    assert c["W"] == c["P"] == 0.5 ** 4 * (0 + 0 + 2 + 9 + 24)
