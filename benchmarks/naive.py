"""The naive formulations the benchmarks compare against (deliberately the obvious code)."""
import torch
import torch.nn.functional as F


def naive_statistics_accumulate(x, y, V, G=None):
    """docs/theory.md §2 with per-sequence dense one-hot products and a materialised T×T×T Jacobian.

    Without G: returns the raw sums of B̄ and Φ̄ (pass 1).  With G = Ḡ: the raw sums of Q̄ and p̄.
    One identical loop iteration per sequence, so its time is linear in the number of sequences.
    """
    T = x.shape[1]
    c = 1.0 / torch.arange(1, T + 1, dtype=torch.float64)
    lower = torch.ones(T, T, dtype=torch.float64).tril()
    # J[t] = c_t I − c_t² 11ᵀ restricted to s, s' ≤ t: a T×T×T tensor
    J = (c[:, None, None] * torch.eye(T, dtype=torch.float64) - (c * c)[:, None, None]) \
        * lower[:, :, None] * lower[:, None, :]
    sums = [torch.zeros(V, V, dtype=torch.float64), torch.zeros(V, V, dtype=torch.float64)]
    position = torch.zeros(T, dtype=torch.float64)
    for i in range(x.shape[0]):
        X = F.one_hot(x[i], V).double()
        R = F.one_hot(y[i], V).double() - 1.0 / V
        if G is None:
            A = (c[:, None] * lower) @ X                      # ā_t rows
            sums[0] += X.T @ R
            sums[1] += R.T @ A
        else:
            M = R @ G.T @ X.T                                 # M[t, s] = x_s Ḡ r_tᵀ
            dS = torch.einsum("tsu,tu->ts", J, M)
            sums[0] += X.T @ dS @ X
            for d in range(T):
                position[d] += torch.diagonal(dS, -d).sum()
    return sums if G is None else (sums[0], position)


def naive_statistics(x, y, V):
    """Full naive statistics (B̄, Φ̄, Q̄, p̄) — used to check the fast path on the same inputs."""
    n = x.numel()
    bigram_sum, context_sum = naive_statistics_accumulate(x, y, V)
    bigram, context = bigram_sum / n, context_sum / n
    G = (bigram @ context).T @ bigram
    attention_sum, position_sum = naive_statistics_accumulate(x, y, V, G)
    return {"bigram": bigram, "context": context, "attention_map": attention_sum / n,
            "position_map": position_sum / n, "attention_source": G}


def naive_rsa(a, b):
    """rsa with explicit n×n covariances and the trace of their product."""
    ca, cb = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    cov_a, cov_b = ca @ ca.T / (a.shape[1] - 1), cb @ cb.T / (b.shape[1] - 1)
    inner = torch.trace(cov_a @ cov_b.T)
    return float(inner / (torch.trace(cov_a @ cov_a.T).sqrt() * torch.trace(cov_b @ cov_b.T).sqrt()))


def naive_model_forward(model, tokens):
    """docs/theory.md §1 with a dense one-hot product at layer 1 and a Python loop filling DM(P)'s diagonals."""
    B, T = tokens.shape
    h = F.one_hot(tokens, model.vocab_size).to(model.W_O.dtype)
    mask = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    for layer in model.layers:
        dm = torch.zeros(T, T, dtype=h.dtype, device=h.device)
        for d in range(T):
            dm = dm + torch.diag(layer.P[d].expand(T - d), -d)
        scores = (h @ layer.W) @ h.transpose(1, 2) + dm
        attn = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        h = h + attn @ (h @ layer.V)
    return h @ model.W_O
