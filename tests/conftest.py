import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def markov_tokens(n_seq, seq_len, vocab_size, seed=0):
    """Sequences from a random sparse Markov chain: (x, y) with y = x shifted by one token."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(vocab_size, vocab_size, generator=g) * 3
    probs = torch.softmax(logits, dim=1)
    tokens = torch.empty(n_seq, seq_len + 1, dtype=torch.long)
    tokens[:, 0] = torch.randint(vocab_size, (n_seq,), generator=g)
    for t in range(seq_len):
        tokens[:, t + 1] = torch.multinomial(probs[tokens[:, t]], 1, generator=g).squeeze(1)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


@pytest.fixture
def markov():
    return markov_tokens
