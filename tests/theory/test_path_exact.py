"""Path-exact leading terms (docs/theory.md §10): the tracker against §3 with full batches, against a
naive dense implementation of the same recursion, and against minibatch SGD."""
import pytest
import torch

from common.theory.leading_terms import predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.theory.path_exact import PathExactTracker
from common.theory.reference import naive_statistics_accumulate
from common.theory.similarity import matrix_cosine, relative_error
from common.theory.statistics import compute_statistics


def naive_path_exact(steps, V, lr):
    """The recursion of §10 written with the naive dense §2 statistics of each batch (common/theory/reference.py)."""
    W_O, value, attention = (torch.zeros(V, V, dtype=torch.float64) for _ in range(3))
    position = None
    for x, y in steps:
        n = x.numel()
        bigram_sum, context_sum = naive_statistics_accumulate(x, y, V)
        attention_sum, position_sum = naive_statistics_accumulate(x, y, V, G=value @ W_O)
        position = torch.zeros_like(position_sum) if position is None else position
        W_O, value, attention, position = (W_O + lr * bigram_sum / n, value + lr * (context_sum / n).T @ W_O.T,
                                           attention + lr * attention_sum / n, position + lr * position_sum / n)
    return {"W_O": W_O, "V": value, "W": attention, "P": position}


def minibatches(x, y, batch, steps):
    return [(x[(k * batch) % len(x):][:batch], y[(k * batch) % len(x):][:batch]) for k in range(steps)]


def test_full_batch_recursion_equals_leading_terms(markov):
    V, T, lr, steps = 20, 8, 0.4, 6
    x, y = markov(24, T, V, seed=1)
    tracker = PathExactTracker(V, T, lr)
    for _ in range(steps):
        # the whole corpus every step, split in micro-batches as under gradient accumulation
        tracker.step([(x[:10], y[:10]), (x[10:], y[10:])])
    predicted = predicted_weights(compute_statistics(x, y, V), lr, steps)
    for kind, value in tracker.predictions().items():
        assert float((value - predicted[kind]).norm() / predicted[kind].norm()) < 1e-12, kind


def test_tracker_equals_naive_recursion(markov):
    V, T, lr = 13, 7, 0.7
    x, y = markov(30, T, V, seed=2)
    steps = minibatches(x, y, 6, 5)
    tracker = PathExactTracker(V, T, lr, chunk=4)
    for xb, yb in steps:
        tracker.step([(xb, yb)])
    naive = naive_path_exact(steps, V, lr)
    for kind, value in tracker.predictions().items():
        assert naive[kind].abs().max() > 0, kind
        assert (value - naive[kind]).abs().max() <= 1e-12 * naive[kind].abs().max(), kind


def test_sharded_steps_reduce_to_one_process(markov):
    # two "processes" each add half of the global batch; the all_reduce adds the other's raw sums
    V, T, lr = 11, 6, 0.5
    x, y = markov(16, T, V, seed=4)
    whole, shards = PathExactTracker(V, T, lr), [PathExactTracker(V, T, lr) for _ in range(2)]
    for xb, yb in minibatches(x, y, 8, 4):
        whole.step([(xb, yb)])
        for i, shard in enumerate(shards):
            shard.add(xb[i * 4:(i + 1) * 4], yb[i * 4:(i + 1) * 4])
        raw = [[t.clone() for t in (s.n, s.pair_sum_t, s.input_sum, s.value_sum, s.attention_sum, s.position_sum)]
               for s in shards]
        for i, shard in enumerate(shards):
            other = iter(raw[1 - i])
            shard.apply(lambda t: t.add_(next(other)))
    for shard in shards:
        for kind, value in shard.predictions().items():
            assert torch.allclose(value, whole.predictions()[kind], rtol=1e-12, atol=0), kind


def test_state_round_trip(markov):
    V, T, lr = 9, 5, 0.3
    x, y = markov(12, T, V, seed=5)
    a, b = PathExactTracker(V, T, lr), PathExactTracker(V, T, lr)
    steps = minibatches(x, y, 4, 6)
    for xb, yb in steps[:3]:
        a.step([(xb, yb)])
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    for xb, yb in steps[3:]:
        a.step([(xb, yb)])
        b.step([(xb, yb)])
    assert int(b.steps) == 6
    for kind, value in a.predictions().items():
        assert torch.equal(value, b.predictions()[kind]), kind
    with pytest.raises(ValueError, match="shape"):
        PathExactTracker(V + 1, T, lr).load_state_dict(a.state_dict())


@pytest.mark.parametrize("lr,n_layers", [(0.2, 1), (0.5, 3)])
def test_minibatch_sgd_follows_path_exact_not_corpus(markov, lr, n_layers):
    # docs/theory.md §10: with minibatches the whole-corpus prediction is lowered by batch sampling
    # noise; the path-exact prediction is not
    V, T, batch = 40, 10, 16
    x, y = markov(160, T, V, seed=6)
    stats = compute_statistics(x, y, V)
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(V, T, n_layers).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    tracker = PathExactTracker(V, T, lr)
    corpus_cosines = []
    for step, (xb, yb) in enumerate(minibatches(x, y, batch, 8), start=1):
        optimizer.zero_grad()
        model.loss(xb, yb).backward()
        optimizer.step()
        tracker.step([(xb, yb)])
        if step < 3:
            continue
        path, corpus = tracker.predictions(), predicted_weights(stats, lr, step)
        weights = [("W_O", model.W_O)] + [(k, getattr(layer, k)) for layer in model.layers for k in ("V", "W", "P")]
        for kind, weight in weights:
            assert matrix_cosine(weight, path[kind]) >= 0.9999, (step, kind)
            assert relative_error(weight, path[kind]) < 0.02, (step, kind)
            corpus_cosines.append(matrix_cosine(weight, corpus[kind]))
    assert min(corpus_cosines) < 0.95      # the whole-corpus comparison is far lower early on
