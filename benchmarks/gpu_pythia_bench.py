"""The Pythia pipeline at full vocabulary on one GPU: a randomly initialised GPTNeoX of Pythia-1.4B's
shape (24 layers, d_model 2048, 16 heads, V = 50304), statistics from random documents over all
50304 tokens, then the three similarities of every layer for one revision.  Prints time and peak
GPU memory per phase as a table.  Single process, one GPU.  `--architecture` picks another family's
layout (common/checkpoints/architectures.py) for the same measurement; `--token_set` restricts the
statistics and the representations to the first K token ids (the others stay in the vocabulary, as
`--top_tokens` does in pythia.py).

    python benchmarks/gpu_pythia_bench.py                              # H100/H200 (timings: docs/benchmarks.md §8)
    python benchmarks/gpu_pythia_bench.py --architecture=gpt2 --n_layers=24 --d_model=1024 --n_heads=16 \
        --intermediate_size=4096 --vocab_size=50257                    # GPT-2-medium's shape
    python benchmarks/gpu_pythia_bench.py --architecture=llama --n_layers=22 --d_model=2048 --n_heads=32 \
        --n_kv_heads=4 --intermediate_size=5632 --vocab_size=32000      # TinyLlama's shape (grouped-query)
    python benchmarks/gpu_pythia_bench.py --architecture=olmo2 --n_layers=16 --d_model=2048 --n_heads=16 \
        --intermediate_size=8192 --vocab_size=100352 --token_set=50304  # OLMo-2-1B's shape (QK-norm)
    python benchmarks/gpu_pythia_bench.py --device=cpu --n_layers=2 --d_model=64 --n_heads=4 \
        --vocab_size=500 --n_documents=50 --seq_len=32                   # a smoke test at tiny sizes

Memory plan at V = 50304 (one V×V float32 matrix = 10.1 GB): the statistics hold at most three V×V
matrices at once (B̄, Φ̄ → (B̄Φ̄)ᵀ → Ḡ → Q̄), and keep two, (B̄Φ̄)ᵀ and Q̄, which become the two rsa
targets in place (row-normalised, row-centred; their covariance norms are taken 2048 columns at a
time); the model's 5.6 GB of float32 weights come next; the single-token representations
(2·layers + 1 matrices of V × d_model) are stored in host memory and moved to the GPU one layer at a
time; the model side of every similarity is factored (per-token query and key vectors, no V×V matrix).
OLMo-2's vocabulary (100352) would need three 40 GB matrices for the statistics, hence --token_set.
Nothing here imports `datasets` (the GPU machine does not have it).
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.checkpoints.architectures import BY_NAME  # noqa: E402
from common.checkpoints.loading import single_token_representations  # noqa: E402
from common.checkpoints.comparison import TheoryTargets, compute_dtype, layer_similarities  # noqa: E402
from common.device import resolve_device  # noqa: E402
from common.config import override  # noqa: E402
from common.theory.statistics import compute_statistics  # noqa: E402

architecture = "neox"  # neox, gpt2, llama, olmo, olmo2, olmo3, qwen2 or qwen3
n_layers = 24
d_model = 2048
n_heads = 16
n_kv_heads = 0         # key heads (grouped-query attention; not neox, gpt2); 0 = n_heads
intermediate_size = 8192
vocab_size = 50304
token_set = 0          # K: statistics and representations over the first K token ids; 0 = the whole vocabulary
n_documents = 10000
seq_len = 128          # T
chunk_size = 256       # sequences per scatter chunk
batch_size = 1024      # tokens per forward pass of the single-token representations
device = "auto"
seed = 0


def main():
    from transformers import AutoModelForCausalLM

    run_device = resolve_device(device)
    dtype = compute_dtype(run_device)
    cuda = run_device.type == "cuda"
    rows = []

    def phase(name, fn):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = fn()
        if cuda:
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
        rows.append((name, time.perf_counter() - start, peak))
        print(f"  {name}: {rows[-1][1]:.1f} s, peak {peak:.1f} GiB", flush=True)
        return result

    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"{name}; torch {torch.__version__}; {architecture}; V = {vocab_size}, |K| = {token_set or vocab_size}, "
          f"{n_layers} layers, d_model {d_model}, {n_heads} heads ({n_kv_heads or n_heads} key heads); "
          f"{n_documents} documents × T = {seq_len}; {dtype}")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(vocab_size, (n_documents, seq_len + 1), generator=generator)
    K = token_set or vocab_size
    tokens = torch.where(tokens < K, tokens, -1)              # ids outside K: −1 (docs/theory.md §6)
    statistics = phase("statistics (2 scatter passes + 2 K³ products)", lambda: compute_statistics(
        tokens[:, :-1], tokens[:, 1:], K, chunk_size, full_vocab_size=vocab_size, device=run_device, dtype=dtype,
        progress=True, keep=("value_map", "attention_map", "position_map")).tensors())
    targets = phase("rsa targets (normalise, centre, covariance norms)",
                    lambda: TheoryTargets(statistics, dtype))
    del statistics
    config = BY_NAME[architecture].training_config(vocab_size, d_model, n_layers, n_heads, n_kv_heads, 2048, 0)
    setattr(config, "n_inner" if architecture == "gpt2" else "intermediate_size", intermediate_size)

    def build():
        torch.manual_seed(seed)
        with torch.device(run_device):
            return AutoModelForCausalLM.from_config(config).eval()

    model = phase("random model (float32)", build)
    representations = phase(f"single-token representations ({K} tokens, all layers)",
                            lambda: single_token_representations(model, torch.arange(K), batch_size,
                                                                 progress=True))
    results = phase(f"similarities ({n_layers} layers × 3)",
                    lambda: layer_similarities(model, representations, targets, run_device))
    total = sum(r[1] for r in rows)
    print()
    print(f"| phase | seconds | peak GPU memory (GiB) |")
    print(f"|---|---:|---:|")
    for phase_name, seconds, peak in rows:
        print(f"| {phase_name} | {seconds:.1f} | {peak:.1f} |")
    print(f"| total | {total:.1f} | {max(r[2] for r in rows):.1f} |")
    for kind in ("attention", "no_mlp", "embedding"):
        values = [r[kind] for r in results]
        print(f"{kind}: layers 0…{len(values) - 1}: min {min(values):.4f} max {max(values):.4f}")


if __name__ == "__main__":
    override(globals())
    main()
