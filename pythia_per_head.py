"""Per-head attention similarity of one layer of a causal LM's checkpoints over revisions (docs/theory.md §6).

For each revision in --revisions and each head h of --target_layer: rsa(Q̄, head h's own scores q_h kᵀ_{g(h)})
— the cosine of the two sides' token × token covariances, stored under the release's key
`cosine_similarity` — the attention comparison of pythia.py with one head's scores instead of the mean
over heads (g(h) is the key head query head h reads under grouped-query attention).  Any family, source
and model list pythia.py reads, resumable and under torchrun as pythia.py.  Writes
{output_dir}/revision_{revision}/layer_{L}/per_head_results.json per revision, the combined
{output_dir}/per_head_layer_{L}.json, its head × revision heatmap (PNG and PDF) and the integrity record
{output_dir}/revisions.json.  Uses the same statistics cache as pythia.py (same --dataset,
--n_examples, --max_seq_len, --top_tokens).

    python pythia_per_head.py                                   # Pythia-1.4B-deduped, step1 … step512, layer 0
    python pythia_per_head.py --model_name=out/neox --revisions=all --dataset=synthetic --max_seq_len=64 \\
        --target_layer=1
    torchrun --nproc_per_node=8 pythia_per_head.py --revisions=all --model_name=out/neox ...
"""
from pathlib import Path

from common.checkpoints.comparison import ComparisonConfig
from common.checkpoints.explorer import write_explorers
from common.checkpoints.results import plot_head_results
from common.checkpoints.suite import run_comparison
from common.config import override
from common.io import exit_on_user_error, write_json

model_name = "EleutherAI/pythia-1.4b-deduped"  # hub name or folder; several: a,b or org/name-seed{1..9}
revisions = "step1..step512"  # names, ranges a..b, re:<expression> (last), or all
steps: str | None = None     # the release's name for --revisions (an alias; wins when given)
target_layer = 0             # the layer whose heads are compared
dataset = "openwebtext"      # openwebtext, fineweb, synthetic, or a local .txt/.jsonl/.parquet/saved dataset
n_examples = 100000          # documents read from the corpus
max_seq_len = 128            # T
top_tokens: int | None = None  # |K|: the most frequent tokens; None = the whole vocabulary
max_unknown_rate = 0.01      # warn when a larger fraction of the corpus's tokens is the tokenizer's unknown token
integrity_reference = ""     # one more revision (e.g. main) hashed against the compared ones, not compared
recompute = False            # recompute revisions whose results exist for the same weights and settings
attention_bias = False       # False: the release's form (a QK-norm kept); True: the projections' biases included
centre_tokens = False        # rsa with the mean row over K removed on both sides (docs/theory.md §4): the part
                             # shared by every token is not read as agreement; False: the paper's metric
device = "auto"              # cuda when available, else cpu (under torchrun: each process's own GPU)
deterministic = True         # deterministic kernels: the same numbers on every run (False: faster)
output_dir = "out/pythia"
cache_dir = "out/pythia_cache"  # statistics cache shared with pythia.py
batch_size = 1024            # tokens per forward pass for the single-token representations
chunk_size = 256             # sequences per scatter-add chunk of the statistics

if __name__ == "__main__":
    with exit_on_user_error():
        settings = override(globals())
        if steps is not None:
            settings["revisions"] = steps
        run = run_comparison(ComparisonConfig.from_settings(settings), heads=True)
        if run.main:
            config_file = Path(output_dir) / "pythia_config.json"   # the corpus settings pythia_explore.py reads
            if not config_file.exists():
                write_json(config_file, {k: v for k, v in settings.items() if k != "_explicit"})
            run.written += write_explorers(ComparisonConfig.from_settings(settings))   # with the heads' cards
            figures = [p for plan in run.plans for p in plot_head_results(plan.output_dir, layer=target_layer)]
            print("wrote", ", ".join(map(str, run.written + figures)))
