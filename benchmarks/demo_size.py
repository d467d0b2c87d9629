"""The hyperparameters of the step benchmarks at the demo's size (the synthetic corpus, `make demo`):
one block that train_bench.py and path_exact_bench.py both start from (`from benchmarks.demo_size
import *`), then override from the command line."""
vocab_size = 712      # the synthetic demo corpus's vocabulary
seq_len = 64          # T, as in the demo
batch_size = 64       # sequences per step, as in the demo
n_layers = 3
lr = 0.45             # the demo's learning rate
repeats = 3           # timed repetitions (the best is reported)
device = "cpu"
seed = 0
