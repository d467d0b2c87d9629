"""Natural tokenizer for Tiny Stories (docs/theory.md §5): lower-case words and single punctuation characters,
the 3000 most frequent tokens as the vocabulary, only stories entirely inside it kept (the release's
rule: on real text with a rich vocabulary most documents fail it — summary.json and the printed summary
say how many were kept; raise --vocab_size, split long documents into paragraphs, or keep every story
with --keep_unknown=True, its rarer tokens becoming one <unk> token). The trainer then uses each kept
story's first T+1 tokens (the release's rule), or with --windows=True every consecutive window of T+1
tokens, so long documents are used whole. The summary counts those training sequences for --seq_len
and for other T (and, at --seq_len, for other vocabulary sizes), with the share of the input tokens
they use: choose T, --windows and --vocab_size from it before training (docs/your_corpus.md).

Usage:
    python tiny_tokenize_natural.py                                   # roneneldan/TinyStories from the hub
    python tiny_tokenize_natural.py --data=stories.txt --out_dir=data/mine
    python tiny_tokenize_natural.py --data=synthetic --n_stories=5000 # embedded offline corpus
    python tiny_tokenize_natural.py --data=lda:overlap=2 --n_stories=5000   # the LDA topic corpus
--data: a hub name, a saved dataset folder, a .txt (stories separated by blank lines), .jsonl or
.parquet file with a `text` field, `synthetic`, or `lda` / `lda:overlap=2,alpha=0.5,…` (the generated
topic corpus of docs/theory.md §11, offline; its settings in common/corpus/lda.py). Tokenising is CPU work (no torchrun needed);
large corpora use --num_proc worker processes.
Writes --out_dir/{stories/, vocabulary.json, token_frequencies.json, summary.json}.
"""
from common.config import override
from common.io import exit_on_user_error

data = "roneneldan/TinyStories"   # hub name, local path, 'synthetic' or 'lda[:settings]'
split = "train"                   # split of a hub or saved dataset
text_field = "text"               # column / JSON field holding the story
n_stories = 20000                 # stories generated when --data=synthetic or lda
max_stories = 0                   # use only the first N stories (0: all)
vocab_size = 3000                 # most frequent non-whitespace tokens kept
keep_unknown = False              # keep stories with rarer tokens, those becoming one <unk> (the release drops them)
seq_len = 200                     # the trainer's --seq_len: count the training sequences for it (and other T)
out_dir = "data/natural"          # output folder (replaced atomically)
num_proc = 0                      # worker processes for datasets.map (0: 1 for small corpora, else up to 8)
seed = 42                         # seed of the synthetic generator

if __name__ == "__main__":
    with exit_on_user_error():
        from common.corpus.tokenize import TokenizerConfig, run_tokenizer, summary_lines
        summary = run_tokenizer("natural", TokenizerConfig.from_settings(override(globals())))
        print("\n".join(summary_lines(summary, out_dir)))
