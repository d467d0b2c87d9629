"""The mathematics (docs/theory.md), as functions of token ids and weights: no files, tokenizers or
checkpoints, and no import of a pipeline (corpus, tiny, checkpoints).

    model           the attention-only transformer on one-hot tokens (§1) and its masked variants (§16)
    masking         the corruption of masked language modelling: selected positions, MASK / own / random (§16)
    statistics      corpus statistics B̄, Φ̄, Σ_B, (B̄Φ̄)ᵀ, Ḡ, Q̄, p̄ in two streaming passes (§2)
    masked_statistics  the masked objective's statistics, of one corruption draw and in expectation (§16)
    leading_terms   leading-term predictions of every weight (§3) and their next-order terms (§10)
    path_exact      path-exact leading terms driven by the batches trained on (§10)
    series          the Taylor series of gradient flow: every weight's τ^k coefficients, any depth (§14)
    similarity      cosine, relative error and factored rsa (§4)
    weight_kinds    the one table of weight kinds: statistic, symbol, log keys, leading power per variant (§3, §5, §16)
    alignment       each weight's cosine with its statistic and relative error to its prediction
    association_views  how a row of a statistic or weight is read (raw, normalised, lift) and the strongest pairs
    topic_measures  same-topic / different-topic binned means of weights, attention, closed forms (§11)
    reference       deliberately naive formulations: the tests' ground truth, the benchmarks' baseline
"""
