"""Leading-term predictions of the weights (docs/theory.md §3, discrete SGD form) and their next-order
terms (docs/theory.md §10).

From zero initialisation, after s SGD steps of learning rate η on data with statistics `stats`:

    W_O(s) ≈ η s · B̄
    V^l(s) ≈ η² s(s−1)/2 · (B̄Φ̄)ᵀ
    W^l(s) ≈ η⁴ Σ_{k<s} k²(k−1)/2 · Q̄
    P^l(s) ≈ η⁴ Σ_{k<s} k²(k−1)/2 · p̄

(the same for every layer l).  Each coefficient counts how many gradient steps have already fed the
term: W_O learns from the first step, V needs W_O ≠ 0, and W, P need both V and W_O ≠ 0.

The masked-language-model variants (docs/theory.md §16) read their statistics and powers from the
weight-kind table (common/theory/weight_kinds.py, `variant`): the residual model over all positions has
the forms above with the masked statistics B̄ₘ, Φ̄ₘ, Q̄ₘ, p̄ₘ; the identity variant (no residual, W_O
frozen to the identity) has no W_O and, with the statistics of variant="identity" (G = Φ̄ₘᵀ),

    V^l(s) ≈ η s · Φ̄ₘᵀ                      (V's gradient at zero is −Φ̄ₘᵀ: it learns from the first step)
    W^l(s) ≈ η² Σ_{k<s} k · Q̄'              (W's gradient at step k is −Q̄'[G = V(k)] = −ηk Q̄')
    P^l(s) ≈ η² Σ_{k<s} k · p̄'

(one layer: stacked layers without the residual stay at zero, docs/theory.md §16).

A uniform-attention stage (Li et al.'s first stage: W and P held at zero for the first s₀ steps while V and
W_O train, `uniform_attention_steps`) drops the first s₀ terms of W's and P's sums: W^l(s) ≈ η⁴ Σ_{s₀≤k<s}
k²(k−1)/2 · Q̄ (identity variant η² Σ_{s₀≤k<s} k · Q̄').  Each term k is W's gradient at step k, which at
leading order reads only W_O(k) and V(k); those do not see W and P until order η⁴ beyond their own leading
terms, so they follow their plain sums through the stage, and a frozen step contributes nothing.  The
shifted sum is the exact η⁴ (η²) coefficient of W(s) at fixed s, as the plain sum is without the stage
(tests/theory/test_leading_terms.py checks it against full-batch SGD: the relative error falls in
proportion to η).

Next-order terms (order=2), with D = diag(P̂(x = i)), Ā = (1/n) Σ ā_tᵀ x_t and L layers; continuous
time τ = ηs on the right (the discrete sums replace τ²/2, τ³/6, τ³/3):

    W_O:  − η² Σ_{k<s} k / V · D B̄   + L η³ Σ_{k<s} k(k−1)/2 · B̄Φ̄Φ̄ᵀ      (− τ²/2V · D B̄ + L τ³/6 · B̄Φ̄Φ̄ᵀ)
          − η³ Σ_{k<s} k² / 2V · D (B̄∘B̄ − rowmean)  + η³ Σ_{k<s} k(k−1)/2 / V² · D² B̄
                                                     (− τ³/6V · D(B̄∘B̄ − rowmean) + τ³/6V² · D²B̄)
    V:    − η³ Σ_{k<s} k(k−1)/2 / V · (B̄Φ̄)ᵀ D − η³ Σ_{k<s} k² / V · Ā B̄ B̄ᵀ
                                                                       (− τ³/6V · (B̄Φ̄)ᵀD − τ³/3V · ĀB̄B̄ᵀ)

The D-terms of W_O and both V terms are the output softmax leaving uniform, p_t ≈ (1/V)(1 + z_t +
½(z_t∘z_t − mean)) with z_t = x_t W_O: through W_O itself (to first and second order in z, and
the first-order term fed its own next term), and through W_O(k) inside V's gradient Φ̄ᵀW_Oᵀ.  The
L-term is the attention layers feeding W_O through V.  Checked against autograd
(tests/theory/test_leading_terms.py): W_O for L = 1 and 3; V for L = 1 only — with several layers V has
terms of relative order τ² (earlier layers' outputs entering a layer's attention, later layers in the
backward pass, W_O's L-term) that soon outgrow these (docs/theory.md §10) and are not derived, so V stays at
order 1 when n_layers > 1.  W and P keep order 1: their next terms (output softmax, V's and W_O's
next terms and the attention softmax inside Q̄) are not derived here, so no formula is given for them.
"""
from common.theory.statistics import CorpusStatistics
from common.theory.weight_kinds import weight_kinds


POWER_NAME = {1: "tau", 2: "tau2", 4: "tau4"}   # the coefficient names below of each leading power


ATTENTION_KINDS = ("W", "P")   # the kinds a uniform-attention stage holds at zero


def leading_coefficients(lr: float, steps: int, variant: str = "residual", uniform_attention_steps: int = 0) -> dict:
    """The scalar in front of each statistic after `steps` steps of learning rate `lr` (the discrete
    sum of the kind's leading power in the model `variant`, common/theory/weight_kinds.py).  With W and P
    held at zero for the first `uniform_attention_steps`, their sums count only the steps after (module
    docstring): the plain sum minus its first s₀ terms."""
    if uniform_attention_steps < 0:
        raise ValueError(f"uniform_attention_steps must be at least 0 (got {uniform_attention_steps})")
    c = series_coefficients(lr, steps)
    frozen = series_coefficients(lr, min(uniform_attention_steps, steps))
    return {kind.name: c[POWER_NAME[kind.power]] - (frozen[POWER_NAME[kind.power]] if kind.name in ATTENTION_KINDS
                                                     else 0.0)
            for kind in weight_kinds(variant)}


def series_coefficients(lr: float, steps: int) -> dict:
    """The discrete SGD sums behind each power of τ: tau = ηs, tau2 = η² Σ_{k<s} k, tau3 = η³ Σ_{k<s}
    k(k−1)/2, tau3_sq = η³ Σ_{k<s} k², tau4 = η⁴ Σ_{k<s} k²(k−1)/2."""
    k = range(steps)
    return {"tau": lr * steps, "tau2": lr ** 2 * sum(k), "tau3": lr ** 3 * sum(j * (j - 1) / 2 for j in k),
            "tau3_sq": lr ** 3 * sum(j * j for j in k), "tau4": lr ** 4 * sum(j * j * (j - 1) / 2 for j in k)}


def continuous_coefficients(tau: float) -> dict:
    """The same coefficients in continuous time (the limit η → 0 at fixed τ = ηs)."""
    return {"tau": tau, "tau2": tau ** 2 / 2, "tau3": tau ** 3 / 6, "tau3_sq": tau ** 3 / 3, "tau4": tau ** 4 / 8}


def theory_matrices(stats: CorpusStatistics, variant: str = "residual") -> dict:
    """{'W_O', 'V', 'W', 'P'} → the statistic each weight kind lines up with (B̄, (B̄Φ̄)ᵀ, Q̄, p̄); in the
    identity variant {'V', 'W', 'P'} → (Φ̄ᵀ, Q̄', p̄')."""
    return {kind.name: kind.matrix(stats) for kind in weight_kinds(variant)}


def next_order_matrices(stats: CorpusStatistics, n_layers: int = 1) -> dict:
    """{'W_O', 'V'} → [(coefficient name, matrix)] of the next-order terms: the prediction at order 2
    is the leading term plus Σ coefficient × matrix (V only for one layer, see the module docstring).  Needs the statistics' bigram, context,
    value_map, input_frequency and context_input (keep them when computing the statistics)."""
    needed = ("bigram", "context", "value_map", "input_frequency", "context_input")
    missing = [name for name in needed if getattr(stats, name, None) is None]
    if missing:
        raise ValueError(f"the next-order terms need the statistics {missing}; compute them with "
                         f"keep=CorpusStatistics.TENSOR_FIELDS + ('context_input',)")
    B, phi, value_map, frequency = stats.bigram, stats.context, stats.value_map, stats.input_frequency
    V = B.shape[1]
    squared = B * B
    return {"W_O": [("tau2", -frequency[:, None] * B / V), ("tau3", n_layers * (value_map.T @ phi.T)),
                    ("tau3", frequency[:, None] ** 2 * B / V ** 2),
                    ("tau3_sq", -frequency[:, None] * (squared - squared.mean(1, keepdim=True)) / (2 * V))],
            **({"V": [("tau3", -value_map * frequency[None, :] / V),
                      ("tau3_sq", -(stats.context_input @ B) @ B.T / V)]} if n_layers == 1 else {})}


def predicted_weights(stats: CorpusStatistics, lr: float, steps: int, order: int = 1, n_layers: int = 1,
                      variant: str = "residual", uniform_attention_steps: int = 0) -> dict:
    """{'W_O', 'V', 'W', 'P'} → predicted tensor (same prediction for every layer's V, W, P; no W_O in
    the identity variant).  `order=2` adds the next-order terms of W_O and V (W and P stay at order 1;
    derived and checked for the causal model only); `n_layers` enters W_O's order-2 term only.
    `uniform_attention_steps`: W and P held at zero for that many first steps (leading_coefficients)."""
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2 (got {order})")
    if order == 2 and variant != "residual":
        raise ValueError(f"the next-order terms are derived for the residual model only (got variant {variant!r})")
    coefficients = leading_coefficients(lr, steps, variant, uniform_attention_steps)
    predicted = {name: coefficients[name] * matrix for name, matrix in theory_matrices(stats, variant).items()}
    if order == 2:
        series = series_coefficients(lr, steps)
        for kind, terms in next_order_matrices(stats, n_layers).items():
            for name, matrix in terms:
                predicted[kind] = predicted[kind] + series[name] * matrix
    return predicted
