"""Similarities between trained weights or representations and their theoretical counterparts (docs/theory.md §4).

All reductions run in float64.  `rsa` compares two matrices through their row covariances without
ever forming an n×n×n product: with C_A = rowcenter(A) (n × d_A),
    ⟨C_A C_Aᵀ, C_B C_Bᵀ⟩_F = ‖C_Aᵀ C_B‖_F²   and   ‖C C ᵀ‖_F = ‖CᵀC‖_F,
so the cost is O(n · d_A · d_B) and each Gram matrix is taken in its smaller dimension.

Token-centred form (`centre_tokens=True`, docs/theory.md §4): before the covariance, each side also has
the mean row over the n tokens removed, C ← J_n C with J_n = I − 11ᵀ/n — the part shared by every token
(a masked LM's unigram rows; BERT's position-0 and token-type-0 embeddings) is then not read as agreement.
With rowcenter = right-multiplication by J_d this compares J_n A J_d with J_n B J_d (for the square K×K
statistics: both token axes centred), i.e. the linear CKA of the row-centred matrices.  For factored
scores L Rᵀ only the left factor needs it: J_n (L Rᵀ) = (L − 1·l̄) Rᵀ.

Large targets (the Pythia pipeline: n×n theory matrices at n ≈ 50k, 10 GB each in float32) can be
prepared in float32 and in place (`RSATarget(a, dtype=torch.float32, copy=False)`): the products then
run in float32 (GPU) and every reduction in float64; no second n×n matrix is ever formed.
"""
from typing import Optional

import torch


def matrix_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """⟨A,B⟩_F / (‖A‖_F ‖B‖_F) in float64 (0 when either is zero)."""
    a, b = a.detach().to(torch.float64).reshape(-1), b.detach().to(torch.float64).reshape(-1)
    denominator = a.norm() * b.norm()
    return float(a @ b / denominator) if denominator > 0 else 0.0


def relative_error(actual: torch.Tensor, predicted: torch.Tensor) -> float:
    """‖actual − predicted‖_F / ‖predicted‖_F in float64."""
    actual, predicted = actual.detach().to(torch.float64), predicted.detach().to(torch.float64)
    return float((actual - predicted).norm() / predicted.norm())


def normalize_rows(a: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Each row divided by its L2 norm; zero rows stay zero."""
    norms = a.norm(dim=1, keepdim=True)
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    return a.div_(norms) if inplace else a / norms


def rowcenter(a: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """A minus the mean over columns of each row."""
    mean = a.mean(dim=1, keepdim=True)
    return a.sub_(mean) if inplace else a - mean


def token_center(a: torch.Tensor, inplace: bool = False, block: int = 256) -> torch.Tensor:
    """A minus its mean row (the mean over the tokens, the rows): J_n A.  The mean is summed in float64,
    `block` rows at a time (a large float32 target never gets a float64 copy)."""
    total = sum(a[i:i + block].sum(dim=0, keepdim=True, dtype=torch.float64) for i in range(0, a.shape[0], block))
    mean = (total / a.shape[0]).to(a.dtype)
    return a.sub_(mean) if inplace else a - mean


def _square_sum(a: torch.Tensor) -> torch.Tensor:
    return a.square().sum(dtype=torch.float64)


def _gram_norm(c: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """‖C Cᵀ‖_F, through whichever of C Cᵀ and CᵀC is smaller (their Frobenius norms are equal),
    taken `block` columns at a time (a large square C never gets a second n×n matrix beside it)."""
    c = c if c.shape[1] <= c.shape[0] else c.T
    total = sum(_square_sum(c.T @ c[:, j:j + block]) for j in range(0, c.shape[1], block))
    return torch.as_tensor(total, dtype=torch.float64).sqrt()


class RSATarget:
    """A matrix prepared once for many `rsa` comparisons (e.g. one theory matrix against every layer
    and revision): row-centred (in `dtype`, float64 by default), with the norm of its covariance
    cached.  `copy=False` prepares `a` in place when it already has `dtype` (no second copy).
    `centre_tokens`: also remove the mean row (module docstring); every model side compared with this
    target is then token-centred too (`rsa_to_target`, `rsa_factored`), so the setting lives here."""

    def __init__(self, a: torch.Tensor, normalize: bool = False, dtype=torch.float64, copy: bool = True,
                 centre_tokens: bool = False):
        a = a.detach()
        a = a.to(dtype, copy=True) if copy else a.to(dtype)
        if normalize:
            normalize_rows(a, inplace=True)
        self.centered = rowcenter(a, inplace=True)
        if centre_tokens:
            token_center(self.centered, inplace=True)
        self.centre_tokens = centre_tokens
        self.dtype = dtype
        self.norm = _gram_norm(self.centered)

    def inner(self, c: torch.Tensor) -> torch.Tensor:
        """⟨C_self C_selfᵀ, C Cᵀ⟩_F for a row-centred C."""
        return _square_sum(self.centered.T @ c.to(self.dtype))

    def inner_factored(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """⟨C_self C_selfᵀ, (L Rᵀ)(L Rᵀ)ᵀ⟩_F = tr((C_selfᵀ L)(RᵀR)(C_selfᵀ L)ᵀ) without forming L Rᵀ."""
        projected = (self.centered.T @ left.to(self.dtype)).to(torch.float64)
        right = right.to(self.dtype)
        return ((projected @ (right.T @ right).to(torch.float64)) * projected).sum()


def rsa(a: torch.Tensor, b: torch.Tensor, normalize_a: bool = False, centre_tokens: bool = False) -> float:
    """cos(cov(A), cov(B)), cov(A) = rowcenter(A) rowcenter(A)ᵀ/(d_A − 1) (the 1/(d−1) cancels).

    `normalize_a`: L2-normalise A's rows first (the theory side of the paper's comparisons).
    `centre_tokens`: remove each side's mean row after rowcenter (cov → J_n cov J_n; module docstring).
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"rsa needs the same rows on both sides; got {a.shape[0]} and {b.shape[0]}")
    return rsa_to_target(RSATarget(a, normalize_a, centre_tokens=centre_tokens), b)


def rsa_to_target(target: RSATarget, b: torch.Tensor) -> float:
    c = rowcenter(b.detach().to(target.dtype))
    if target.centre_tokens:
        token_center(c, inplace=True)
    denominator = target.norm * _gram_norm(c)
    return float(target.inner(c) / denominator) if denominator > 0 else 0.0


def rsa_factored(target: RSATarget, left: torch.Tensor, right: torch.Tensor) -> float:
    """rsa between `target` and the n×n matrix L Rᵀ whose row-centred form is given by its factors
    (attention logits: rowcenter(H M Hᵀ) = (H M)(H − 1·h̄)ᵀ), never forming the n×n matrix.  A token-centred
    target centres the query side too: J_n L Rᵀ = (L − 1·l̄) Rᵀ."""
    left, right = left.detach().to(target.dtype), right.detach().to(target.dtype)
    if target.centre_tokens:
        left = token_center(left)
    # ‖(L Rᵀ)(L Rᵀ)ᵀ‖_F = ‖(LᵀL)(RᵀR)‖_F-type identity: tr((LᵀL G)²) with G = RᵀR
    lgl = (left.T @ left).to(torch.float64) @ (right.T @ right).to(torch.float64)
    model_norm = (lgl * lgl.T).sum().clamp_min(0).sqrt()
    denominator = target.norm * model_norm
    return float(target.inner_factored(left, right) / denominator) if denominator > 0 else 0.0
