"""The checkpoint pipeline: revisions of real checkpointed LMs — causal, and BERT's masked LM (MultiBERTs,
whose revisions are repositories) — compared with the theory's matrices (docs/theory.md §6, §12, §17).

    architectures      one adapter per family (GPTNeoX, GPT-2, Llama, Qwen, OLMo v1/2/3, BERT): layout, norms, per-token q/k, hooks
    revisions          revision names of each family, their order, selection by name, range or pattern
    loading            checkpoint sources (hub, offline cache, local folder; one repository per revision), safe loading, single-token representations
    integrity          per-tensor hashes of revisions: identical, partly shared or distinct (§15)
    token_statistics   corpus statistics over a token set K (causal, or masked for BERT), cached on disk
    comparison         per-layer and per-head rsa between representations and the theory (ComparisonConfig)
    suite              runs over models and revisions: integrity, resume, torchrun, summaries
    aggregate          several seeds: mean, standard deviation, 95% t-interval per revision, layer, similarity
    results            the result files, their layout and the heatmaps
    associations       per-token rows of corpus and checkpoint (next token, attention) for the explorer and agreement
    agreement          per-token agreement over revisions: model top-1 and top-k overlap with the statistic's partners
    explorer           the checkpoint explorer: one offline page per model (and an overview for several), size limits
    explorer_page.html   the explorer page's HTML, CSS and JavaScript (data embedded by explorer)
    explorer_index.html  the overview page of several models' explorers
    topic_embeddings   Li, Li & Risteski (2023)'s embedding measure over revisions (§11)
"""
