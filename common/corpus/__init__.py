"""Text and tokens: where a corpus comes from and how it becomes training sequences. Needs no theory.

    text        one loader for every source: hub names, .txt/.jsonl/.parquet, saved datasets, synthetic, lda
    synthetic   the embedded story generator with planted associations (the offline default)
    lda         the LDA topic corpus of Li, Li & Risteski (2023) and its word → topics table (docs/theory.md §11)
    tokenize    natural and BPE tokenizers, their output folder, training sequences x/y (docs/theory.md §5)
"""
