"""Similarities between trained weights or representations and their theoretical counterparts (SPEC §4).

All reductions run in float64.  `rsa` compares two matrices through their row covariances without
ever forming an n×n×n product: with C_A = rowcenter(A) (n × d_A),
    ⟨C_A C_Aᵀ, C_B C_Bᵀ⟩_F = ‖C_Aᵀ C_B‖_F²   and   ‖C C ᵀ‖_F = ‖CᵀC‖_F,
so the cost is O(n · d_A · d_B) and each Gram matrix is taken in its smaller dimension.
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


def normalize_rows(a: torch.Tensor) -> torch.Tensor:
    """Each row divided by its L2 norm; zero rows stay zero."""
    norms = a.norm(dim=1, keepdim=True)
    return a / torch.where(norms > 0, norms, torch.ones_like(norms))


def rowcenter(a: torch.Tensor) -> torch.Tensor:
    """A minus the mean over columns of each row."""
    return a - a.mean(dim=1, keepdim=True)


def _gram_norm(c: torch.Tensor) -> torch.Tensor:
    """‖C Cᵀ‖_F, through whichever of C Cᵀ and CᵀC is smaller (their Frobenius norms are equal)."""
    return (c.T @ c if c.shape[1] <= c.shape[0] else c @ c.T).norm()


class RSATarget:
    """A matrix prepared once for many `rsa` comparisons (e.g. one theory matrix against every layer
    and revision): row-centred in float64, with the norm of its covariance cached."""

    def __init__(self, a: torch.Tensor, normalize: bool = False):
        a = a.detach().to(torch.float64)
        self.centered = rowcenter(normalize_rows(a) if normalize else a)
        self.norm = _gram_norm(self.centered)

    def inner(self, c: torch.Tensor) -> torch.Tensor:
        """⟨C_self C_selfᵀ, C Cᵀ⟩_F for a row-centred C."""
        return (self.centered.T @ c).square().sum()

    def inner_factored(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """⟨C_self C_selfᵀ, (L Rᵀ)(L Rᵀ)ᵀ⟩_F = tr((C_selfᵀ L)(RᵀR)(C_selfᵀ L)ᵀ) without forming L Rᵀ."""
        projected = self.centered.T @ left
        return ((projected @ (right.T @ right)) * projected).sum()


def rsa(a: torch.Tensor, b: torch.Tensor, normalize_a: bool = False) -> float:
    """cos(cov(A), cov(B)), cov(A) = rowcenter(A) rowcenter(A)ᵀ/(d_A − 1) (the 1/(d−1) cancels).

    `normalize_a`: L2-normalise A's rows first (the theory side of the paper's comparisons).
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"rsa needs the same rows on both sides; got {a.shape[0]} and {b.shape[0]}")
    return rsa_to_target(RSATarget(a, normalize_a), b)


def rsa_to_target(target: RSATarget, b: torch.Tensor) -> float:
    c = rowcenter(b.detach().to(torch.float64))
    denominator = target.norm * _gram_norm(c)
    return float(target.inner(c) / denominator) if denominator > 0 else 0.0


def rsa_factored(target: RSATarget, left: torch.Tensor, right: torch.Tensor) -> float:
    """rsa between `target` and the n×n matrix L Rᵀ whose row-centred form is given by its factors
    (attention logits: rowcenter(H M Hᵀ) = (H M)(H − 1·h̄)ᵀ), never forming the n×n matrix."""
    left, right = left.detach().to(torch.float64), right.detach().to(torch.float64)
    # ‖(L Rᵀ)(L Rᵀ)ᵀ‖_F = ‖(LᵀL)(RᵀR)‖_F-type identity: tr((LᵀL G)²) with G = RᵀR
    lgl = (left.T @ left) @ (right.T @ right)
    model_norm = (lgl * lgl.T).sum().clamp_min(0).sqrt()
    denominator = target.norm * model_norm
    return float(target.inner_factored(left, right) / denominator) if denominator > 0 else 0.0
