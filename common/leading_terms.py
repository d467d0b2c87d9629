"""Leading-term predictions of the weights (docs/theory.md §3, discrete SGD form).

From zero initialisation, after s SGD steps of learning rate η on data with statistics `stats`:

    W_O(s) ≈ η s · B̄
    V^l(s) ≈ η² s(s−1)/2 · (B̄Φ̄)ᵀ
    W^l(s) ≈ η⁴ Σ_{k<s} k²(k−1)/2 · Q̄
    P^l(s) ≈ η⁴ Σ_{k<s} k²(k−1)/2 · p̄

(the same for every layer l).  Each coefficient counts how many gradient steps have already fed the
term: W_O learns from the first step, V needs W_O ≠ 0, and W, P need both V and W_O ≠ 0.
"""
from common.stats import CorpusStatistics
from common.weight_kinds import WEIGHT_KINDS


def leading_coefficients(lr: float, steps: int) -> dict:
    """The scalar in front of each statistic after `steps` steps of learning rate `lr`."""
    s = steps
    attention = lr ** 4 * sum(k * k * (k - 1) / 2 for k in range(s))
    return {"W_O": lr * s, "V": lr ** 2 * s * (s - 1) / 2, "W": attention, "P": attention}


def theory_matrices(stats: CorpusStatistics) -> dict:
    """{'W_O', 'V', 'W', 'P'} → the statistic each weight kind lines up with (B̄, (B̄Φ̄)ᵀ, Q̄, p̄)."""
    return {kind.name: getattr(stats, kind.statistic) for kind in WEIGHT_KINDS}


def predicted_weights(stats: CorpusStatistics, lr: float, steps: int) -> dict:
    """{'W_O', 'V', 'W', 'P'} → predicted tensor (same prediction for every layer's V, W, P)."""
    coefficients = leading_coefficients(lr, steps)
    return {name: coefficients[name] * matrix for name, matrix in theory_matrices(stats).items()}
