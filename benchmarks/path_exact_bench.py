"""The path-exact tracker's update (docs/theory.md §10) beside the training step it follows, on the same
batch: the tracker's overhead as a fraction of the step.

    python benchmarks/path_exact_bench.py                       # the demo size: V=712, T=64, B=64, L=3 (CPU)
    python benchmarks/path_exact_bench.py --device=cuda --vocab_size=3000 --seq_len=200 --batch_size=512

Step: common.tiny.training.sgd_step on the model (float32, as the trainer runs it).  Tracker: one
PathExactTracker.step on the same batch, in float64 (the trainer's setting).  Its naive counterpart is
the same update with common/theory/reference.py's dense one-hot statistics of the batch and V×V×V products
(on the CPU), timed once.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import best_time  # noqa: E402
from common.config import override  # noqa: E402
from common.theory.model import AttentionOnlyTransformer  # noqa: E402
from common.theory.path_exact import PathExactTracker  # noqa: E402
from common.theory.reference import naive_statistics_accumulate  # noqa: E402
from common.tiny.training import sgd_step  # noqa: E402

from benchmarks.demo_size import *  # noqa: E402,F401,F403  (vocab_size, seq_len, batch_size, n_layers, lr, …)

override(globals())

torch.manual_seed(seed)
tokens = torch.randint(vocab_size, (batch_size, seq_len + 1), device=device)
batch = [(tokens[:, :-1], tokens[:, 1:])]
model = AttentionOnlyTransformer(vocab_size, seq_len, n_layers, init_std=0.01).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=lr)
tracker = PathExactTracker(vocab_size, seq_len, lr, device=device)
for _ in range(3):                 # non-zero tracker state, so every product of the update does work
    tracker.step(batch)

t_step = best_time(lambda: sgd_step(model, optimizer, batch), repeats, device=device)
t_tracker = best_time(lambda: tracker.step(batch), repeats, device=device)


def naive_update():
    """The same update written naively (common/theory/reference.py): the batch's dense one-hot statistics,
    Φ̄ᵀW_Oᵀ and Ḡ = V W_O as V×V×V products, Q̄[Ḡ] with a materialised T×T×T Jacobian."""
    x, y = (t.cpu() for t in batch[0])
    W_O, value = tracker.output_t.T.cpu(), tracker.value.cpu()
    bigram_sum, context_sum = naive_statistics_accumulate(x, y, vocab_size)
    attention_sum, position_sum = naive_statistics_accumulate(x, y, vocab_size, G=value @ W_O)
    return bigram_sum, context_sum.T @ W_O.T, attention_sum, position_sum


t_naive = best_time(naive_update, 1, device=device)
print(f"path-exact tracker on {device}: V={vocab_size} T={seq_len} B={batch_size} L={n_layers} "
      f"({torch.get_num_threads()} threads)")
print(f"  training step (float32)        {t_step * 1e3:9.1f} ms")
print(f"  tracker update (float64)       {t_tracker * 1e3:9.1f} ms   overhead {t_tracker / t_step:6.1%} of the step")
print(f"  naive update (dense, float64)  {t_naive * 1e3:9.1f} ms   naive/tracker {t_naive / t_tracker:.1f}×")
