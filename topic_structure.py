"""Topic structure (docs/theory.md §11): train the 3-layer attention-only model on an LDA corpus (Li, Li
& Risteski 2023's parameters by default) and measure, at every log point, how its weights and its
attention separate same-topic from different-topic token pairs, beside the same measures of the
closed forms (B̄, Φ̄, Σ_B, (B̄Φ̄)ᵀ, Q̄) and of the leading-term model.

Usage:
    python topic_structure.py                                    # → out/topics
    python topic_structure.py --overlap=3 --alpha=0.5 --out_dir=out/topics_overlap
    python topic_structure.py --data=corpus.txt --topics=topics.json --seq_len=32   # your text, your topics
    python topic_structure.py --objective=masked --n_layers=1 --out_dir=out/topics_masked      # masked LM
    python topic_structure.py --preset=li2023 --out_dir=out/topics_li2023    # Li, Li & Risteski's release model
Pairs are binned as same token / same topic (different tokens) / different topic by the word → topic
table (the generator's, or --topics: a JSON object {word: topic or [topics]}, every vocabulary word
listed; [] leaves a word out).  Writes --out_dir/{topic_structure.json, topic_structure.png/.pdf,
data/ (the natural tokens and topics.json), run/ (the trainer's log and last checkpoint)}; the whole
folder is replaced only when the run succeeds.
"""
from common.config import override
from common.io import exit_on_user_error

# the LDA corpus (--data=lda)
n_topics = 10                   # topics
words_per_topic = 10            # words in each topic's block
alpha = 0.1                     # symmetric Dirichlet concentration of each document's topic mixture
min_length = 100                # document length in words: uniform in [min_length, max_length]
max_length = 150                # (both inclusive)
n_documents = 10000             # training documents
overlap = 0                     # words shared by adjacent topics (0: disjoint blocks)
# or your own corpus
data = "lda"                    # lda, or a local .txt/.jsonl/.parquet/saved dataset (then --topics)
topics = ""                     # word → topic table (JSON) of a corpus other than lda
vocab_size = 3000               # natural-tokenizer vocabulary (an LDA corpus uses all its words)
heldout_documents = 200         # documents kept out of training; attention is measured on them
# the model and its training (common/tiny/training.py; docs/theory.md §16 for the masked objective)
preset = ""                     # li2023: Li, Li & Risteski's release (masked, 1 layer, no residual, identity output,
                                # Adam 0.01, batch 40, both stages); settings given on the command line win
objective = "causal"            # causal (next token) or masked (masked LM; attention measured on clean held-out text)
mask_prob = 0.15                # masked: the probability that a position carries the loss
mask_split = [0.8, 0.1, 0.1]    # masked: a loss position shows MASK / its own word / a random word
attention = "auto"              # auto (causal for causal, all positions for masked), causal or all
residual = True                 # the residual stream (False: h^l = A h^{l-1} V^l)
output = "trained"              # trained W_O, or identity (logits = h^L: Li, Li & Risteski's decoder)
optimizer = "sgd"               # sgd or adam
uniform_attention_steps = 0     # the first stage: W and P frozen at zero (uniform attention) for this many steps
seq_len = 64                    # T: each document's first T + 1 words
n_layers = 3                    # the paper's depth
batch_size = 64                 # sequences per SGD step
epochs = 4                      # 624 steps at the defaults (their time: docs/benchmarks.md §1)
lr = 4.0                        # plain SGD from zero
log_every = 0.05                # epochs between log points (each one measured)
seed = 0                        # the corpus and the training order
device = "cpu"                  # cpu, cuda or auto
deterministic = True            # deterministic kernels: same data, settings, seed → same bytes (False: faster)
num_threads = 1                 # CPU threads: a model this small runs fastest on one; 0 = torch's default
progress = True                 # progress bars
out_dir = "out/topics"          # replaced as a whole when the run succeeds

if __name__ == "__main__":
    with exit_on_user_error():
        from common.tiny.topic_structure import TopicStructureConfig, run_topic_structure, summary_lines
        from common.tiny.topic_structure import apply_preset
        result = run_topic_structure(TopicStructureConfig.from_settings(apply_preset(override(globals()))))
        print("\n".join(summary_lines(result)))
        print(f"wrote {out_dir}/topic_structure.json and topic_structure.png/.pdf")
