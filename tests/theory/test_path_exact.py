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


# -- masked language modelling (docs/theory.md §16): micro-batches (x̃, y, selected) ------------------------
def masked_draws(markov, n_seq, T, n_words, steps, batch, seed=0):
    """Clean Markov sequences and, for each step, a batch with its own corruption draw (x̃, y, selected)."""
    from common.theory.masking import MaskingScheme, corrupt
    x, _ = markov(n_seq, T, n_words, seed=seed)
    scheme, generator = MaskingScheme(n_words, n_words, mask_prob=0.3), torch.Generator().manual_seed(seed)
    draws = []
    for k in range(steps):
        clean = x[(k * batch) % n_seq:][:batch]
        x_tilde, selected = corrupt(clean, scheme, generator)
        draws.append((x_tilde, clean, selected))
    return x, draws


def naive_masked_path_exact(steps, V, lr, variant):
    """The masked recursion written with the naive dense §16 statistics of each draw (common/theory/reference.py):
    residual W_O += ηB̄ₘ,k, V += ηΦ̄ₘ,kᵀW_O(k)ᵀ, W, P += η(Q̄ₘ,k, p̄ₘ,k)[G = V(k)W_O(k)]; identity the same with
    W_O(k) = I held fixed."""
    from common.theory.reference import naive_masked_statistics_accumulate
    W_O = torch.zeros(V, V, dtype=torch.float64) if variant == "residual" else torch.eye(V, dtype=torch.float64)
    value, attention, position = torch.zeros(V, V, dtype=torch.float64), torch.zeros(V, V, dtype=torch.float64), None
    for x_tilde, y, selected in steps:
        n = float(selected.sum())
        bigram_sum, context_sum = naive_masked_statistics_accumulate(x_tilde, y, selected, V)
        attention_sum, position_sum = naive_masked_statistics_accumulate(x_tilde, y, selected, V, G=value @ W_O)
        position = torch.zeros_like(position_sum) if position is None else position
        value, attention, position, W_O = (value + lr * (context_sum / n).T @ W_O.T, attention + lr * attention_sum / n,
                                           position + lr * position_sum / n,
                                           W_O + lr * bigram_sum / n if variant == "residual" else W_O)
    return {"V": value, "W": attention, "P": position, **({"W_O": W_O} if variant == "residual" else {})}


MASKED = {"residual": dict(causal=False), "identity": dict(causal=False, residual=False, output="identity")}


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_masked_full_batch_recursion_equals_leading_terms(markov, variant):
    # the same corruption draw every step: the closed forms of the masked statistics of that draw, exactly
    from common.theory.masked_statistics import masked_statistics
    n_words, T, lr, steps = 14, 8, 0.4, 6
    _, ((x_tilde, y, selected),) = masked_draws(markov, 24, T, n_words, 1, 24, seed=1)
    V = n_words + 1
    tracker = PathExactTracker(V, T, lr, causal=False, variant=variant)
    for _ in range(steps):
        tracker.step([(x_tilde[:10], y[:10], selected[:10]), (x_tilde[10:], y[10:], selected[10:])])
    predicted = predicted_weights(masked_statistics(x_tilde, y, selected, V, variant=variant), lr, steps,
                                  variant=variant)
    assert set(tracker.predictions()) == set(predicted) == ({"V", "W", "P"} | ({"W_O"} if variant == "residual" else set()))
    assert tracker.predictions()["P"].shape == (2 * T - 1,)
    for kind, value in tracker.predictions().items():
        assert predicted[kind].norm() > 0, kind
        assert float((value - predicted[kind]).norm() / predicted[kind].norm()) < 1e-12, kind


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_masked_tracker_equals_naive_recursion(markov, variant):
    n_words, T, lr = 11, 6, 0.7
    _, steps = masked_draws(markov, 30, T, n_words, 5, 6, seed=2)
    tracker = PathExactTracker(n_words + 1, T, lr, chunk=4, causal=False, variant=variant)
    for batch in steps:
        tracker.step([batch])
    naive = naive_masked_path_exact(steps, n_words + 1, lr, variant)
    assert set(naive) == set(tracker.predictions())
    for kind, value in tracker.predictions().items():
        assert naive[kind].abs().max() > 0, kind
        assert (value - naive[kind]).abs().max() <= 1e-12 * naive[kind].abs().max(), kind


@pytest.mark.parametrize("variant,n_layers,causal", [("residual", 1, False), ("residual", 2, False),
                                                     ("identity", 1, False), ("residual", 2, True)])
def test_masked_sgd_follows_path_exact(markov, variant, n_layers, causal):
    # autograd on the masked loss, a fresh corruption every step: the weights line up with the path-exact
    # prediction (cosine ≈ 1), and the relative error is the higher-order terms alone — it shrinks in
    # proportion to η at a fixed number of steps (τ = ηs → 0).  Also a causal model with the loss on
    # selected positions only.
    n_words, T, steps = 15, 10, 6
    _, draws = masked_draws(markov, 48, T, n_words, steps, 16, seed=6)
    errors = {}
    for lr in (0.05, 0.0125):
        model = AttentionOnlyTransformer(n_words + 1, T, n_layers, **{**MASKED[variant], "causal": causal}).double()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        tracker = PathExactTracker(n_words + 1, T, lr, causal=causal, variant=variant)
        for x_tilde, y, selected in draws:
            optimizer.zero_grad()
            model.loss(x_tilde, y, selected).backward()
            optimizer.step()
            tracker.step([(x_tilde, y, selected)])
        path = tracker.predictions()
        weights = ([("W_O", None, model.W_O)] if variant == "residual" else []) + \
                  [(k, l, getattr(layer, k)) for l, layer in enumerate(model.layers) for k in ("V", "W", "P")]
        for kind, layer, weight in weights:
            assert matrix_cosine(weight, path[kind]) >= (0.9999 if lr < 0.05 else 0.999), (lr, kind, layer)
            errors.setdefault((kind, layer), []).append(relative_error(weight, path[kind]))
    for kind, (coarse, fine) in errors.items():
        assert coarse < 0.04 and fine * 3 < coarse, (kind, coarse, fine)


def test_masked_state_round_trip_and_bad_input(markov):
    n_words, T, lr = 8, 5, 0.3
    _, steps = masked_draws(markov, 12, T, n_words, 6, 4, seed=5)
    a, b = (PathExactTracker(n_words + 1, T, lr, causal=False, variant="identity") for _ in range(2))
    for batch in steps[:3]:
        a.step([batch])
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    for batch in steps[3:]:
        a.step([batch])
        b.step([batch])
    for kind, value in a.predictions().items():
        assert torch.equal(value, b.predictions()[kind]), kind
    with pytest.raises(ValueError, match="shape"):       # P has 2T − 1 entries without the causal mask
        PathExactTracker(n_words + 1, T, lr).load_state_dict(a.state_dict())
    x_tilde, y, selected = steps[0]
    with pytest.raises(ValueError, match="selected"):
        a.add(x_tilde, y, selected[:, :3])
    with pytest.raises(ValueError, match="variant"):
        PathExactTracker(n_words + 1, T, lr, variant="tied")
