"""The trainer of tiny_self_attn_natural.py on BPE-tokenized Tiny Stories (docs/theory.md §5): same model, same
logs, checkpoints and report; the release's BPE settings below (10000-token vocabulary, batch 128
per GPU with 4-step gradient accumulation, 10 epochs of at most 50 optimiser steps, a log point every
0.1 epoch). Every other hyperparameter, and its meaning, is the natural script's.

Usage:
    python tiny_tokenize_bpe.py                      # first: writes data/bpe
    python tiny_self_attn_bpe.py                     # one process (GPU when there is one)
    torchrun --nproc_per_node=4 tiny_self_attn_bpe.py --grad_accum=1   # 4 GPUs, same global batch of 512
    python tiny_self_attn_bpe.py --resume=True       # continue from the newest checkpoint
    python tiny_self_attn_bpe.py --stats_sequences=512   # the release's statistics from 4 batches of 128
"""
from common.config import inherit, override
from common.io import exit_on_user_error

inherit(globals(), "tiny_self_attn_natural.py")   # every setting of the natural script; the BPE values below

data_dir = "data/bpe"           # output folder of tiny_tokenize_bpe.py
out_dir = "out/bpe"             # run folder: logs, checkpoints, report
batch_size = 128                # sequences per process (per GPU) per micro-step
grad_accum = 4                  # micro-steps per optimiser step
epochs = 10
max_steps_per_epoch = 50        # the release capped each epoch at 50 optimiser steps (0: no cap)
log_every = 0.1                 # epochs between log points
save_every = 1.0                # epochs between checkpoints

if __name__ == "__main__":
    with exit_on_user_error():
        from tiny_self_attn_natural import run
        run(override(globals()))
