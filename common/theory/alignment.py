"""How the trained weights line up with the theory (docs/theory.md §3–§5): each weight's cosine with
its statistic and its relative error to the leading-term prediction.  Used by the trainer's log, the
association report, the causal ablation and the explorer; it needs a model and statistics, never the
trainer."""
import torch

from common.theory.leading_terms import predicted_weights, theory_matrices
from common.theory.similarity import matrix_cosine, relative_error
from common.theory.weight_kinds import WEIGHT_KINDS, log_key, model_variant, parse_log_key


def named_weights(model):
    """(log key, weight kind, tensor) for every weight of an AttentionOnlyTransformer:
    `W_O_B_bar`, then per layer `layer_{l}_V_B_bar_Phi_bar`, `layer_{l}_W_Q_bar`, `layer_{l}_P_p_bar`.
    The keys are the same in every variant (docs/theory.md §16); a model whose W_O is frozen to the
    identity has no W_O key."""
    for kind in WEIGHT_KINDS:
        if not kind.per_layer and getattr(model, kind.name) is not None:
            yield log_key(kind.name), kind.name, getattr(model, kind.name)
    for l, layer in enumerate(model.layers):
        for kind in WEIGHT_KINDS:
            if kind.per_layer:
                yield log_key(kind.name, l), kind.name, getattr(layer, kind.name)


@torch.no_grad()
def theory_entry(model, stats, lr: float, step: int, uniform_attention_steps: int = 0) -> dict:
    """Cosine of every weight with its statistic and relative error to the §3 prediction at `step`
    (None before a kind's prediction becomes non-zero).  The statistic and the leading power are those
    of the model's variant (common.theory.weight_kinds.model_variant): `stats` must be the statistics
    of that variant (for masked runs, common/theory/masked_statistics.py with the same variant).
    `uniform_attention_steps`: W and P were held at zero for that many first steps, so their predictions
    count only the steps after (common/theory/leading_terms.py); None for W and P during the stage."""
    variant = model_variant(model)
    theory = theory_matrices(stats, variant)
    predicted = predicted_weights(stats, lr, step, variant=variant, uniform_attention_steps=uniform_attention_steps)
    entry = {}
    for key, kind, weight in named_weights(model):
        entry[key] = matrix_cosine(weight, theory[kind])
        entry[f"{key}_rel_err"] = (relative_error(weight, predicted[kind]) if predicted[kind].norm() > 0
                                   else None)
    return entry


@torch.no_grad()
def path_entry(model, predictions: dict) -> dict:
    """Cosine of every weight with its path-exact prediction (docs/theory.md §10; `predictions` from
    common.theory.path_exact.PathExactTracker.predictions()) and the relative error to it, under the keys
    `W_O_path`, `layer_{l}_V_path`, … and `…_path_rel_err` (None while a prediction is still zero)."""
    entry = {}
    for key, kind, weight in named_weights(model):
        layer, predicted = parse_log_key(key).layer, predictions[kind]
        entry[log_key(kind, layer, reference="path")] = matrix_cosine(weight, predicted)
        entry[log_key(kind, layer, reference="path", rel_err=True)] = (
            relative_error(weight, predicted) if predicted.norm() > 0 else None)
    return entry
