import pytest
import torch

from common.theory.statistics import CorpusStatistics, compute_statistics, statistics_from_batches
from common.theory.reference import naive_statistics


@pytest.mark.parametrize("V,T,N", [(7, 5, 6), (40, 12, 9)])
def test_statistics_equal_naive_reference(markov, V, T, N):
    x, y = markov(N, T, V, seed=V)
    stats = compute_statistics(x, y, V, chunk_size=4)
    reference = naive_statistics(x, y, V)
    for name, expected in reference.items():
        got = getattr(stats, name)
        assert got.dtype == torch.float64 and got.device.type == "cpu"
        assert got.shape == expected.shape, name
        # relative to each statistic's own scale (Q̄ is ~1e-7 here, so an absolute 1e-10 would be lax)
        assert (got - expected).abs().max() <= 1e-10 * expected.abs().max(), name
    assert stats.n_positions == N * T


def test_statistics_nontrivial(markov):
    # guard against a vacuous pass: every statistic carries signal on a Markov corpus
    x, y = markov(9, 12, 40)
    stats = compute_statistics(x, y, 40)
    for name, value in stats.tensors().items():
        assert value.abs().max() > 1e-8, name


def test_chunk_size_invariance(markov):
    x, y = markov(23, 12, 40, seed=3)
    results = [compute_statistics(x, y, 40, chunk_size=c) for c in (1, 7, 23)]
    for name in CorpusStatistics.TENSOR_FIELDS:
        for other in results[1:]:
            assert torch.allclose(getattr(results[0], name), getattr(other, name), atol=1e-15, rtol=1e-12), name


def test_token_subset_matches_naive_reference(markov):
    # Pythia mode: tokens outside the set K are −1 (zero one-hot), the uniform term uses the full V
    x, y = markov(8, 10, 20, seed=5)
    keep = 15
    x_k, y_k = torch.where(x < keep, x, -1), torch.where(y < keep, y, -1)
    stats = compute_statistics(x_k, y_k, keep, chunk_size=3, full_vocab_size=20)
    reference = naive_statistics(x_k, y_k, keep, full_V=20)
    for name, expected in reference.items():
        got = getattr(stats, name)
        assert (got - expected).abs().max() <= 1e-10 * expected.abs().max(), name


def test_sharded_sums_reduced_equal_whole(markov):
    # each shard sees half the sequences; an all_reduce that adds the other shard's raw sums
    # (what torch.distributed.all_reduce does) must give exactly the whole corpus's statistics
    from common.theory.statistics import StatisticsAccumulator
    x, y = markov(10, 8, 12, seed=7)
    whole = compute_statistics(x, y, 12)
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]
    shards = [StatisticsAccumulator(12) for _ in halves]
    raw = {}

    def recorder(i):
        def record(t):
            raw.setdefault(i, []).append(t.clone())
        return record

    def reducer(i):
        other = iter(raw[1 - i])
        return lambda t: t.add_(next(other))

    for acc, (xs, ys) in zip(shards, halves):
        acc.add_first_pass(xs, ys)
    # collect both shards' raw sums first (in call order), then reduce
    import contextlib
    import copy
    for i, acc in enumerate(shards):
        copy.deepcopy(acc).end_first_pass(recorder(i))
    for i, acc in enumerate(shards):
        acc.end_first_pass(reducer(i))
    for acc, (xs, ys) in zip(shards, halves):
        acc.add_second_pass(xs, ys)
    raw.clear()
    for i, acc in enumerate(shards):
        with contextlib.suppress(RuntimeError):  # the unreduced copy fails its own consistency check
            copy.deepcopy(acc).finish(recorder(i))
    results = [acc.finish(reducer(i)) for i, acc in enumerate(shards)]
    for result in results:
        for name in CorpusStatistics.TENSOR_FIELDS:
            assert torch.allclose(getattr(result, name), getattr(whole, name), atol=1e-15), name


def test_statistics_from_batches_accepts_iterator_factory(markov):
    x, y = markov(6, 6, 9)
    batches = lambda: iter([(x[:2], y[:2]), (x[2:], y[2:])])
    a = statistics_from_batches(batches, 9)
    b = compute_statistics(x, y, 9)
    assert torch.allclose(a.attention_map, b.attention_map, atol=1e-15)


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        compute_statistics(torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="token ids"):
        compute_statistics(torch.full((2, 3), 4), torch.zeros(2, 3, dtype=torch.long), 4)


def test_non_contiguous_views(markov):
    # x = tokens[:, :-1] is a strided view: it must give the same as a contiguous copy
    x, y = markov(6, 8, 11)
    tokens = torch.cat([x, y[:, -1:]], dim=1)
    a = compute_statistics(tokens[:, :-1], tokens[:, 1:], 11)
    b = compute_statistics(x, y, 11)
    assert torch.equal(a.attention_map, b.attention_map)


@pytest.mark.parametrize("sparse", [True, False])
def test_sparse_and_dense_products_equal_naive(markov, monkeypatch, sparse):
    # the products with B̄ run as (sparse or dense) count products plus rank-one corrections; both
    # paths must give the dense formulas of docs/theory.md §2, also for a token subset
    import common.theory.statistics
    monkeypatch.setattr(common.theory.statistics, "_uses_sparse", lambda nnz, V, device: sparse)
    x, y = markov(7, 9, 25, seed=8)
    for keep, full in ((25, None), (18, 25)):
        x_k, y_k = torch.where(x < keep, x, -1), torch.where(y < keep, y, -1)
        stats = compute_statistics(x_k, y_k, keep, chunk_size=3, full_vocab_size=full)
        for name, expected in naive_statistics(x_k, y_k, keep, full_V=full).items():
            assert (getattr(stats, name) - expected).abs().max() <= 1e-10 * expected.abs().max(), (name, keep)


def test_input_frequency_and_context_input(markov):
    # P̂(x = i) and Ā = (1/n) Σ_t ā_tᵀ x_t (docs/theory.md §10) against dense one-hot sums
    V, T, N = 12, 6, 5
    x, y = markov(N, T, V, seed=9)
    stats = compute_statistics(x, y, V, chunk_size=2, keep=CorpusStatistics.TENSOR_FIELDS + ("context_input",))
    X = torch.nn.functional.one_hot(x, V).double()                         # [N, T, V]
    c = 1.0 / torch.arange(1, T + 1, dtype=torch.float64)
    prefix = X.cumsum(1) * c[None, :, None]                                # ā_t
    expected = torch.einsum("ntm,nti->mi", prefix, X) / (N * T)
    assert torch.allclose(stats.context_input, expected, atol=1e-15, rtol=1e-12)
    assert torch.allclose(stats.input_frequency, X.sum((0, 1)) / (N * T), atol=1e-15)
    assert compute_statistics(x, y, V).context_input is None               # only when asked for
