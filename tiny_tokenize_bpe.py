"""BPE tokenizer for Tiny Stories (docs/theory.md §5): a `tokenizers` BPE model with the Whitespace
pre-tokenizer, a 10000-token vocabulary, special tokens <unk> <pad> <s> </s>, template <s> $A </s>.
The other hyperparameters, and their meaning, are those of tiny_tokenize_natural.py.

Usage:
    python tiny_tokenize_bpe.py                                       # roneneldan/TinyStories from the hub
    python tiny_tokenize_bpe.py --data=stories.jsonl --out_dir=data/bpe_mine
    python tiny_tokenize_bpe.py --data=synthetic --n_stories=5000 --vocab_size=1000
Tokenising is CPU work (no torchrun needed).
Writes --out_dir/{stories/, vocabulary.json, token_frequencies.json, summary.json, tokenizer.json}.
"""
from common.config import inherit, override
from common.io import exit_on_user_error

inherit(globals(), "tiny_tokenize_natural.py")   # every setting of the natural tokenizer; the BPE values below

vocab_size = 10000                # BPE vocabulary size, special tokens included
out_dir = "data/bpe"              # output folder (replaced atomically)

if __name__ == "__main__":
    with exit_on_user_error():
        from common.corpus.tokenize import TokenizerConfig, run_tokenizer, summary_lines
        summary = run_tokenizer("bpe", TokenizerConfig.from_settings(override(globals())))
        print("\n".join(summary_lines(summary, out_dir)))
