"""How the cost of one training step grows with the vocabulary V, the sequence length T and the batch B:
the trainer's whole SGD step (forward, backward, update; common.tiny.training.sgd_step) timed at each
size of a grid, each size's best of `repeats`, the sizes interleaved so that machine load falls on all
alike.  The dense V×V products dominate (benchmarks/timing.dense_step_flops: 3 (2L − 1) · 2 B T V²), so the
step should grow as B·T·V²; the last column divides each time by that count.

    python benchmarks/step_cost_bench.py                                   # the grid of docs/your_corpus.md
    python benchmarks/step_cost_bench.py --sizes=1000x32x64,3000x32x64     # V x T x B, comma-separated
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import best_time, dense_step_flops  # noqa: E402
from common.config import override  # noqa: E402
from common.device import configure_numerics  # noqa: E402
from common.io import UserError, exit_on_user_error  # noqa: E402
from common.theory.model import AttentionOnlyTransformer  # noqa: E402
from common.tiny.training import sgd_step  # noqa: E402

sizes = "1000x32x64,2000x32x64,4000x32x64,2000x64x64,2000x128x64,2000x32x16,2000x32x256"  # V x T x B
n_layers = 3
lr = 1.0
repeats = 3           # timed repetitions per size (the best is reported)
rounds = 2            # passes over the grid (interleaved; the best over all passes is reported)
device = "cpu"
seed = 0


def parse_sizes(text: str) -> list:
    try:
        grid = [tuple(int(v) for v in item.split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        grid = []
    if not grid or any(len(size) != 3 or min(size) < 1 for size in grid):
        raise UserError(f"--sizes must be V x T x B triples like 2000x32x64, comma-separated (got {text!r})")
    return grid


def step_of(V: int, T: int, B: int):
    torch.manual_seed(seed)
    model = AttentionOnlyTransformer(V, T, n_layers, init_std=0.01).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    tokens = torch.randint(V, (B, T + 1)).to(device)
    return lambda: sgd_step(model, optimizer, [(tokens[:, :-1], tokens[:, 1:])])


if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        grid = parse_sizes(sizes)
        configure_numerics(deterministic=True)
        best = {size: float("inf") for size in grid}
        for _ in range(rounds):
            for size in grid:
                best[size] = min(best[size], best_time(step_of(*size), repeats, device=device))
        print(f"trainer SGD step on {device}, L={n_layers}, {torch.get_num_threads()} threads, deterministic kernels")
        print(f"{'V':>6} {'T':>5} {'B':>5} {'ms/step':>10} {'ns per B·T·V²':>15}")
        for (V, T, B), seconds in best.items():
            print(f"{V:>6} {T:>5} {B:>5} {1e3 * seconds:>10.1f} {1e9 * seconds / (B * T * V * V):>15.3f}")
        flops = {size: dense_step_flops(size[2], size[1], size[0], n_layers) for size in grid}
        print(f"dense V×V products: {min(flops[s] / best[s] for s in grid) / 1e9:.1f}–"
              f"{max(flops[s] / best[s] for s in grid) / 1e9:.1f} GFLOP/s")
