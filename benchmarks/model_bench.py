"""Forward+backward of the attention-only model: ours against the naive formulation, and the floor.

    python benchmarks/model_bench.py                                  # V=3000, T=200, B=8, L=3 on CPU
    python benchmarks/model_bench.py --device=cuda --batch_size=512   # the paper's configuration on a GPU

Naive: a dense one-hot product at layer 1 and a Python loop filling each diagonal of the position
bias.  Floor: the dense V×V products a step cannot avoid — h@W and h@V at layers 2..L and h@W_O,
each with its two backward products — timed alone on the same shapes.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.theory.reference import naive_model_forward  # noqa: E402
from benchmarks.timing import best_time, dense_step_flops  # noqa: E402
from common.config import override  # noqa: E402
from common.theory.model import AttentionOnlyTransformer  # noqa: E402

vocab_size = 3000
seq_len = 200
batch_size = 8
n_layers = 3
device = "cpu"
dtype = "float32"
repeats = 3
naive = True          # also time the naive model (slow on a GPU at batch 512: set False there)
seed = 0
override(globals())

torch.manual_seed(seed)
dt = getattr(torch, dtype)
model = AttentionOnlyTransformer(vocab_size, seq_len, n_layers, init_std=0.02).to(device, dt)
tokens = torch.randint(vocab_size, (batch_size, seq_len + 1), device=device)
x, y = tokens[:, :-1], tokens[:, 1:]


def step(forward):
    def run():
        model.zero_grad(set_to_none=True)
        logits = forward(x)
        torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1)).backward()
    return run


# the unavoidable dense products, on the step's own shapes: (B·T × V)(V × V) forward, and for the
# backward dh = dY Mᵀ and dM = hᵀ dY
h = torch.randn(batch_size * seq_len, vocab_size, device=device, dtype=dt)
M = torch.randn(vocab_size, vocab_size, device=device, dtype=dt)
n_dense = 2 * (n_layers - 1) + 1


def floor():
    for _ in range(n_dense):
        out = h @ M
        out @ M.T
        h.T @ out


flops = dense_step_flops(batch_size, seq_len, vocab_size, n_layers)
t_floor = best_time(floor, repeats, device=device)
t_ours = best_time(step(model), repeats, device=device)
print(f"{device} {dtype}: V={vocab_size} T={seq_len} B={batch_size} L={n_layers}")
print(f"  ours   forward+backward {t_ours * 1e3:9.1f} ms   {flops / t_ours / 1e12:7.2f} TFLOP/s (dense products)")
print(f"  floor  dense V×V products alone {t_floor * 1e3:9.1f} ms   ours/floor {t_ours / t_floor:.2f}×")
if naive:
    with torch.no_grad():
        assert torch.allclose(model(x), naive_model_forward(model, x), rtol=1e-4, atol=1e-4)
    t_naive = best_time(step(lambda tokens: naive_model_forward(model, tokens)), repeats, device=device)
    print(f"  naive  forward+backward {t_naive * 1e3:9.1f} ms   naive/ours {t_naive / t_ours:.2f}×")
if torch.device(device).type == "cuda":
    print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2 ** 30:.1f} GiB")
