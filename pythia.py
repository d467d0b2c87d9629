"""Compare the checkpoints of a causal LM with the gradient leading terms, layer by layer (docs/theory.md §6).

Any supported family (docs/theory.md §12): GPTNeoX (Pythia, the default), GPT-2 (Stanford CRFM), Llama
(Amber, TinyLlama, SmolLM; grouped-query attention included), Qwen2, Qwen3, OLMo v1, OLMo-2 and OLMo-3, from
the hub, offline from the Hugging Face cache, or from a local folder with one sub-folder per revision.
For every revision and every layer, three representation similarities — rsa (docs/theory.md §4): the
cosine of the two sides' token × token covariance matrices, stored under the release's key
`cosine_similarity` — between what the checkpoint computes for each token of a token set K fed alone at
position 0 and the theory's matrices from corpus statistics:
    attention : the model's scores Q Kᵀ vs Q̄      no-MLP : H_mid vs (B̄Φ̄)ᵀ      embedding : H_post vs (B̄Φ̄)ᵀ
written to {output_dir}/revision_{revision}/matrix_theoretical/ (docs/pipelines.md §7 has the layout).
Every tensor of every revision is hashed as loaded: {output_dir}/revisions.json and the log name revisions
identical to another one or sharing some tensors with another one (docs/theory.md §15).  The statistics
are computed once per tokenizer + corpus + settings and cached in {cache_dir} (shared with
pythia_per_head.py).  A rerun skips the revisions whose results exist for the same weights and settings.

Several models (seeds): a comma list or a brace range; each model's results go to
{output_dir}/{last component of its name}/, and {output_dir}/aggregate.json holds the mean, standard
deviation and 95% t-interval over the models per revision, layer and similarity (with two figures).

    python pythia.py                                             # Pythia-1.4B-deduped, OpenWebText
    python pythia.py --revisions=step0..step512,step143000 --dataset=fineweb --top_tokens=10000
    python pythia.py --model_name=EleutherAI/pythia-160m-seed{1..9} --revisions='re:^step\\d+$' \\
        --integrity_reference=main --output_dir=out/polypythia
    HF_HUB_OFFLINE=1 python pythia.py --revisions=step0,step512   # offline, from the Hugging Face cache
    python pythia.py --model_name=out/neox --revisions=all --dataset=synthetic --max_seq_len=64
    python pythia.py '--model_name=google/multiberts-seed_{0..4}-step_{revision}' --revisions=0k,20k,40k
                     # BERT (masked statistics): each revision a repository of its own (docs/pipelines.md §15)

Several processes (revisions and models shared out across ranks; the files equal a one-process run's):

    torchrun --nproc_per_node=8 pythia.py --revisions=all --model_name=out/neox ...
"""
from common.checkpoints.comparison import ComparisonConfig
from common.checkpoints.explorer import write_explorers
from common.checkpoints.suite import run_comparison
from common.config import override
from common.io import exit_on_user_error, write_json

model_name = "EleutherAI/pythia-1.4b-deduped"  # hub name or folder; several: a,b or org/name-seed{1..9}
revisions = "step0..step512,step1000,step4000,step16000,step64000,step143000"
                             # names, ranges a..b, re:<expression> (last), or all
dataset = "openwebtext"      # openwebtext, fineweb, synthetic, or a local .txt/.jsonl/.parquet/saved dataset
n_examples = 100000          # documents read from the corpus
max_seq_len = 128            # T: documents with at least T+1 tokens are used, truncated to T+1
top_tokens: int | None = None  # |K|: the most frequent tokens; None = the whole vocabulary
max_unknown_rate = 0.01      # warn when a larger fraction of the corpus's tokens is the tokenizer's unknown token
integrity_reference = ""     # one more revision (e.g. main) hashed against the compared ones, not compared
recompute = False            # recompute revisions whose results exist for the same weights and settings
attention_bias = False       # False: the release's form H̃ W'_Q W'_Kᵀ H̃ᵀ (a QK-norm kept); True: the module's own
                             # logits, the projections' biases (and the norm's β) included (docs/theory.md §9)
centre_tokens = False        # rsa with the mean row over K removed on both sides (docs/theory.md §4): the part
                             # shared by every token is not read as agreement; False: the paper's metric
device = "auto"              # cuda when available, else cpu (under torchrun: each process's own GPU)
deterministic = True         # deterministic kernels: the same numbers on every run (False: faster)
output_dir = "out/pythia"
cache_dir = "out/pythia_cache"  # statistics cache, shared by every revision and pythia_per_head.py
batch_size = 1024            # tokens per forward pass for the single-token representations
chunk_size = 256             # sequences per scatter-add chunk of the statistics

if __name__ == "__main__":
    with exit_on_user_error():
        settings = override(globals())
        run = run_comparison(ComparisonConfig.from_settings(settings))
        if run.main:
            write_json(f"{output_dir}/pythia_config.json", {k: v for k, v in settings.items() if k != "_explicit"})
            # the explorer page(s) and the per-token agreement (docs/pipelines.md §13), one per model
            run.written += write_explorers(ComparisonConfig.from_settings(settings))
            print("wrote", ", ".join(map(str, run.written)))
