"""The library behind the scripts at the repository root, in layers (docs/architecture.md):
infrastructure here, the mathematics in `theory/`, text and tokenizers in `corpus/`, and the two
pipelines, `tiny/` (the attention-only model trained from zero) and `checkpoints/` (real checkpointed
LMs). The theory never imports a pipeline.

    io          atomic files and folders, safetensors with JSON sidecars, UserError and one-line exits
    config      nanoGPT-style settings: a script's hyperparameter block, overridden by --name=value
    device      device choice, processes under torchrun, deterministic numerics (docs/theory.md §13)
    hub         is the model/data hub reachable, and which revisions does the local cache hold?
    plotting    figures as PNG and PDF, the training-curve figure
    page        self-contained HTML pages with embedded top-k partner tables (the explorers)
    page.html   the explorers' common outer page, with page.css and page.js (shared style and scripts) inlined
    page.css    (inlined into every explorer page)
    page.js     (inlined into every explorer page)
    progress    every progress bar: tqdm on a terminal, plain periodic lines in a log
"""
