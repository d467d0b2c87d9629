"""Train the 3-layer attention-only transformer on natural-tokenized Tiny Stories (docs/theory.md §5) and track
how each weight lines up with its leading-term matrix (cos(W_O, B̄), cos(V, (B̄Φ̄)ᵀ), cos(W, Q̄), cos(P, p̄)).

Usage:
    python tiny_tokenize_natural.py                     # first: writes data/natural
    python tiny_self_attn_natural.py                    # one process (GPU when there is one)
    torchrun --nproc_per_node=4 tiny_self_attn_natural.py          # 4 GPUs (batch_size is per GPU)
    python tiny_self_attn_natural.py --out_dir=out/natural --resume=True   # continue a run with its saved settings
    python tiny_self_attn_natural.py --stats_sequences=512         # the release's one-batch statistics
Writes --out_dir/{training_logs.json, checkpoints/, config.json, associations.md, explorer.html}; plot the
log with tiny_plot_logs.py, ablate the theory directions with tiny_causal.py, open explorer.html in a browser.
"""
from common.config import override
from common.io import exit_on_user_error

data_dir = "data/natural"       # output folder of tiny_tokenize_natural.py
out_dir = "out/natural"         # run folder: logs, checkpoints, report
seq_len = 200                   # T: stories with fewer than T+1 tokens are skipped
windows = False                 # False: each story's first T+1 tokens (the release's rule); True: every
                                # story cut into consecutive windows of T+1 tokens (long documents used whole)
n_layers = 3                    # the paper's depth (the release script defaulted to 1)
batch_size = 512                # sequences per process (per GPU) per micro-step
grad_accum = 1                  # micro-steps per optimiser step
epochs = 100
tau = 0.0                       # train until τ = lr × steps reaches this instead of for `epochs` (0: use epochs);
                                # the theory's clock: the early regime ends at a τ tiny_regime.py predicts
max_steps_per_epoch = 0         # 0: every full global batch
max_steps = 0                   # stop early after this many optimiser steps (0: all epochs)
lr = 0.005                      # learning rate (plain SGD: no momentum, no weight decay; or Adam, below)
init_std = 0.0                  # zero initialisation, as the theory assumes
objective = "causal"            # causal: predict the next token (the paper); masked: predict the masked
                                # tokens (Li, Li & Risteski 2023; docs/theory.md §16): first T tokens of each
                                # sequence, a fresh corruption every step and epoch, MASK appended to the vocabulary
mask_prob = 0.15                # masked only: the probability that a position is selected (carries the loss)
mask_split = [0.8, 0.1, 0.1]    # masked only: a selected position shows MASK / its own token / a random word
attention = "auto"              # auto (causal for objective=causal, all positions for masked), causal, all
residual = True                 # h^l = h^{l-1} + attention output; False: the attention output alone (False with
                                # output=trained from zero never moves: refused unless init_std > 0)
output = "trained"              # trained: logits = h^L W_O; identity: logits = h^L, W_O frozen to the identity
                                # (Li, Li & Risteski's decoder; one-hot hidden states are already vocabulary-sized)
optimizer = "sgd"               # sgd (plain, the theory's) or adam (Li, Li & Risteski's; path_exact then off)
uniform_attention_steps = 0     # Li, Li & Risteski's first stage: W and P held at zero (attention uniform) for this
                                # many optimiser steps while V and W_O train; then every weight trains
path_exact = True               # log each weight against its path-exact prediction (docs/theory.md §10)
log_every = 2.0                 # epochs between log points (fractions allowed)
save_every = 10.0               # epochs between checkpoints (0: only at the end)
keep_checkpoints = 2            # newest checkpoints kept
stats_sequences = 0             # sequences for the corpus statistics (0: all training sequences)
stats_chunk = 64                # sequences per statistics chunk (memory ~ chunk × T²/2 × 8 bytes × 4)
max_sequences = 0               # use only the first N sequences (0: all)
seed = 42
resume = False                  # continue from the newest checkpoint in out_dir
report_top = 5                  # partners per token in associations.md (0: no report)
report_tokens = 20              # most frequent tokens in the report
report_words = ""               # extra tokens for the report, comma-separated (e.g. "bird,dog")
report_view = "normalised"      # report values: normalised (row a / P̂(x=a): for B̄, P̂(next|a) − 1/V), raw, both,
                                # or lift (÷ P̂(a)P̂(b): partners ranked without the pull of frequent tokens)
device = "auto"                 # auto (cuda:LOCAL_RANK when a GPU is visible), cpu, cuda
deterministic = True            # deterministic kernels: same data, settings, seed → same bytes (False: faster)
tf32 = False                    # TensorFloat-32 matmuls on GPU: faster, ~1e-3 relative error (docs/benchmarks.md §8)
progress = True                 # tqdm progress bar with the loss



def run(settings: dict) -> None:
    """Train, then write the association report and the explorer page (report_top > 0); shared with
    tiny_self_attn_bpe.py."""
    from common.tiny.explorer import ExplorerPage
    from common.tiny.report import AssociationReport
    from common.tiny.training import final_summary, train
    outputs = [AssociationReport(), ExplorerPage()] if settings["report_top"] > 0 else []   # what the run writes
    result = train(settings, callbacks=outputs, log=print)
    if result["main"]:
        print("\n".join(final_summary(result)))


if __name__ == "__main__":
    with exit_on_user_error():
        run(override(globals()))
