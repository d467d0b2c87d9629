"""The corruption of masked language modelling (docs/theory.md §16): which positions carry the loss and
what the model sees there.

Each position is *selected* with probability π (`mask_prob`); a selected position shows the MASK token
with probability μ, its own token with probability κ and a random word with probability ρ
(`split` = (μ, κ, ρ), 80/10/10 by default); the loss is the cross-entropy at selected positions only,
against the original token.  A random word is drawn uniformly from the ids [0, n_words).

The model's vocabulary holds the MASK token besides the words: a trainer appends it as the last id
(`mask_id = n_words`), so the vocabulary of a causal run is unchanged.  MASK is never a target.

`corrupt` consumes the generator in a fixed order that depends on the shape of `x` alone (selection,
then choice, then random words, each one draw per position), so a corruption is a function of the
generator's seed and the batch: what lets a resumed run redraw exactly the corruption of an
uninterrupted one.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskingScheme:
    mask_id: int                    # the MASK token's id in the model's vocabulary (−1: outside the token set)
    n_words: int                    # a random replacement is drawn uniformly from the ids [0, n_words)
    mask_prob: float = 0.15         # π: the probability that a position is selected (carries the loss)
    split: tuple = (0.8, 0.1, 0.1)  # (μ, κ, ρ): a selected position shows MASK / its own token / a random word

    def validate(self) -> "MaskingScheme":
        """The scheme itself, or ValueError naming the setting that is wrong."""
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must lie strictly between 0 and 1 (got {self.mask_prob})")
        if len(self.split) != 3 or any(p < 0 for p in self.split):
            raise ValueError(f"mask_split must be three probabilities (MASK, own token, random word); "
                             f"got {tuple(self.split)}")
        if abs(sum(self.split) - 1.0) > 1e-9:
            raise ValueError(f"mask_split must sum to 1 (got {tuple(self.split)}, sum {sum(self.split):g})")
        if self.n_words < 1:
            raise ValueError(f"n_words must be at least 1 (got {self.n_words})")
        return self


def corrupt(x: torch.Tensor, scheme: MaskingScheme, generator: torch.Generator):
    """(x̃, selected) for clean tokens x [N, T]: x̃ the corrupted input (LongTensor [N, T]) and `selected`
    the loss positions (BoolTensor [N, T]).  The generator lives on the CPU; the draws are moved to x's device."""
    mu, kappa, _ = scheme.split
    shape = tuple(x.shape)
    selection = torch.rand(shape, generator=generator, dtype=torch.float64)
    choice = torch.rand(shape, generator=generator, dtype=torch.float64)
    random_words = torch.randint(scheme.n_words, shape, generator=generator)
    selection, choice, random_words = (t.to(x.device) for t in (selection, choice, random_words))
    selected = selection < scheme.mask_prob
    shown = torch.where(choice < mu, torch.full_like(x, scheme.mask_id),
                        torch.where(choice < mu + kappa, x, random_words.to(x.dtype)))
    return torch.where(selected, shown, x), selected
