"""Brute-force references for the tests: dense one-hot products, explicit Jacobians, n×n matrices.
Deliberately naive — they exist to be obviously equal to the SPEC formulas."""
import torch
import torch.nn.functional as F


def brute_force_statistics(x, y, V, full_V=None, valid_x=None):
    """SPEC §2 literally: one-hot rows, r_t = y_t − 1/V, ā_t = c_t Σ_{s≤t} x_s, J_t = c_t I − c_t² 11ᵀ."""
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


def naive_rsa(a, b, normalize_a=False):
    """cos(cov(A), cov(B)) with explicit n×n covariance matrices."""
    a, b = a.double(), b.double()
    if normalize_a:
        norms = a.norm(dim=1, keepdim=True)
        a = a / torch.where(norms > 0, norms, torch.ones_like(norms))
    ca, cb = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    cov_a = ca @ ca.T / (a.shape[1] - 1)
    cov_b = cb @ cb.T / (b.shape[1] - 1)
    return float((cov_a * cov_b).sum() / (cov_a.norm() * cov_b.norm()))


def naive_forward(model, tokens):
    """SPEC §1 literally: dense one-hot X, DM(P) filled diagonal by diagonal with a Python loop."""
    B, T = tokens.shape
    V = model.vocab_size
    h = F.one_hot(tokens, V).to(model.W_O.dtype)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in model.layers:
        dm = torch.zeros(T, T, dtype=h.dtype)
        for d in range(T):
            dm = dm + torch.diag(layer.P[d].expand(T - d), -d)
        scores = h @ layer.W @ h.transpose(1, 2) + dm
        attn = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        h = h + attn @ h @ layer.V
    return h @ model.W_O
