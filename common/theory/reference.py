"""Deliberately naive formulations, written to be obviously equal to docs/theory.md: the tests'
ground truth and the baseline the benchmarks time the real code against (one copy for both).
Dense one-hot products, a materialised T×T×T softmax Jacobian, explicit n×n covariances, a Python
loop over DM(P)'s diagonals.  Never used by the pipelines."""
import torch
import torch.nn.functional as F


def _one_hot(tokens, V):
    """One-hot rows over V; a token −1 (outside the token set K) is the zero row (docs/theory.md §6)."""
    return F.one_hot(tokens.clamp_min(0), V).double() * (tokens >= 0).double()[..., None]


def naive_statistics_accumulate(x, y, V, G=None, full_V=None):
    """docs/theory.md §2 with per-sequence dense one-hot products and a materialised T×T×T Jacobian.

    Without G: the raw sums of B̄ and Φ̄ (pass 1).  With G = Ḡ: the raw sums of Q̄ and p̄ (pass 2).
    One identical loop iteration per sequence, so its time is linear in the number of sequences."""
    full_V = full_V or V
    T = x.shape[1]
    c = 1.0 / torch.arange(1, T + 1, dtype=torch.float64)
    lower = torch.ones(T, T, dtype=torch.float64).tril()
    # J[t] = c_t I − c_t² 11ᵀ restricted to s, s' ≤ t: a T×T×T tensor
    J = (c[:, None, None] * torch.eye(T, dtype=torch.float64) - (c * c)[:, None, None]) \
        * lower[:, :, None] * lower[:, None, :]
    sums = [torch.zeros(V, V, dtype=torch.float64), torch.zeros(V, V, dtype=torch.float64)]
    position = torch.zeros(T, dtype=torch.float64)
    for i in range(x.shape[0]):
        X = _one_hot(x[i], V)
        R = _one_hot(y[i], V) - 1.0 / full_V
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


def naive_statistics(x, y, V, full_V=None):
    """All seven statistics of docs/theory.md §2 (token set K mode when `full_V` > V)."""
    n = x.numel()
    bigram_sum, context_sum = naive_statistics_accumulate(x, y, V, full_V=full_V)
    bigram, context = bigram_sum / n, context_sum / n
    G = (bigram @ context).T @ bigram
    attention_sum, position_sum = naive_statistics_accumulate(x, y, V, G, full_V=full_V)
    return {"bigram": bigram, "context": context, "interchangeability": bigram.T @ bigram,
            "value_map": (bigram @ context).T, "attention_source": G, "attention_map": attention_sum / n,
            "position_map": position_sum / n}


def naive_rsa(a, b):
    """rsa with explicit n×n covariances and the trace of their product."""
    ca, cb = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    cov_a, cov_b = ca @ ca.T / (a.shape[1] - 1), cb @ cb.T / (b.shape[1] - 1)
    inner = torch.trace(cov_a @ cov_b.T)
    return float(inner / (torch.trace(cov_a @ cov_a.T).sqrt() * torch.trace(cov_b @ cov_b.T).sqrt()))


def naive_layer_similarities(attention_map, value_map, h_pre, h_mid, h_post, M) -> dict:
    """One layer's three similarities of docs/theory.md §6 with explicit n×n matrices."""
    from common.theory.similarity import normalize_rows

    h = h_pre - h_pre.mean(dim=1, keepdim=True)
    logits = h @ M @ h.T                                         # n × n attention logits
    return {"attention": naive_rsa(normalize_rows(attention_map), logits),
            "no_mlp": naive_rsa(normalize_rows(value_map), h_mid),
            "embedding": naive_rsa(normalize_rows(value_map), h_post)}


def random_layer(n, d, generator):
    """A structured random instance: the theory matrices are partly explained by the representations."""
    g = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)
    h_pre = g(n, d)
    M = g(d, d) / d
    h_mid, h_post = h_pre + 0.3 * g(n, d), h_pre + 0.5 * g(n, d)
    attention_map = h_pre @ M @ h_pre.T + 0.5 * g(n, n) * (d ** 0.5)
    value_map = h_mid @ g(d, n) / d + g(n, n)
    return attention_map, value_map, h_pre, h_mid, h_post, M


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


def nested_jvp_series(model, x, y, order):
    """[c_1, …, c_order] of full-batch gradient flow from zero (docs/theory.md §14) by nested
    forward-mode differentiation: c_{k+1} = (1/(k+1)) (1/k!) d^k/dτ^k [−∇L(Σ_{j≤k} c_j τ^j)] at τ = 0,
    with k nested `torch.func.jvp` of `torch.func.grad` along τ (about 2^k gradients per order), float64."""
    import copy
    import math

    from torch.func import functional_call, grad, jvp

    model = copy.deepcopy(model).double().cpu()
    x, y = x.cpu(), y.cpu()
    names = [name for name, _ in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def loss(params):
        logits = functional_call(model, (params, buffers), (x,))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    coefficients = []
    for k in range(order):
        def flow(tau):
            params = {name: sum((c[name] * tau ** (j + 1) for j, c in enumerate(coefficients)),
                                torch.zeros_like(p, dtype=torch.float64)) for name, p in model.named_parameters()}
            return {name: -g for name, g in grad(loss)(params).items()}

        derivative = flow
        for _ in range(k):
            derivative = (lambda f: lambda tau: jvp(f, (tau,), (torch.ones((), dtype=torch.float64),))[1])(derivative)
        value = derivative(torch.zeros((), dtype=torch.float64))
        coefficients.append({name: value[name] / ((k + 1) * math.factorial(k)) for name in names})
    return coefficients
