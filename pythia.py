"""Compare the checkpoints of a causal LM with the gradient leading terms, layer by layer (docs/theory.md §6).

Any supported family (docs/theory.md §12): GPTNeoX (Pythia, the default), GPT-2 (Stanford CRFM), Llama
(Amber, TinyLlama, SmolLM; grouped-query attention included) and OLMo v1, from the hub or from a local
folder with one sub-folder per revision.  For every revision and every layer, three representation
similarities — rsa (docs/theory.md §4): the cosine of the two sides' token × token covariance matrices,
stored under the release's key `cosine_similarity` — between what the checkpoint computes for each token
of a token set K fed alone at position 0 and the theory's matrices from corpus statistics:
    attention : H̃ M_l H̃ᵀ vs Q̄        no-MLP : H_mid vs (B̄Φ̄)ᵀ        embedding : H_post vs (B̄Φ̄)ᵀ
written to {output_dir}/revision_{revision}/matrix_theoretical/{attention_comparison_summary,
cosine_similarity_summary_mids, cosine_similarity_summary}.json.  Each revision's weights are hashed
as loaded: {output_dir}/revisions.json names the revisions that repeat an earlier one's weights (the log
says so too).  The statistics are computed once per tokenizer + corpus + settings and cached in
{cache_dir} (shared with pythia_per_head.py).

Single process, one device (a GPU when present); no distributed launch.

    python pythia.py                                             # Pythia-1.4B-deduped, OpenWebText
    python pythia.py --revisions=step0,step512,step143000 --dataset=fineweb --top_tokens=10000
    python pythia.py --model_name=stanford-crfm/alias-gpt2-small-x21 --revisions=checkpoint-0,checkpoint-10
    python pythia.py --model_name=out/neox --revisions=all --dataset=synthetic --max_seq_len=64
"""
from common.checkpoints import revisions as naming
from common.checkpoints.comparison import ComparisonConfig, run_layer_comparison
from common.config import override
from common.io import exit_on_user_error, write_json

model_name = "EleutherAI/pythia-1.4b-deduped"  # hub name, or a folder with one sub-folder per revision
revisions = ([f"step{s}" for s in naming.PYTHIA_STEPS[:11]]      # step0 … step512, then later ones
             + ["step1000", "step4000", "step16000", "step64000", "step143000"])  # `all`: a local folder's
dataset = "openwebtext"      # openwebtext, fineweb, synthetic, or a local .txt/.jsonl/.parquet/saved dataset
n_examples = 100000          # documents read from the corpus
max_seq_len = 128            # T: documents with at least T+1 tokens are used, truncated to T+1
top_tokens = None            # |K|: the most frequent tokens; None = the whole vocabulary
max_unknown_rate = 0.01      # warn when a larger fraction of the corpus's tokens is the tokenizer's unknown token
device = "auto"              # cuda when available, else cpu
deterministic = True         # deterministic kernels: the same numbers on every run (False: faster)
output_dir = "out/pythia"
cache_dir = "out/pythia_cache"  # statistics cache, shared by every revision and pythia_per_head.py
batch_size = 1024            # tokens per forward pass for the single-token representations
chunk_size = 256             # sequences per scatter-add chunk of the statistics

if __name__ == "__main__":
    with exit_on_user_error():
        settings = override(globals())
        run_layer_comparison(ComparisonConfig.from_settings(settings))
        write_json(f"{output_dir}/pythia_config.json", settings)
