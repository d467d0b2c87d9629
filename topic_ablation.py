"""What makes attention topical, and what turns it away (docs/theory.md §11, §16; findings in docs/results.md §3):
train the attention-only model on one LDA corpus in every cell of objective (masked / causal) × attention
(all positions / causal) × depth (1 / 3 layers) × residual (on with a trained W_O / off with W_O frozen to the
identity), the same steps and batches, and measure per layer the same-topic over different-topic attention on
held-out text and whether the queries that train each layer already carry their own topic.

Usage:
    python topic_ablation.py                                         # → out/topic_ablation (its cost: docs/results.md §3)
    python topic_ablation.py --depths=1 --objectives=masked --out_dir=out/topic_ablation_masked
    python topic_ablation.py --n_documents=2000 --steps=200 --log_points=4     # a quick look
Single process.  Writes --out_dir/{topic_ablation.json, topic_ablation.md, topic_ablation.png/.pdf, data/,
runs/<cell>/} (replaced as a whole when every cell succeeded).
"""
from common.config import inherit, override
from common.io import exit_on_user_error

# the LDA corpus: topic_structure.py's settings (Li, Li & Risteski 2023's parameters; its block is their home,
# --help shows its comments)
inherit(globals(), "topic_structure.py", names=("n_topics", "words_per_topic", "alpha", "min_length", "max_length",
                                                "n_documents", "overlap", "data", "topics", "vocab_size",
                                                "heldout_documents"))
# the grid
objectives = ["masked", "causal"]   # masked LM (15%, 80/10/10) and next-token prediction
attentions = ["all", "causal"]      # attention over all positions, or causal
depths = [1, 3]                     # layers
residuals = [True, False]           # False: no residual, W_O frozen to the identity (Li, Li & Risteski's variant)
deep_init_std = 0.1             # init of the no-residual cells with more than one layer (from zero they never move)
# training: every cell the same (plain SGD, the same batches)
seq_len = 64                    # T: each document's first T + 1 words (the masked objective uses the first T)
batch_size = 64                 # sequences per step
steps = 520                     # SGD steps per cell
lr = 4.0                        # learning rate
log_points = 10                 # log points per cell, evenly spaced (each one measured)
stats_sequences = 256           # sequences of the trainer's statistics (the grid does not use them)
probe_sequences = 64            # held-out sequences of the query-topic measure
seed = 0                        # the corpus, the training order, the probe's corruption
device = "cpu"                  # cpu, cuda or auto
num_threads = 1                 # CPU threads: a model this small runs fastest on one; 0 = torch's default
progress = False                # progress bars
out_dir = "out/topic_ablation"  # replaced as a whole when every cell succeeded

if __name__ == "__main__":
    with exit_on_user_error():
        from common.tiny.topic_ablation import TopicAblationConfig, run_topic_ablation, summary_lines
        result = run_topic_ablation(TopicAblationConfig.from_settings(override(globals())), log=print)
        print("\n".join(summary_lines(result)))
        print(f"wrote {out_dir}/topic_ablation.json, topic_ablation.md and topic_ablation.png/.pdf")
