"""The Taylor series of training (docs/theory.md §14): Taylor-mode jets (common/theory/series.py) against
the nested forward-mode formulation (common/theory/reference.py, k nested jvp of the gradient), on the
same sequences; then, optionally, the cost of the jets alone on a whole corpus.

    python benchmarks/series_bench.py                      # demo size: V=712, T=64, L=3, 4 sequences, c_1 … c_5
    python benchmarks/series_bench.py --baseline=False --data_dir=data/synthetic --sequences=0 --order=6
                                                           # the cost of c_1 … c_6 on the whole demo corpus
    python benchmarks/series_bench.py --device=cuda --baseline=False --vocab_size=3000 --seq_len=200 \\
        --sequences=512 --order=6 --chunk=64               # the paper's natural size on a GPU

Random sequences unless --data_dir names a tokenizer's output folder (then its first T+1 tokens of each
story, as the trainer takes them).  The two formulations run alternately in one process (jets, nested,
jets, …) and the best time of each is compared; their largest relative difference is printed too.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import timed  # noqa: E402
from common.config import inherit, override  # noqa: E402
from common.theory.model import AttentionOnlyTransformer  # noqa: E402
from common.theory.reference import nested_jvp_series  # noqa: E402
from common.theory.series import gradient_flow_series  # noqa: E402

inherit(globals(), "demo_size.py")   # vocab_size, seq_len, n_layers, device, seed, repeats
sequences = 4          # sequences the series is taken on (0 with --data_dir: all of them)
order = 5              # c_1 … c_order
chunk = 16             # sequences per jet pass
baseline = True        # also time the nested forward-mode formulation (about 2^k gradients per order)
data_dir = ""          # a tokenizer's output folder instead of random sequences
repeats = 2            # jet timings (the nested formulation is timed once per repeat before the last)
override(globals())

if data_dir:
    from common.tiny.training import TrainConfig, load_training_data
    tokens, vocabulary = load_training_data(TrainConfig(data_dir=data_dir, seq_len=seq_len))[:2]
    tokens, vocab_size = tokens[:sequences or len(tokens)].long(), len(vocabulary)
else:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(vocab_size, (sequences, seq_len + 1), generator=generator)
x, y = tokens[:, :-1], tokens[:, 1:]
model = AttentionOnlyTransformer(vocab_size, seq_len, n_layers).to(device)
print(f"series c_1 … c_{order} on {device}: V={vocab_size} T={seq_len} L={n_layers}, {len(x):,} sequences, "
      f"chunks of {chunk} ({torch.get_num_threads()} threads)")
jet_times, nested_times, difference = [], [], None
for repeat in range(repeats):
    jets, seconds = timed(lambda: gradient_flow_series(model, x, y, order, chunk_size=chunk, device=device), device)
    jet_times.append(seconds)
    if baseline and repeat < max(1, repeats - 1):
        nested, seconds = timed(lambda: nested_jvp_series(model, x, y, order))
        nested_times.append(seconds)
        difference = max(float((jets[k][name] - nested[k][name]).norm() / nested[k][name].norm())
                         for k in range(order) for name in nested[k] if nested[k][name].any())
print(f"  jets (Taylor mode)         {min(jet_times):9.2f} s   ({min(jet_times) / len(x) * 1e3:.1f} ms per sequence)")
if nested_times:
    print(f"  nested jvp (reference)     {min(nested_times):9.2f} s   nested/jets {min(nested_times) / min(jet_times):.1f}×"
          f"   largest relative difference {difference:.1e}")
