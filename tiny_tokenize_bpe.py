"""BPE tokenizer for Tiny Stories (SPEC §5): a `tokenizers` BPE model with the Whitespace
pre-tokenizer, a 10000-token vocabulary, special tokens <unk> <pad> <s> </s>, template <s> $A </s>.

Usage:
    python tiny_tokenize_bpe.py                                       # roneneldan/TinyStories from the hub
    python tiny_tokenize_bpe.py --data=stories.jsonl --out_dir=data/bpe_mine
    python tiny_tokenize_bpe.py --data=synthetic --n_stories=5000 --vocab_size=1000
--data: a hub name, a saved dataset folder, a .txt (stories separated by blank lines), .jsonl or
.parquet file with a `text` field, or `synthetic`. Tokenising is CPU work (no torchrun needed).
Writes --out_dir/{stories/, vocabulary.json, token_frequencies.json, summary.json, tokenizer.json}.
"""
from common.config import override
from common.io import exit_on_user_error

data = "roneneldan/TinyStories"   # hub name, local path, or 'synthetic'
split = "train"                   # split of a hub or saved dataset
text_field = "text"               # column / JSON field holding the story
n_stories = 20000                 # stories generated when --data=synthetic
max_stories = 0                   # use only the first N stories (0: all)
vocab_size = 10000                # BPE vocabulary size, special tokens included
out_dir = "data/bpe"              # output folder (replaced atomically)
num_proc = 0                      # worker processes for datasets.map (0: 1 for small corpora, else up to 8)
seed = 42                         # seed of the synthetic generator

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        from common.text import load_text_dataset
        from common.tokenize import default_num_proc, print_summary, tokenize_bpe, write_token_folder
        dataset = load_text_dataset(data, split, text_field, n_synthetic=n_stories, seed=seed)
        if max_stories:
            dataset = dataset.select(range(min(max_stories, len(dataset))))
        stories, vocabulary, frequencies, summary, tokenizer = tokenize_bpe(
            dataset, vocab_size, num_proc or default_num_proc(len(dataset)))
        print_summary(write_token_folder(out_dir, stories, vocabulary, frequencies, summary, tokenizer),
                      out_dir)
