"""The checkpoint pipeline: revisions of real checkpointed causal LMs compared with the theory's
matrices (docs/theory.md §6, §12).

    architectures      one adapter per family (GPTNeoX, GPT-2, Llama, OLMo v1): weight layout, norm rule, hooks
    revisions          revision names of each family, their order, the record of repeated weights
    loading            checkpoint sources (hub or local folder), weight hashes, single-token representations
    integrity          per-tensor hashes of revisions: identical, partly shared or distinct (§15)
    token_statistics   corpus statistics over a token set K, cached on disk
    comparison         per-layer and per-head rsa between representations and the theory (ComparisonConfig)
    results            the result files, their layout and the heatmaps
    associations       per-token rows of corpus and checkpoint (next token, attention) for the explorer and agreement
    agreement          per-token agreement over revisions: model top-1 and top-k overlap with the statistic's partners
    topic_embeddings   Li, Li & Risteski (2023)'s embedding measure over revisions (§11)
"""
