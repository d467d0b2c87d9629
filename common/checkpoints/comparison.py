"""The checkpoint comparisons of docs/theory.md §6 for every supported family (docs/theory.md §12): per layer
(and per head) rsa between what a checkpoint computes for single tokens and the theory's matrices over
the token set K.

  attention : H̃ M H̃ᵀ vs Q̄ (query rows), M = mean over heads of W_Q^h W_K^{g(h)}ᵀ (folded by the family's
              norm rule, common/checkpoints/architectures.py), H̃ = H_pre centred per token under a mean-subtracting
              norm, H_pre itself under RMSNorm; factored as rowcenter(H̃ M H̃ᵀ) = (H̃ M)(H̃ − 1·h̄)ᵀ, so
              no n×n matrix exists on the model side.
  no-MLP    : H_mid vs (B̄Φ̄)ᵀ;      embedding : H_post vs (B̄Φ̄)ᵀ.
The theory side is L2-normalised row by row.  On a GPU the two K×K theory matrices are prepared in
place in float32 (reductions in float64); on the CPU everything is float64.

Settings travel as one `ComparisonConfig`.  Every revision's weights are hashed as loaded; a revision
holding the same weights as an earlier one is named in the log and in {output_dir}/revisions.json, and
its similarities are still computed and written.  The files are written and read by
common/checkpoints/results.py (layout there).
"""
from dataclasses import dataclass, fields
from typing import Optional

import torch
from common.progress import progress_bar, write

from common.checkpoints.architectures import architecture_for
from common.checkpoints.loading import CheckpointSource, single_token_representations, weights_sha256
from common.device import configure_numerics, resolve_device
from common.io import UserError
from common.theory.similarity import RSATarget, rowcenter, rsa_factored, rsa_to_target
from common.checkpoints.results import (KINDS, record_revision_hash, write_head_results, write_head_summary,
                                       write_layer_results)


@dataclass
class ComparisonConfig:
    """The settings of one comparison run: pythia.py's and pythia_per_head.py's hyperparameters."""
    model_name: str                  # hub name, or a folder with one sub-folder per revision
    revisions: list                  # revision names, or ['all'] for every revision of a local folder
    dataset: str = "openwebtext"     # openwebtext, fineweb, synthetic, or a local file / saved dataset
    n_examples: int = 100000         # documents read from the corpus
    max_seq_len: int = 128           # T
    top_tokens: Optional[int] = None  # |K|; None = the whole vocabulary
    device: str = "auto"
    output_dir: str = "out/pythia"
    cache_dir: str = "out/pythia_cache"
    batch_size: int = 1024           # tokens per forward pass of the single-token representations
    chunk_size: int = 256            # sequences per scatter-add chunk of the statistics
    max_unknown_rate: float = 0.01   # warn when more of the corpus's tokens are the unknown token
    target_layer: Optional[int] = None  # the per-head comparison's layer
    deterministic: bool = True       # deterministic kernels: the same numbers on every run (docs/theory.md §13)

    @classmethod
    def from_settings(cls, settings: dict) -> "ComparisonConfig":
        """From a script's hyperparameters (extra keys ignored)."""
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})


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


def attention_similarity(target: RSATarget, h_pre: torch.Tensor, M: torch.Tensor, centred: bool = True) -> float:
    """rsa(Q̄ normalised, H̃ M H̃ᵀ) without forming the n×n logits; H̃ = H_pre centred per token when the
    norm subtracts the mean (`centred`), H_pre itself under RMSNorm."""
    h = h_pre.to(target.dtype)
    h = rowcenter(h) if centred else h
    return rsa_factored(target, h @ M.to(h), h - h.mean(dim=0, keepdim=True))


def layer_similarities(model, representations, targets: TheoryTargets, device) -> list:
    """[{attention, no_mlp, embedding} for each layer]."""
    architecture = architecture_for(model.config)
    results = []
    for index in progress_bar(range(representations.n_layers), desc="layer similarities", leave=False):
        weights = architecture.folded_query_key(model, index)
        results.append({
            "attention": attention_similarity(targets.attention, representations.pre(index).to(device),
                                              weights.mean_matrix().to(device), weights.centred),
            "no_mlp": rsa_to_target(targets.value, representations.mid[index].to(device)),
            "embedding": rsa_to_target(targets.value, representations.post[index].to(device)),
        })
    return results


def head_similarities(model, representations, target: RSATarget, layer: int, device) -> list:
    """The attention similarity of each head of `layer` (M = W_Q^h W_K^{g(h)}ᵀ)."""
    weights = architecture_for(model.config).folded_query_key(model, layer)
    h_pre = representations.pre(layer).to(device)
    return [attention_similarity(target, h_pre, weights.head_matrix(h).to(device), weights.centred)
            for h in range(weights.n_heads)]


# ---------------------------------------------------------------------------------------------
# running over revisions
@dataclass
class Prepared:
    source: CheckpointSource
    revisions: list
    targets: TheoryTargets
    token_ids: torch.Tensor
    device: torch.device


def prepare_comparison(config: ComparisonConfig, need_value: bool = True, log=write) -> Prepared:
    """Validate everything first (revisions, family, their agreement, layer), then load or compute the
    statistics once."""
    from common.checkpoints.token_statistics import load_or_compute_statistics

    device = resolve_device(config.device)
    configure_numerics(config.deterministic)
    source = CheckpointSource(config.model_name)
    revisions = source.resolve(config.revisions)
    model_config = source.check_revisions(revisions)
    layers = model_config.num_hidden_layers
    if config.target_layer is not None and not 0 <= config.target_layer < layers:
        raise UserError(f"--target_layer={config.target_layer} is out of range: the model has {layers} layers "
                        f"(0 … {layers - 1})")
    if getattr(model_config, "clip_qkv", None):
        log(f"note: clip_qkv={model_config.clip_qkv}: queries and keys beyond it are clipped, so the logits are "
            f"bilinear only inside the clip")
    tokenizer = source.load_tokenizer(revisions[0])
    statistics = load_or_compute_statistics(
        tokenizer, dataset=config.dataset, n_examples=config.n_examples, seq_len=config.max_seq_len,
        top_tokens=config.top_tokens, full_vocab_size=model_config.vocab_size, cache_dir=config.cache_dir,
        device=device, dtype=compute_dtype(device), chunk_size=config.chunk_size,
        max_unknown_rate=config.max_unknown_rate, log=log)
    token_ids = statistics["token_ids"].cpu()
    targets = TheoryTargets(statistics, compute_dtype(device), need_value)
    del statistics
    log(f"{architecture_for(model_config).family}: {len(revisions)} revision(s): {', '.join(revisions)}; "
        f"|K| = {len(token_ids)}; device {device}")
    return Prepared(source, revisions, targets, token_ids, device)


def _over_revisions(config: ComparisonConfig, prepared: Prepared, compare, write, log):
    """Load, hash, compare and write each revision in turn; returns {revision: compare's result}."""
    everything = {}
    for revision in progress_bar(prepared.revisions, desc="revisions"):
        model = prepared.source.load_model(revision)
        digest = weights_sha256(model)          # as loaded, before it moves to the device
        if int(prepared.token_ids.max()) >= model.config.vocab_size:
            raise UserError(f"revision {revision} has a vocabulary of {model.config.vocab_size} tokens but the "
                            f"statistics use token id {int(prepared.token_ids.max())}: the revisions do not "
                            f"share one vocabulary")
        model = model.to(prepared.device)
        representations = single_token_representations(model, prepared.token_ids, config.batch_size,
                                                        progress=True)
        result = compare(model, representations)
        del model, representations
        write(revision, result)
        entry = record_revision_hash(config.output_dir, revision, digest)
        if "duplicate_of" in entry:
            log(f"{revision} holds the same weights as {entry['duplicate_of']} (sha256 {digest[:16]}…): its "
                f"similarities repeat that revision's")
        everything[revision] = result
    return everything


def run_layer_comparison(config: ComparisonConfig, log=write) -> dict:
    """pythia.py: the three similarities per layer for every revision; returns {revision: results}."""
    prepared = prepare_comparison(config, log=log)

    def write(revision, results):
        write_layer_results(config.output_dir, revision, results)
        log(f"{revision}: " + "; ".join(f"{kind} " + " ".join(f"{r[kind]:.3f}" for r in results) for kind in KINDS))

    return _over_revisions(config, prepared, lambda model, reps: layer_similarities(
        model, reps, prepared.targets, prepared.device), write, log)


def run_head_comparison(config: ComparisonConfig, log=write) -> dict:
    """pythia_per_head.py: per-head attention similarity of `config.target_layer`; returns {revision: [per head]}.
    Also writes {output_dir}/per_head_layer_{L}.json gathering every revision's per-head results."""
    if config.target_layer is None:
        raise UserError("the per-head comparison needs --target_layer")
    layer = config.target_layer
    prepared = prepare_comparison(config, need_value=False, log=log)

    def write(revision, values):
        write_head_results(config.output_dir, revision, layer, values)
        log(f"{revision} layer {layer}: heads " + " ".join(f"{v:.3f}" for v in values))

    everything = _over_revisions(config, prepared, lambda model, reps: head_similarities(
        model, reps, prepared.targets.attention, layer, prepared.device), write, log)
    write_head_summary(config.output_dir, layer)
    return everything
