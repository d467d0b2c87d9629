"""The checkpoint comparisons of docs/theory.md §6 for every supported family (docs/theory.md §12): per layer
(and per head) rsa between what a checkpoint computes for single tokens and the theory's matrices over
the token set K.

  attention : the model's scores over token pairs vs Q̄ (query rows).  The scores are a product of
              per-token query and key vectors, S = Q Kᵀ (the general rule of docs/theory.md §12,
              common/checkpoints/architectures.py: by default the release's bilinear form H̃ M H̃ᵀ, with a
              clip and a QK-norm's per-token rescaling where the family has them; with --attention_bias
              the module's own logits, the projections' biases and the norm's β included);
              the mean over heads is [q_1 … q_H]/H · [k_1 … k_H]ᵀ.  Factored as
              rowcenter(Q Kᵀ) = Q (K − 1·k̄)ᵀ, so no n×n matrix exists on the model side.
  no-MLP    : H_mid vs (B̄Φ̄)ᵀ;      embedding : H_post vs (B̄Φ̄)ᵀ.
The theory side is L2-normalised row by row.  `centre_tokens` (pythia.py's block) token-centres every
similarity of the run, both sides (docs/theory.md §4): the part shared by every token is not agreement.  On a GPU the two K×K theory matrices are prepared in
place in float32 (reductions in float64); on the CPU everything is float64.

Settings travel as one `ComparisonConfig`; the runs over models and revisions are in
common/checkpoints/suite.py, the files in common/checkpoints/results.py.
"""
from typing import Optional

import torch

from common.checkpoints.architectures import architecture_for
from common.config import Settings
from common.progress import progress_bar
from common.theory.similarity import RSATarget, rowcenter, rsa_factored, rsa_to_target

RESULTS_VERSION = 2   # 2: attention scores from the per-token query/key vectors (QK-norm; biases as asked)


class ComparisonConfig(Settings, script="pythia.py"):
    """The settings of one comparison run: pythia.py's hyperparameter block (names, types and defaults;
    common/config.py `Settings`), which pythia_per_head.py repeats with its own revisions, plus the layer
    whose heads pythia_per_head.py compares (None: the layer comparison of pythia.py)."""
    target_layer: Optional[int] = None


def compute_dtype(device: torch.device):
    """float32 on a GPU (reductions stay float64), float64 on the CPU."""
    return torch.float32 if device.type == "cuda" else torch.float64


def result_settings(config: ComparisonConfig, statistics_key: str, dtype) -> dict:
    """What a revision's results depend on besides its weights: a rerun with equal settings may reuse them."""
    return {"version": RESULTS_VERSION, "statistics": statistics_key, "attention_bias": bool(config.attention_bias),
            "dtype": str(dtype), "centre_tokens": bool(config.centre_tokens)}


class TheoryTargets:
    """The theory sides, row-normalised and prepared once for every layer, head and revision.
    Consumes the statistics' K×K matrices (prepared in place: no second copy).  `centre_tokens`: every
    similarity against these targets is token-centred (the targets carry it to rsa_to_target/rsa_factored)."""

    def __init__(self, statistics: dict, dtype, need_value: bool = True, centre_tokens: bool = False):
        self.dtype = dtype
        self.attention = RSATarget(statistics.pop("attention_map"), normalize=True, dtype=dtype, copy=False,
                                   centre_tokens=centre_tokens)
        value_map = statistics.pop("value_map", None)
        self.value = (RSATarget(value_map, normalize=True, dtype=dtype, copy=False, centre_tokens=centre_tokens)
                      if need_value else None)
        del value_map


def score_similarity(target: RSATarget, queries: torch.Tensor, keys: torch.Tensor) -> float:
    """rsa(Q̄ normalised, Q Kᵀ) without forming the n×n scores: rowcenter(Q Kᵀ) = Q (K − 1·k̄)ᵀ."""
    return rsa_factored(target, queries, keys - keys.mean(dim=0, keepdim=True))


def attention_similarity(target: RSATarget, h_pre: torch.Tensor, M: torch.Tensor, centred: bool = True) -> float:
    """The bilinear special case: rsa(Q̄ normalised, H̃ M H̃ᵀ), H̃ = H_pre centred per token when the norm
    subtracts the mean (`centred`), H_pre itself under RMSNorm."""
    h = h_pre.to(target.dtype)
    h = rowcenter(h) if centred else h
    return score_similarity(target, h @ M.to(h), h)


def _vectors(model, representations, layer: int, device, dtype, biases: bool):
    return architecture_for(model.config).query_key_vectors(model, layer, representations.pre(layer).to(device),
                                                            dtype=dtype, biases=biases)


def layer_similarities(model, representations, targets: TheoryTargets, device, biases: bool = False) -> list:
    """[{attention, no_mlp, embedding} for each layer]."""
    results = []
    for index in progress_bar(range(representations.n_layers), desc="layer similarities", leave=False):
        vectors = _vectors(model, representations, index, device, targets.dtype, biases)
        results.append({
            "attention": score_similarity(targets.attention, *vectors.mean()),
            "no_mlp": rsa_to_target(targets.value, representations.mid[index].to(device)),
            "embedding": rsa_to_target(targets.value, representations.post[index].to(device)),
        })
    return results


def head_similarities(model, representations, target: RSATarget, layer: int, device, biases: bool = False) -> list:
    """The attention similarity of each head of `layer` (its own scores q_h(a) · k_{g(h)}(b))."""
    vectors = _vectors(model, representations, layer, device, target.dtype, biases)
    return [score_similarity(target, *vectors.head(h)) for h in range(vectors.n_heads)]
