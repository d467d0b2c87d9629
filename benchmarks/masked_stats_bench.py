"""Masked statistics (one corruption draw, and in expectation over the corruption) against the causal
statistics and against the naive formulations, on the same random tokens.

    python benchmarks/masked_stats_bench.py                # V=3000 (2999 words + MASK), T=200, N=256 and 2048
    python benchmarks/masked_stats_bench.py --vocab_size=500 --seq_len=50 --sizes=64,128 --naive_subset=2

The naive sides (per-sequence dense one-hot products and a materialised T×T×T Jacobian for one draw;
per-position dense V×V moment products for the expectation) cost one identical loop iteration per
sequence, so they are timed on `naive_subset` sequences and scaled linearly to N (their single V³
product for G is not scaled); the output says so.  Equality with ours is checked on that subset.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import timed  # noqa: E402
from common.config import override  # noqa: E402
from common.theory.masked_statistics import expected_masked_statistics, masked_statistics  # noqa: E402
from common.theory.masking import MaskingScheme, corrupt  # noqa: E402
from common.theory.reference import naive_expected_masked_statistics, naive_masked_statistics  # noqa: E402
from common.theory.statistics import compute_statistics  # noqa: E402

vocab_size = 3000      # V, the model's vocabulary: vocab_size − 1 words and MASK (the last id)
seq_len = 200          # T
sizes = [256, 2048]    # N: number of sequences
naive_subset = 4       # sequences the naive one-draw side is timed on (per pass)
naive_expected_subset = 1  # sequences the naive expectation is timed on (per pass; ~T·V² each)
mask_prob = 0.15       # π
seed = 0
override(globals())


def max_relative_difference(stats, reference):
    return max(float((getattr(stats, name) - value).abs().max() / value.abs().max())
               for name, value in reference.items())


def naive_per_sequence(function, k):
    """Seconds per sequence of a naive formulation timed on k sequences, less its one V³ product for G."""
    reference, t_subset = timed(function)
    _, t_g = timed(lambda: (reference["bigram"] @ reference["context"]).T @ reference["bigram"])
    return reference, (t_subset - t_g) / k, t_g


torch.manual_seed(seed)
n_words = vocab_size - 1
scheme = MaskingScheme(mask_id=n_words, n_words=n_words, mask_prob=mask_prob)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; V={vocab_size} ({n_words} words + MASK), "
      f"T={seq_len}, π={mask_prob}")
tokens = torch.randint(n_words, (max(sizes), seq_len + 1))
x_all, y_all = tokens[:, :-1], tokens[:, 1:]
x_tilde_all, selected_all = corrupt(x_all, scheme, torch.Generator().manual_seed(seed))

k, k_e = min(naive_subset, min(sizes)), min(naive_expected_subset, min(sizes))
naive_masked_statistics(x_tilde_all[:1], x_all[:1], selected_all[:1], vocab_size)          # warm-up
reference, draw_per_sequence, draw_g = naive_per_sequence(
    lambda: naive_masked_statistics(x_tilde_all[:k], x_all[:k], selected_all[:k], vocab_size), k)
difference = max_relative_difference(
    masked_statistics(x_tilde_all[:k], x_all[:k], selected_all[:k], vocab_size), reference)
print(f"naive one draw: {draw_per_sequence:.3f} s per sequence (timed on {k}, scaled linearly to N) + {draw_g:.2f} s"
      f" for G;  max relative difference to ours: {difference:.1e}")
reference, expected_per_sequence, expected_g = naive_per_sequence(
    lambda: naive_expected_masked_statistics(x_all[:k_e], scheme, vocab_size), k_e)
difference = max_relative_difference(expected_masked_statistics(x_all[:k_e], scheme, vocab_size), reference)
print(f"naive expectation: {expected_per_sequence:.2f} s per sequence (timed on {k_e}, scaled linearly to N) + "
      f"{expected_g:.2f} s for G;  max relative difference to ours: {difference:.1e}")

for N in sizes:
    _, causal = timed(lambda: compute_statistics(x_all[:N], y_all[:N], vocab_size))
    _, draw = timed(lambda: masked_statistics(x_tilde_all[:N], x_all[:N], selected_all[:N], vocab_size))
    _, expected = timed(lambda: expected_masked_statistics(x_all[:N], scheme, vocab_size))
    naive_draw, naive_expected = draw_per_sequence * N + draw_g, expected_per_sequence * N + expected_g
    print(f"N={N:5d}  causal {causal:6.2f} s | one draw {draw:6.2f} s ({draw / causal:4.2f}× causal; naive "
          f"{naive_draw:7.1f} s scaled, {naive_draw / draw:5.1f}×) | expectation {expected:6.2f} s "
          f"({expected / causal:4.2f}× causal; naive {naive_expected:8.1f} s scaled, {naive_expected / expected:6.1f}×)")
