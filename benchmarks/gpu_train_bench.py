"""The Tiny Stories trainer's SGD step at the paper's sizes on one GPU, on random tokens of the right
vocabulary size (training speed does not depend on the token values):

    natural  V = 3000,  T = 200, batch 512,                      3 layers
    BPE      V = 10000, T = 200, batch 128 × 4 accumulation steps, 3 layers

For each configuration and matmul precision (fp32; tf32 = TensorFloat-32 tensor cores): seconds per
optimiser step, tokens/s, peak GPU memory, and the achieved TFLOP/s of the dense V×V products
(forward h@W, h@V at layers 2..L and h@W_O, each with its two backward products:
3 · (2(L−1)+1) · 2·B·T·V² per micro-batch; the T×T attention products and the gathers of layer 1
are not counted). Then the time of the docs/theory.md §2 statistics (float64) of `stats_sequences` sequences.
Nothing here imports `datasets` (the GPU machine does not have it). Timings: docs/benchmarks.md §8.

    python benchmarks/gpu_train_bench.py
    python benchmarks/gpu_train_bench.py --device=cpu --natural_vocab=40 --bpe_vocab=60 \\
        --natural_batch=4 --bpe_batch=2 --seq_len=16 --steps=1 --stats_sequences=8   # smoke test
"""
import sys
import time
from pathlib import Path

import torch

natural_vocab = 3000
natural_batch = 512
bpe_vocab = 10000
bpe_batch = 128
bpe_accum = 4
seq_len = 200
n_layers = 3
lr = 0.005
steps = 3               # timed optimiser steps per configuration (after one warm-up step)
precisions = ["fp32", "tf32"]
stats_sequences = 2048  # sequences for the statistics timing (0: skip)
stats_chunk = 64
device = "cuda"
seed = 0

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import dense_step_flops, timed  # noqa: E402
from common.config import override  # noqa: E402
from common.theory.model import AttentionOnlyTransformer  # noqa: E402
from common.theory.statistics import compute_statistics  # noqa: E402
from common.tiny.training import sgd_step  # noqa: E402

override(globals())

cuda = torch.device(device).type == "cuda"
if cuda and not torch.cuda.is_available():
    sys.exit("error: no GPU visible; pass --device=cpu for a smoke test")
name = torch.cuda.get_device_name() if cuda else "cpu"


def measure(label, vocab, batch, accum, precision):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.manual_seed(seed)
    model = AttentionOnlyTransformer(vocab, seq_len, n_layers, init_std=0.01).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    data = torch.randint(vocab, (accum, batch, seq_len + 1), device=device)
    micro = [(d[:, :-1], d[:, 1:]) for d in data]
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sgd_step(model, optimizer, micro)                     # warm-up
    seconds = min(timed(lambda: sgd_step(model, optimizer, micro), device)[1] for _ in range(steps))
    memory = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    flops = accum * dense_step_flops(batch, seq_len, vocab, n_layers)
    del model, optimizer, data, micro
    return [label, precision, vocab, f"{batch}×{accum}", f"{seconds:.3f}", f"{accum * batch * seq_len / seconds:,.0f}",
            f"{memory:.1f}", f"{flops / seconds / 1e12:.1f}"]


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))


start = time.time()
print(f"Tiny Stories trainer on {name}, torch {torch.__version__}, T={seq_len}, {n_layers} layers, SGD\n")
rows = [measure(label, vocab, batch, accum, precision)
        for label, vocab, batch, accum in (("natural", natural_vocab, natural_batch, 1),
                                           ("BPE", bpe_vocab, bpe_batch, bpe_accum))
        for precision in precisions]
table(["config", "matmul", "V", "batch", "s/step", "tokens/s", "peak GiB", "TFLOP/s"], rows)
torch.backends.cuda.matmul.allow_tf32 = False
if stats_sequences:
    print()
    for vocab in (natural_vocab, bpe_vocab):
        tokens = torch.randint(vocab, (stats_sequences, seq_len + 1), device=device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        _, seconds = timed(lambda: compute_statistics(tokens[:, :-1], tokens[:, 1:], vocab, chunk_size=stats_chunk,
                                                      device=device), device)
        memory = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
        print(f"statistics (float64) of {stats_sequences} sequences, V={vocab}: {seconds:.2f} s, "
              f"{stats_sequences * seq_len / seconds:,.0f} positions/s, peak {memory:.1f} GiB")
print(f"\ntotal {time.time() - start:.0f} s")
