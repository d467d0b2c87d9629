"""Pythia pipeline on the CPU: the per-layer comparison against its naive formulation, and the
statistics at V ≈ 50k.  Single process.

    python benchmarks/pythia_bench.py                             # n = 4000, d = 256; V = 50304, 1000 documents
    python benchmarks/pythia_bench.py --n_tokens=500 --d_model=32 --stats_vocab=2000 --stats_documents=50

1. rsa with an n×n theory matrix (the Pythia shape: |K| × |K| against n × d_model), and one layer's
   three similarities (attention H̃MH̃ᵀ vs Q̄, H_mid and H_post vs (B̄Φ̄)ᵀ): ours (targets prepared
   once, attention factored, no n×n matrix on the model side) against the naive formulation
   (explicit n×n logits and covariances, traces of n×n products), same inputs, results compared.
2. Statistics at V = stats_vocab for stats_documents random documents of T+1 tokens (float32):
   the whole computation is run at V = dense_vocab; at the full V the first scatter pass is run (two
   V×V buffers, 20 GB at V = 50304: the free memory is checked first) and the two dense V³ products
   are scaled by (V/dense_vocab)³ — on two CPU cores they dominate (and the full computation needs
   three V×V matrices, 30 GB), which is why V = 50k wants a GPU (benchmarks/gpu_pythia_bench.py) or
   --top_tokens.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.theory.reference import naive_layer_similarities, naive_rsa, random_layer  # noqa: E402
from benchmarks.timing import timed  # noqa: E402
from common.checkpoints.comparison import TheoryTargets, attention_similarity  # noqa: E402
from common.theory.similarity import normalize_rows, rsa, rsa_to_target  # noqa: E402
from common.theory.statistics import StatisticsAccumulator  # noqa: E402

n_tokens = 4000         # n = |K| for the similarity comparison
d_model = 256           # model width for the similarity comparison
stats_vocab = 50304     # V for the statistics (Pythia's padded vocabulary)
stats_documents = 1000  # documents of T+1 random tokens
seq_len = 128           # T
dense_vocab = 4096      # largest V at which the V³ products are actually run on the CPU
seed = 0


def fast_layer_similarities(targets, h_pre, h_mid, h_post, M) -> dict:
    return {"attention": attention_similarity(targets.attention, h_pre, M),
            "no_mlp": rsa_to_target(targets.value, h_mid), "embedding": rsa_to_target(targets.value, h_post)}


def similarity_benchmark():
    generator = torch.Generator().manual_seed(seed)
    attention_map, value_map, h_pre, h_mid, h_post, M = random_layer(n_tokens, d_model, generator)
    print(f"— similarities: n = {n_tokens}, d_model = {d_model}, float64, {torch.get_num_threads()} threads")
    fast_rsa, t_fast = timed(lambda: rsa(value_map, h_mid, normalize_a=True))
    slow_rsa, t_slow = timed(lambda: naive_rsa(normalize_rows(value_map), h_mid))
    print(f"rsa (n×n theory vs n×d): ours {t_fast:.3f} s   naive {t_slow:.2f} s   ratio {t_slow / t_fast:.1f}×"
          f"   |difference| {abs(fast_rsa - slow_rsa):.1e}")
    statistics = {"attention_map": attention_map.clone(), "value_map": value_map.clone()}
    targets, t_prepare = timed(lambda: TheoryTargets(statistics, torch.float64))
    fast, t_fast = timed(lambda: fast_layer_similarities(targets, h_pre, h_mid, h_post, M))
    slow, t_slow = timed(lambda: naive_layer_similarities(attention_map, value_map, h_pre, h_mid, h_post, M))
    difference = max(abs(fast[k] - slow[k]) for k in fast)
    print(f"one layer, 3 similarities: ours {t_fast:.3f} s (+ {t_prepare:.2f} s once per run to prepare the two "
          f"targets)   naive {t_slow:.2f} s   ratio {t_slow / t_fast:.1f}× per layer   "
          f"max |difference| {difference:.1e}   values " + " ".join(f"{k} {v:.3f}" for k, v in fast.items()))
    return t_slow / t_fast


def _available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _timed_passes(V, x, y, dtype):
    """(seconds, accumulator, chunks) of allocating the accumulator and its first pass (public API)."""
    chunks = [(x[i:i + 256], y[i:i + 256]) for i in range(0, len(x), 256)]

    def run():
        accumulator = StatisticsAccumulator(V, V, "cpu", dtype, keep=("value_map", "attention_map"))
        for a, b in chunks:
            accumulator.add_first_pass(a, b)
        return accumulator

    accumulator, seconds = timed(run)
    return seconds, accumulator, chunks


def statistics_benchmark():
    V, dtype = stats_vocab, torch.float32
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(V, (stats_documents, seq_len + 1), generator=generator)
    print(f"— statistics: V = {V}, {stats_documents} documents × T = {seq_len}, float32 on the CPU")
    # the whole computation at a size where the V³ products are affordable here
    m = min(V, dense_vocab)
    small = tokens % m
    t_pass1_small, accumulator, chunks = _timed_passes(m, small[:, :-1], small[:, 1:], dtype)
    _, t_end = timed(accumulator.end_first_pass)
    _, t_pass2 = timed(lambda: [accumulator.add_second_pass(a, b) for a, b in chunks])
    del accumulator
    print(f"at V = {m}: pass 1 scatter {t_pass1_small:.2f} s   two V³ products {t_end:.1f} s   "
          f"pass 2 scatter {t_pass2:.1f} s")
    if V == m:
        return
    # pass 1 at the full V (two V×V scatter buffers; the V³ products and pass 2 need three V×V
    # matrices at once — 30 GB at V = 50304 — so they are scaled from the run above)
    need = 2 * (V * V + 1) * 4 + (1 << 30)
    available = _available_bytes()
    if available and available < need:
        print(f"pass 1 at V = {V} needs {need / 2 ** 30:.1f} GiB free; {available / 2 ** 30:.1f} GiB available: "
              f"skipped")
        t_pass1 = float("nan")
    else:
        t_pass1, accumulator, _ = _timed_passes(V, tokens[:, :-1], tokens[:, 1:], dtype)
        del accumulator
    scale = (V / m) ** 3
    print(f"at V = {V}: pass 1 scatter {t_pass1:.1f} s (measured, incl. zeroing its two V×V buffers)   two V³ "
          f"products ≈ {t_end * scale:.0f} s (×{scale:.0f} from V = {m})   pass 2 scatter ≈ {t_pass2:.1f} s "
          f"(scatter cost does not grow with V; taken from V = {m})")
    print(f"total ≈ {t_pass1 + t_end * scale + t_pass2:.0f} s ≈ {(t_pass1 + t_end * scale + t_pass2) / 3600:.1f} h "
          f"on this CPU, and 30 GB of V×V matrices: V = 50k wants a GPU (gpu_pythia_bench.py) or --top_tokens")


if __name__ == "__main__":
    from common.config import override

    override(globals())
    torch.manual_seed(seed)
    similarity_benchmark()
    statistics_benchmark()
