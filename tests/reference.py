"""Brute-force references for the tests: dense one-hot products, explicit Jacobians, n×n matrices.
Deliberately naive — they exist to be obviously equal to the formulas of docs/theory.md."""
import torch
import torch.nn.functional as F


def brute_force_statistics(x, y, V, full_V=None, valid_x=None):
    """docs/theory.md §2 literally: one-hot rows, r_t = y_t − 1/V, ā_t = c_t Σ_{s≤t} x_s, J_t = c_t I − c_t² 11ᵀ."""
    full_V = full_V or V
    N, T = x.shape
    n = N * T
    onehot = lambda t: F.one_hot(t.clamp_min(0), V).double() * (t >= 0).double()[..., None]
    B = torch.zeros(V, V, dtype=torch.float64)
    Phi = torch.zeros(V, V, dtype=torch.float64)
    for i in range(N):
        X, Y = onehot(x[i]), onehot(y[i])
        R = Y - 1.0 / full_V
        for t in range(T):
            c = 1.0 / (t + 1)
            a_bar = c * X[: t + 1].sum(0)
            B += torch.outer(X[t], R[t])
            Phi += torch.outer(R[t], a_bar)
    B, Phi = B / n, Phi / n
    sigma = B.T @ B
    G = (B @ Phi).T @ B
    Q = torch.zeros(V, V, dtype=torch.float64)
    p = torch.zeros(T, dtype=torch.float64)
    for i in range(N):
        X, Y = onehot(x[i]), onehot(y[i])
        R = Y - 1.0 / full_V
        for t in range(T):
            c = 1.0 / (t + 1)
            m = X[: t + 1] @ G @ R[t]                       # M[t, s] for s ≤ t
            J = c * torch.eye(t + 1, dtype=torch.float64) - c * c * torch.ones(t + 1, t + 1, dtype=torch.float64)
            dS = J @ m
            Q += torch.outer(X[t], X[: t + 1].T @ dS)
            for s in range(t + 1):
                p[t - s] += dS[s]
    return {"bigram": B, "context": Phi, "interchangeability": sigma, "value_map": (B @ Phi).T,
            "attention_source": G, "attention_map": Q / n, "position_map": p / n}



# the naive model lives with the benchmarks (which time it); re-exported for the tests
from benchmarks.naive import naive_model_forward as naive_forward  # noqa: E402,F401
