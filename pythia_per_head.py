"""Per-head attention similarity of one layer of GPTNeoX (Pythia) checkpoints over revisions (docs/theory.md §6).

For each revision in --steps and each head h of --target_layer: rsa(Q̄, H̃ W_Q^h W_K^hᵀ H̃ᵀ), the
attention comparison of pythia.py with one head's query-key map instead of the mean over heads.
Writes {output_dir}/revision_{step}/layer_{L}/per_head_results.json per revision, the combined
{output_dir}/per_head_layer_{L}.json and its head × revision heatmap (PNG and PDF).  Uses the same
statistics cache as pythia.py (same --dataset, --n_examples, --max_seq_len, --top_tokens).

Single process, one device (a GPU when present); no distributed launch.

    python pythia_per_head.py                                   # Pythia-1.4B-deduped, step1 … step512, layer 0
    python pythia_per_head.py --model_name=out/neox --dataset=synthetic --max_seq_len=64 --target_layer=1
"""
from common import checkpoints
from common.comparison import plot_head_heatmaps, run_head_comparison
from common.config import override
from common.io import exit_on_user_error, write_json

model_name = "EleutherAI/pythia-1.4b-deduped"  # hub name, or a folder with one sub-folder per revision
steps = list(checkpoints.EARLY_REVISIONS)  # revisions: step1, step2, step4 … step512 (`all` for a local folder)
target_layer = 0             # the layer whose heads are compared
dataset = "openwebtext"      # openwebtext, fineweb, synthetic, or a local .txt/.jsonl/.parquet/saved dataset
n_examples = 100000          # documents read from the corpus
max_seq_len = 128            # T
top_tokens = None            # |K|: the most frequent tokens; None = the whole vocabulary
device = "auto"              # cuda when available, else cpu
output_dir = "out/pythia"
cache_dir = "out/pythia_cache"  # statistics cache shared with pythia.py
batch_size = 1024            # tokens per forward pass for the single-token representations
chunk_size = 256             # sequences per scatter-add chunk of the statistics

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        results = run_head_comparison(model_name, steps, target_layer, dataset, n_examples, max_seq_len,
                                      top_tokens, device, output_dir, cache_dir, batch_size, chunk_size)
        write_json(f"{output_dir}/per_head_layer_{target_layer}.json",
                   {revision: {f"head_{h}": {"cosine_similarity": v, "head_idx": h} for h, v in enumerate(values)}
                    for revision, values in results.items()})
        paths = plot_head_heatmaps({target_layer: results}, f"{output_dir}/per_head_layer_{target_layer}")
        print("wrote", ", ".join(map(str, paths)))
