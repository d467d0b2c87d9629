"""The Tiny Stories pipeline: the attention-only model trained from zero with SGD, and what a run
writes about how its weights line up with the theory (docs/theory.md §5, §10, §11).

    training          the one trainer: SGD, accumulation, DDP, theory-tracking log, checkpoints, resume, callbacks
    report            the association report (associations.md): strongest partners per statistic and weight
    explorer          the association explorer page (explorer.html), from a run's checkpoints and log
    explorer_page.html   that page's HTML, CSS and JavaScript
    causal            causal ablation: the loss change when a weight loses its theory direction
    regime            the end of the early regime, predicted from the statistics and measured (§10)
    topic_structure   the topic-structure run: LDA corpus → trained model → binned measures (§11)
    topic_series      the Taylor series on the topic corpus: does the series turn the same-topic contrast? (§14)
    topic_ablation    the grid objective × attention × depth × residual: what makes attention topical (§16)
"""
