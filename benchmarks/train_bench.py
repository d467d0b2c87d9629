"""Training throughput of the Tiny Stories trainer's SGD step against the naive model formulation, on
the same inputs: tokens per second of forward + backward + SGD update.

    python benchmarks/train_bench.py                          # V=712 (the demo corpus), T=64, B=64, L=3
    python benchmarks/train_bench.py --vocab_size=3000 --seq_len=200 --batch_size=4

Ours: common.tiny.training.sgd_step on the model of common/theory/model.py (layer 1 as row gathers W[tokens],
V[tokens]; the position bias DM(P) as one gather). Naive (common/theory/reference.py): a dense one-hot
product at layer 1 and a Python loop filling DM(P) diagonal by diagonal; same step function around it.
The cost of determinism (docs/theory.md §13): our step with deterministic kernels (the trainer's
default) against the same step with `--deterministic=False`, timed alternately in one run.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.theory.reference import naive_model_forward  # noqa: E402
from benchmarks.timing import best_time  # noqa: E402
from common.config import override  # noqa: E402
from common.device import configure_numerics  # noqa: E402
from common.theory.model import AttentionOnlyTransformer  # noqa: E402
from common.tiny.training import sgd_step  # noqa: E402

from benchmarks.demo_size import *  # noqa: E402,F401,F403  (vocab_size, seq_len, batch_size, n_layers, lr, …)

override(globals())

torch.manual_seed(seed)
tokens = torch.randint(vocab_size, (batch_size, seq_len + 1), dtype=torch.int32)


def trainer_step(forward_of):
    torch.manual_seed(seed)           # the same initial weights for both
    model = AttentionOnlyTransformer(vocab_size, seq_len, n_layers, init_std=0.01).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    forward = forward_of(model)

    def step():
        batch = tokens.to(device).long()
        return sgd_step(forward, optimizer, [(batch[:, :-1], batch[:, 1:])])
    return step


configure_numerics(deterministic=True)
ours, naive = trainer_step(lambda m: m), trainer_step(lambda m: (lambda x: naive_model_forward(m, x)))
assert abs(ours() - naive()) < 1e-4, "the two formulations disagree"
t_ours = best_time(ours, repeats, device=device)
t_naive = best_time(naive, repeats, device=device)
# determinism on and off, alternately, so that machine load falls on both alike
t_on, t_off = float("inf"), float("inf")
for _ in range(repeats):
    configure_numerics(deterministic=False)
    t_off = min(t_off, best_time(ours, 1, device=device))
    configure_numerics(deterministic=True)
    t_on = min(t_on, best_time(ours, 1, device=device))
n = batch_size * seq_len
print(f"trainer SGD step on {device}: V={vocab_size} T={seq_len} B={batch_size} L={n_layers} "
      f"({torch.get_num_threads()} threads)")
print(f"  ours   {t_ours * 1e3:9.1f} ms/step   {n / t_ours:10.0f} tokens/s")
print(f"  naive  {t_naive * 1e3:9.1f} ms/step   {n / t_naive:10.0f} tokens/s")
print(f"  speed-up ours/naive {t_naive / t_ours:.2f}×")
print(f"  determinism: deterministic {t_on * 1e3:.1f} ms/step, non-deterministic {t_off * 1e3:.1f} ms/step, "
      f"cost ×{t_on / t_off:.3f}")
