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
    """docs/theory.md §1 with a dense one-hot product at layer 1 and a Python loop filling DM(P)'s diagonals;
    the variants of §16 (no causal mask: P indexed by the signed offset t − s + seq_len − 1; no residual;
    logits = h^L without W_O) by their definitions."""
    B, T = tokens.shape
    h = F.one_hot(tokens, model.vocab_size).to(model.layers[0].V.dtype if model.layers else model.W_O.dtype)
    mask = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    causal = model.is_causal
    for layer in model.layers:
        dm = torch.zeros(T, T, dtype=h.dtype, device=h.device)
        for d in range(T):
            if causal:
                dm = dm + torch.diag(layer.P[d].expand(T - d), -d)
            else:   # below the diagonal t − s = d, above it t − s = −d
                dm = dm + torch.diag(layer.P[model.seq_len - 1 + d].expand(T - d), -d)
                if d > 0:
                    dm = dm + torch.diag(layer.P[model.seq_len - 1 - d].expand(T - d), d)
        scores = (h @ layer.W) @ h.transpose(1, 2) + dm
        attn = torch.softmax(scores.masked_fill(~mask, float("-inf")) if causal else scores, dim=-1)
        out = attn @ (h @ layer.V)
        h = h + out if model.residual else out
    return h if model.W_O is None else h @ model.W_O


def nested_jvp_series(model, x, y, order, selected=None):
    """[c_1, …, c_order] of full-batch gradient flow from zero (docs/theory.md §14) by nested
    forward-mode differentiation: c_{k+1} = (1/(k+1)) (1/k!) d^k/dτ^k [−∇L(Σ_{j≤k} c_j τ^j)] at τ = 0,
    with k nested `torch.func.jvp` of `torch.func.grad` along τ (about 2^k gradients per order), float64.
    Any variant of the model (its own forward pass); `selected`: the loss is the mean cross-entropy over
    those positions (docs/theory.md §16)."""
    import copy
    import math

    from torch.func import functional_call, grad, jvp

    model = copy.deepcopy(model).double().cpu()
    x, y = x.cpu(), y.cpu()
    names = [name for name, _ in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def loss(params):
        logits = functional_call(model, (params, buffers), (x,))
        if selected is not None:
            return F.cross_entropy(logits[selected], y[selected])
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


def naive_masked_statistics_accumulate(x_tilde, y, selected, V, G=None, full_V=None, weights=None):
    """docs/theory.md §16 for one corruption draw, with per-sequence dense one-hot products and the
    bidirectional softmax Jacobian J[t] = (1/T)(I − 11ᵀ/T) materialised as a T×T×T tensor.

    Without G: the raw sums of B̄ₘ and Φ̄ₘ over the selected positions.  With G: the raw sums of Q̄ₘ and
    p̄ₘ (2T − 1 entries, index t − s + T − 1).  `weights`: one factor per sequence (the probability of
    each outcome when the corruptions are enumerated)."""
    full_V = full_V or V
    N, T = x_tilde.shape
    eye = torch.eye(T, dtype=torch.float64)
    J = ((eye - 1.0 / T) / T).expand(T, T, T)                # J[t, s, s'], the same for every query t
    sums = [torch.zeros(V, V, dtype=torch.float64), torch.zeros(V, V, dtype=torch.float64)]
    position = torch.zeros(2 * T - 1, dtype=torch.float64)
    for i in range(N):
        weight = 1.0 if weights is None else float(weights[i])
        X = _one_hot(x_tilde[i], V)
        R = (_one_hot(y[i], V) - 1.0 / full_V) * selected[i].double()[:, None]   # r_t on S, 0 elsewhere
        if G is None:
            A = X.mean(0, keepdim=True).expand(T, V)         # ā_t = (1/T) Σ_s x̃_s for every t
            sums[0] += weight * (X.T @ R)
            sums[1] += weight * (R.T @ A)
        else:
            M = R @ G.T @ X.T                                # M[t, s] = x̃_s G r_tᵀ (0 for t ∉ S)
            dS = torch.einsum("tsu,tu->ts", J, M)
            sums[0] += weight * (X.T @ dS @ X)
            for d in range(-(T - 1), T):
                position[d + T - 1] += weight * torch.diagonal(dS, -d).sum()
    return sums if G is None else (sums[0], position)


def _masked_from_sums(accumulate, V, n, variant):
    """The seven statistics of §16 from a function giving the raw sums (pass 1 without G, pass 2 with G)."""
    bigram_sum, context_sum = accumulate(None)
    bigram, context = bigram_sum / n, context_sum / n
    G = (bigram @ context).T @ bigram if variant == "residual" else context.T.clone()
    attention_sum, position_sum = accumulate(G)
    return {"bigram": bigram, "context": context, "interchangeability": bigram.T @ bigram,
            "value_map": (bigram @ context).T, "attention_source": G, "attention_map": attention_sum / n,
            "position_map": position_sum / n}


def naive_masked_statistics(x_tilde, y, selected, V, variant="residual", full_V=None):
    """All seven statistics of docs/theory.md §16 for one corruption draw, normalised by n = |S|."""
    return _masked_from_sums(lambda G: naive_masked_statistics_accumulate(x_tilde, y, selected, V, G, full_V),
                             V, float(selected.sum()), variant)


def corruption_outcomes(tokens, scheme, V):
    """Every corruption of one clean sequence (docs/theory.md §16): (x̃ [K, T], selected [K, T], probability [K]).
    Per position: unselected (1 − π), MASK (πμ), own token (πκ), each random word w < n_words (πρ/n_words),
    shown as −1 when w lies outside the vocabulary [0, V) (a token set)."""
    import itertools
    pi, (mu, kappa, rho) = scheme.mask_prob, scheme.split
    per_position = []
    for token in tokens.tolist():
        options = [(token, False, 1 - pi), (scheme.mask_id, True, pi * mu), (token, True, pi * kappa)]
        options += [(w if w < V else -1, True, pi * rho / scheme.n_words) for w in range(scheme.n_words)]
        per_position.append(options)
    shown, selected, probability = [], [], []
    for outcome in itertools.product(*per_position):
        shown.append([o[0] for o in outcome])
        selected.append([o[1] for o in outcome])
        probability.append(float(torch.tensor([o[2] for o in outcome], dtype=torch.float64).prod()))
    return (torch.tensor(shown, dtype=torch.long), torch.tensor(selected, dtype=torch.bool),
            torch.tensor(probability, dtype=torch.float64))


def enumerated_expected_masked_statistics(x, scheme, V, variant="residual", full_V=None):
    """The statistics of the expected masked objective by brute force: every corruption outcome of every
    sequence with its probability, the probability-weighted raw sums of §16 divided by E[n] = πNT (Q̄ₘ, p̄ₘ
    with the fixed G of those B̄ₘ, Φ̄ₘ).  (3 + n_words)^T outcomes per sequence: tiny cases only."""
    outcomes = [corruption_outcomes(x[i], scheme, V) for i in range(x.shape[0])]

    def accumulate(G):
        total = None
        for i, (shown, selected, probability) in enumerate(outcomes):
            y = x[i].expand_as(shown)
            part = naive_masked_statistics_accumulate(shown, y, selected, V, G, full_V, weights=probability)
            total = list(part) if total is None else [a + b for a, b in zip(total, part)]
        return total

    return _masked_from_sums(accumulate, V, scheme.mask_prob * x.numel(), variant)


def naive_expected_masked_statistics(x, scheme, V, variant="residual", full_V=None):
    """The closed form of docs/theory.md §16 for the expected masked objective, written densely: per query
    position the moments of x̃_t ~ q_t and of H̃ = Σ_{s≠t} x̃_s (mean m_t, covariance Σ_{s≠t} diag(p_s) − p_s p_sᵀ)
    as V-vectors and V×V outer products, per key position a Python loop.  O(N·T·(V² + T·V))."""
    full_V = full_V or V
    N, T = x.shape
    pi, (mu, kappa, rho) = scheme.mask_prob, scheme.split
    w = torch.zeros(V, dtype=torch.float64)
    w[:min(scheme.n_words, V)] = rho / scheme.n_words
    if scheme.mask_id >= 0:
        w[scheme.mask_id] += mu
    n = pi * N * T

    def moments(i):
        X = _one_hot(x[i], V)
        q = kappa * X + w                                    # x̃_t given t selected
        p = (1 - pi) * X + pi * q                            # x̃_s otherwise (any position, unconditionally)
        m = p.sum(0, keepdim=True) - p                       # m_t = Σ_{s≠t} p_s
        R = X - 1.0 / full_V
        return X, q, p, m, R

    def accumulate(G):
        sums = [torch.zeros(V, V, dtype=torch.float64), torch.zeros(V, V, dtype=torch.float64)]
        position = torch.zeros(2 * T - 1, dtype=torch.float64)
        for i in range(N):
            X, q, p, m, R = moments(i)
            if G is None:
                sums[0] += pi * (q.T @ R)                    # E Σ_{t∈S} x̃_tᵀ r_t
                sums[1] += pi * (R.T @ ((q + m) / T))        # E Σ_{t∈S} r_tᵀ ā_t
                continue
            for t in range(T):
                g = G @ R[t]                                 # g_t = G r_tᵀ, over key tokens
                s_t = m[t] @ g
                spread = p.T @ (p @ g) - p[t] * (p[t] @ g)       # Σ_{s≠t} p_s (p_s·g_t)
                second = (torch.diag(q[t] * g) + s_t * torch.diag(q[t]) + torch.outer(q[t] * g, m[t])
                          + torch.outer(q[t], g * m[t] + m[t] * s_t - spread))
                sums[0] += (pi / T) * ((torch.diag(q[t]) + torch.outer(q[t], m[t])) * g[None, :] - second / T)
                mean_score = (q[t] @ g + s_t) / T             # E (1/T) Σ_s' x̃_s'·g_t
                key = p @ g                                  # E x̃_s·g_t = p_s·g_t (s ≠ t), q_t·g_t (s = t)
                key[t] = q[t] @ g
                position[t - torch.arange(T) + T - 1] += (pi / T) * (key - mean_score)
        return sums if G is None else (sums[0], position)

    return _masked_from_sums(accumulate, V, n, variant)
