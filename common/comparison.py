"""The Pythia comparisons of docs/theory.md §6: per layer (and per head) rsa between what a GPTNeoX checkpoint
computes for single tokens and the theory's matrices over the token set K.

  attention : H̃ M H̃ᵀ vs Q̄ (query rows), M = mean over heads of W_Q^h W_K^hᵀ (folded, centred),
              H̃ = H_pre centred per token; factored as rowcenter(H̃ M H̃ᵀ) = (H̃ M)(H̃ − 1·h̄)ᵀ, so
              no n×n matrix exists on the model side.
  no-MLP    : H_mid vs (B̄Φ̄)ᵀ;      embedding : H_post vs (B̄Φ̄)ᵀ.
The theory side is L2-normalised row by row.  On a GPU the two K×K theory matrices are prepared in
place in float32 (reductions in float64); on the CPU everything is float64.

Output layout (the release's):
  {output_dir}/revision_{step}/matrix_theoretical/attention_comparison_summary.json   (attention)
  {output_dir}/revision_{step}/matrix_theoretical/cosine_similarity_summary_mids.json (no-MLP)
  {output_dir}/revision_{step}/matrix_theoretical/cosine_similarity_summary.json      (embedding)
      each {"layer_0": {"cosine_similarity": …}, …}
  {output_dir}/revision_{step}/layer_{L}/per_head_results.json
      {"head_0": {"cosine_similarity": …, "head_idx": 0}, …}
Each of those folders is written under a temporary name and renamed: complete or absent.
"""
import re
from pathlib import Path

import torch
from tqdm.auto import tqdm

from common.checkpoints import (CheckpointSource, base_model, folded_query_key, revision_step,
                                single_token_representations, sort_revisions)
from common.device import resolve_device
from common.io import UserError, atomic_directory, read_json, write_json
from common.similarity import RSATarget, rowcenter, rsa_factored, rsa_to_target
from common.weight_kinds import MODEL_SIMILARITIES

KINDS = tuple(s.name for s in MODEL_SIMILARITIES)
SUMMARY_FILES = {s.name: s.summary_file for s in MODEL_SIMILARITIES}
TITLES = {s.name: s.title for s in MODEL_SIMILARITIES}


def compute_dtype(device: torch.device):
    """float32 on a GPU (reductions stay float64), float64 on the CPU."""
    return torch.float32 if device.type == "cuda" else torch.float64


class TheoryTargets:
    """The theory sides, row-normalised and prepared once for every layer, head and revision.
    Consumes the statistics' K×K matrices (prepared in place: no second copy)."""

    def __init__(self, statistics: dict, dtype, need_value: bool = True):
        self.attention = RSATarget(statistics.pop("attention_map"), normalize=True, dtype=dtype, copy=False)
        value_map = statistics.pop("value_map", None)
        self.value = (RSATarget(value_map, normalize=True, dtype=dtype, copy=False) if need_value else None)
        del value_map


def attention_similarity(target: RSATarget, h_pre: torch.Tensor, M: torch.Tensor) -> float:
    """rsa(Q̄ normalised, H̃ M H̃ᵀ) without forming the n×n logits."""
    h = rowcenter(h_pre.to(target.dtype))                  # H̃: each token's residual centred
    return rsa_factored(target, h @ M.to(h), h - h.mean(dim=0, keepdim=True))


def layer_similarities(model, representations, targets: TheoryTargets, device) -> list:
    """[{attention, no_mlp, embedding} for each layer]."""
    results = []
    layers = base_model(model).layers
    for index, layer in enumerate(tqdm(layers, desc="layer similarities", leave=False)):
        M = folded_query_key(layer).mean_matrix().to(device)
        results.append({
            "attention": attention_similarity(targets.attention, representations.pre(index).to(device), M),
            "no_mlp": rsa_to_target(targets.value, representations.mid[index].to(device)),
            "embedding": rsa_to_target(targets.value, representations.post[index].to(device)),
        })
    return results


def head_similarities(model, representations, target: RSATarget, layer: int, device) -> list:
    """The attention similarity of each head of `layer` (M = W_Q^h W_K^hᵀ)."""
    weights = folded_query_key(base_model(model).layers[layer])
    h_pre = representations.pre(layer).to(device)
    return [attention_similarity(target, h_pre, weights.head_matrix(h).to(device))
            for h in range(weights.W_Q.shape[0])]


# ---------------------------------------------------------------------------------------------
# running over revisions
def prepare_comparison(model_name, revisions, dataset, n_examples, max_seq_len, top_tokens, device,
                       cache_dir, chunk_size=256, need_value=True, target_layer=None, log=tqdm.write):
    """Validate everything first (revisions, layer), then load or compute the statistics once.
    Returns (source, revisions, targets, token_ids, device)."""
    from common.pythia_stats import load_or_compute_statistics

    device = resolve_device(device)
    source = CheckpointSource(model_name)
    revisions = source.resolve(revisions)
    config = source.load_config(revisions[0])
    if target_layer is not None and not 0 <= target_layer < config.num_hidden_layers:
        raise UserError(f"--target_layer={target_layer} is out of range: the model has "
                        f"{config.num_hidden_layers} layers (0 … {config.num_hidden_layers - 1})")
    tokenizer = source.load_tokenizer(revisions[0])
    statistics = load_or_compute_statistics(tokenizer, dataset, n_examples, max_seq_len, top_tokens,
                                            config.vocab_size, cache_dir, device, compute_dtype(device),
                                            chunk_size, log)
    token_ids = statistics["token_ids"].cpu()
    targets = TheoryTargets(statistics, compute_dtype(device), need_value)
    del statistics
    log(f"{len(revisions)} revision(s): {', '.join(revisions)}; |K| = {len(token_ids)}; device {device}")
    return source, revisions, targets, token_ids, device


def revision_representations(source, revision, token_ids, device, batch_size):
    model = source.load_model(revision, device)
    if int(token_ids.max()) >= model.config.vocab_size:
        raise UserError(f"revision {revision} has a vocabulary of {model.config.vocab_size} tokens but the "
                        f"statistics use token id {int(token_ids.max())}: the revisions do not share one vocabulary")
    return model, single_token_representations(model, token_ids, batch_size, progress=True)


def run_layer_comparison(model_name, revisions, dataset, n_examples, max_seq_len, top_tokens, device,
                         output_dir, cache_dir, batch_size=1024, chunk_size=256, log=tqdm.write) -> dict:
    """pythia.py: the three similarities per layer for every revision; returns {revision: results}."""
    source, revisions, targets, token_ids, device = prepare_comparison(
        model_name, revisions, dataset, n_examples, max_seq_len, top_tokens, device, cache_dir, chunk_size,
        log=log)
    everything = {}
    for revision in tqdm(revisions, desc="revisions"):
        model, representations = revision_representations(source, revision, token_ids, device, batch_size)
        results = layer_similarities(model, representations, targets, device)
        del model, representations
        with atomic_directory(Path(output_dir) / f"revision_{revision}" / "matrix_theoretical") as folder:
            for kind, name in SUMMARY_FILES.items():
                write_json(folder / name, {f"layer_{l}": {"cosine_similarity": r[kind]}
                                           for l, r in enumerate(results)})
        everything[revision] = results
        log(f"{revision}: " + "; ".join(
            f"{kind} " + " ".join(f"{r[kind]:.3f}" for r in results) for kind in KINDS))
    return everything


def run_head_comparison(model_name, steps, target_layer, dataset, n_examples, max_seq_len, top_tokens,
                        device, output_dir, cache_dir, batch_size=1024, chunk_size=256, log=tqdm.write) -> dict:
    """pythia_per_head.py: per-head attention similarity of one layer; returns {revision: [per head]}."""
    source, revisions, targets, token_ids, device = prepare_comparison(
        model_name, steps, dataset, n_examples, max_seq_len, top_tokens, device, cache_dir, chunk_size,
        need_value=False, target_layer=target_layer, log=log)
    everything = {}
    for revision in tqdm(revisions, desc="revisions"):
        model, representations = revision_representations(source, revision, token_ids, device, batch_size)
        values = head_similarities(model, representations, targets.attention, target_layer, device)
        del model, representations
        with atomic_directory(Path(output_dir) / f"revision_{revision}" / f"layer_{target_layer}") as folder:
            write_json(folder / "per_head_results.json",
                       {f"head_{h}": {"cosine_similarity": v, "head_idx": h} for h, v in enumerate(values)})
        everything[revision] = values
        log(f"{revision} layer {target_layer}: heads " + " ".join(f"{v:.3f}" for v in values))
    return everything


# ---------------------------------------------------------------------------------------------
# reading results back (plots)
def _revision_folders(results_dir):
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results folder not found: {results_dir}")
    folders = {p.name[len("revision_"):]: p for p in results_dir.iterdir()
               if p.is_dir() and re.fullmatch(r"revision_step\d+", p.name)}
    return {revision: folders[revision] for revision in sort_revisions(folders)}


def read_layer_results(results_dir) -> dict:
    """{kind: {revision: [value per layer]}} from pythia.py's output, revisions by step number."""
    results = {kind: {} for kind in KINDS}
    for revision, folder in _revision_folders(results_dir).items():
        if not (folder / "matrix_theoretical").is_dir():
            continue
        for kind, name in SUMMARY_FILES.items():
            summary = read_json(folder / "matrix_theoretical" / name, "summary")
            results[kind][revision] = [summary[f"layer_{l}"]["cosine_similarity"] for l in range(len(summary))]
    if not results["attention"]:
        raise UserError(f"no pythia.py results under {results_dir} (revision_*/matrix_theoretical/)")
    return results


def read_head_results(results_dir) -> dict:
    """{layer: {revision: [value per head]}} from pythia_per_head.py's output."""
    results = {}
    for revision, folder in _revision_folders(results_dir).items():
        for layer_folder in folder.glob("layer_*"):
            if not re.fullmatch(r"layer_\d+", layer_folder.name):
                continue
            heads = read_json(layer_folder / "per_head_results.json", "per-head results")
            layer = int(layer_folder.name[len("layer_"):])
            results.setdefault(layer, {})[revision] = [heads[f"head_{h}"]["cosine_similarity"]
                                                       for h in range(len(heads))]
    if not results:
        raise UserError(f"no pythia_per_head.py results under {results_dir} (revision_*/layer_*/)")
    return {layer: dict(sorted(by_revision.items(), key=lambda item: revision_step(item[0])))
            for layer, by_revision in sorted(results.items())}


def _matrix(by_revision: dict):
    """[rows × revisions] array and the revision labels."""
    revisions = list(by_revision)
    return torch.tensor([by_revision[r] for r in revisions], dtype=torch.float64).T.numpy(), revisions


def plot_layer_heatmaps(results: dict, stem):
    """Three layer × revision heatmaps side by side."""
    from common.plotting import heatmap_grid

    panels = []
    for kind in KINDS:
        values, revisions = _matrix(results[kind])
        panels.append((TITLES[kind], values, [str(l) for l in range(values.shape[0])], revisions))
    return heatmap_grid(panels, stem, ncols=3, xlabel="revision", ylabel="layer",
                        title="rsa with the leading-term matrices")


def plot_head_heatmaps(results: dict, stem, title=r"per-head attention rsa with $\bar Q$"):
    """One head × revision heatmap per layer of `results` ({layer: {revision: [per head]}}), in a grid."""
    from common.plotting import heatmap_grid

    panels = []
    for layer, by_revision in results.items():
        values, revisions = _matrix(by_revision)
        panels.append((f"layer {layer}", values, [str(h) for h in range(values.shape[0])], revisions))
    return heatmap_grid(panels, stem, xlabel="revision", ylabel="head", title=title)
