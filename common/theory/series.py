"""The Taylor series of training (docs/theory.md §14): every weight of a zero-initialised
attention-only transformer under full-batch gradient flow, as a power series in τ.

From θ(0) = 0 the flow dθ/dτ = −∇L(θ) has the solution θ(τ) = Σ_{k≥1} c_k τ^k, with

    c_{k+1} = −g_k / (k+1),     g_k = [τ^k] ∇L(θ(τ))       (the k-th Taylor coefficient of the gradient)

and g_k needs c_1 … c_k only.  Taylor-mode ("jet") arithmetic computes g_k exactly, to float64:
with θ0 a leaf equal to zero and the polynomial p(τ) = Σ_{j=1}^{k} c_j τ^j held constant,

    g_k = ∇_{θ0} L_k,     L_k = [τ^k] L(θ0 + p(τ))

(differentiating in θ0 and taking a Taylor coefficient commute).  So for k = 0 … K−1: one forward
pass of the model in which every tensor is the list of its Taylor coefficients 0 … k, the scalar
L_k, one backward pass to θ0.  The model's operations on jets:

    sum, gather (X W = W[tokens], DM(P))        coefficient by coefficient
    product (matmul, elementwise)               Cauchy product  (ab)_m = Σ_{i+j=m} a_i b_j
    softmax over the keys or the vocabulary     ℓ = log Σ exp s:  ℓ_m = (1/m) Σ_{j=1}^m j Σ s_j p_{m−j}
                                                p = exp(s − ℓ):   p_m = (1/m) Σ_{j=1}^m j (s_j − ℓ_j) p_{m−j}
    causal mask                                 masked scores are −inf at order 0 (p_0 = 0 there), so
                                                every higher p_m is 0 there too

What keeps it cheap (docs/theory.md §14):
  - a weight kind's coefficients below its leading power (common/theory/weight_kinds.py) are zero,
    so every product with one of them is skipped;
  - θ0 = 0, and only the first derivative in θ0 is wanted: a coefficient that is zero in value and
    linear in θ0 (the order-0 weights, the order-0 scores and logits, …) is *first order*; a product
    of two first-order factors is zero with zero gradient and is skipped, and a product of one
    first-order factor with any other is computed in its backward pass only (its value is zero);
  - the loss is a mean over positions, so sequences are processed in chunks whose L_k are summed.

The variants of docs/theory.md §16 are exact too: attention over all positions (order 0 of the scores
is then finite, and p_0 uniform over every key), the loss on selected positions only (the logits are
taken at those rows alone, and L_k is divided by the number of selected positions of all chunks), no
residual (h^l is the attention output alone, with no one-hot part after the first layer) and the
identity output (logits = h^L).  Each kind's leading power, which the truncation above relies on, is
read from the variant's table (common/theory/weight_kinds.py).

The nested forward-mode formulation (k nested `torch.func.jvp` of the gradient along τ, about 2^k
gradients per order) is in common/theory/reference.py: the tests' ground truth and the benchmark's
baseline.

Reading the series (docs/theory.md §14): the remainder beyond a kind's leading term relative to that
term, ρ(τ) = ‖Σ_{j>p} c_j τ^j‖ / ‖c_p τ^p‖, predicts the relative error of the leading-term
prediction (its threshold crossing is τ*), and the growth of ‖c_k‖ estimates the radius of
convergence of the series.
"""
import math
from typing import Optional

import torch
from common.progress import progress_bar

from common.io import UserError
from common.theory.model import AttentionOnlyTransformer
from common.theory.weight_kinds import kinds_by_name, model_variant

Tensor = torch.Tensor


def kind_of(name: str, variant: str = "residual"):
    """The WeightKind of a parameter name of common/theory/model.py ('W_O', 'layers.2.V', …) in a model
    variant (common.theory.weight_kinds.model_variant)."""
    return kinds_by_name(variant)[name.rsplit(".", 1)[-1]]


def layer_of(name: str) -> Optional[int]:
    """The layer index of a per-layer parameter name (None for W_O)."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) == 3 else None


# -- jets --------------------------------------------------------------------------------------------
class Jet:
    """Taylor coefficients 0 … K of one tensor: `terms[m]` is the τ^m coefficient or None (identically
    zero); `first` holds the orders whose coefficient is first order in θ0 and zero in value."""
    __slots__ = ("terms", "first")

    def __init__(self, terms, first=()):
        self.terms, self.first = list(terms), set(first)

    def __getitem__(self, m):
        return self.terms[m] if 0 <= m < len(self.terms) else None

    def __len__(self):
        return len(self.terms)


class _FirstOrder(torch.autograd.Function):
    """A product with exactly one first-order factor (zero in value, linear in θ0), the other taken at
    its value: the result is zero, so the forward pass does no arithmetic; the backward pass gives
    the first-order factor its gradient, `vjp(grad)` (the other factor's would be second order)."""

    @staticmethod
    def forward(ctx, first, shape, vjp):
        ctx.vjp = vjp
        return first.new_zeros(()).expand(shape)

    @staticmethod
    def backward(ctx, grad):
        return ctx.vjp(grad), None, None


class _Attach(torch.autograd.Function):
    """value + Σ first-order terms: the value unchanged (the terms are zero), the gradient passed to
    every term."""

    @staticmethod
    def forward(ctx, value, *firsts):
        ctx.shapes = [None if value is None else value.shape] + [f.shape for f in firsts]
        shape = torch.broadcast_shapes(*(s for s in ctx.shapes if s is not None))
        if value is None:
            return firsts[0].new_zeros(()).expand(shape)
        return value.expand(shape) if value.shape != shape else value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        return tuple(None if s is None else grad.sum_to_size(s) for s in ctx.shapes)


def _first_order(first, shape, vjp):
    return _FirstOrder.apply(first, shape, vjp)


class _Terms:
    """The terms of one coefficient: regular ones summed (fused multiply-adds), first-order ones
    attached to the sum without arithmetic."""
    __slots__ = ("value", "firsts")

    def __init__(self):
        self.value, self.firsts = None, []

    def add(self, x, first: bool, scale: float = 1.0):
        if x is None:
            return
        if first:
            self.firsts.append(x if scale == 1.0 else _first_order(x, x.shape, lambda g: g * scale))
        elif self.value is None:
            self.value = x if scale == 1.0 else x * scale
        else:
            self.value = torch.add(self.value, x, alpha=scale)

    def add_product(self, u, u_first, v, v_first, scale: float = 1.0):
        """+ scale · u ⊙ v (broadcasting)."""
        if u is None or v is None or (u_first and v_first):
            return
        if u_first or v_first:
            first, other = (u, v.detach()) if u_first else (v, u.detach())
            shape = torch.broadcast_shapes(u.shape, v.shape)
            self.firsts.append(_first_order(first, shape, lambda g: (g * other * scale).sum_to_size(first.shape)))
        elif self.value is None:
            self.value = u * v * scale if scale != 1.0 else u * v
        else:
            self.value = torch.addcmul(self.value, u, v, value=scale)

    def add_dot(self, u, u_first, v, v_first, scale: float = 1.0):
        """+ scale · Σ_last u ⊙ v, keeping the last dimension (size 1)."""
        if u is None or v is None or (u_first and v_first):
            return
        if u_first or v_first:
            first, other = (u, v.detach()) if u_first else (v, u.detach())
            shape = torch.broadcast_shapes(u.shape, v.shape)[:-1] + (1,)
            self.firsts.append(_first_order(first, shape, lambda g: (g * other * scale).sum_to_size(first.shape)))
        else:
            self.add(torch.linalg.vecdot(u, v)[..., None], False, scale)

    def result(self):
        """(value or None, whether it is first order)."""
        if not self.firsts:
            return self.value, False
        return _Attach.apply(self.value, *self.firsts), self.value is None


def _set(jet: Jet, m: int, result) -> None:
    value, first = result
    jet.terms[m] = value
    if value is not None and first:
        jet.first.add(m)


def _matmul(u, u_first, v, v_first):
    if u_first:
        other = v.detach()
        shape = torch.broadcast_shapes(u.shape[:-2], v.shape[:-2]) + (u.shape[-2], v.shape[-1])
        return _first_order(u, shape, lambda g: (g @ other.transpose(-1, -2)).sum_to_size(u.shape))
    if v_first:
        other = u.detach()
        shape = torch.broadcast_shapes(u.shape[:-2], v.shape[:-2]) + (u.shape[-2], v.shape[-1])
        if v.dim() == 2 and other.dim() == 3:
            # a [V, V] weight after a batch: ∂f = Σ_batch oᵀ g as one 2-D product
            return _first_order(v, shape, lambda g: other.reshape(-1, other.shape[-1]).T @ g.reshape(-1, g.shape[-1]))
        return _first_order(v, shape, lambda g: (other.transpose(-1, -2) @ g).sum_to_size(v.shape))
    return u @ v


def cauchy(a: Jet, b: Jet, order: int) -> Jet:
    """The matrix product of two jets, (ab)_m = Σ_{i+j=m} a_i b_j for m ≤ order, skipping zero
    factors and pairs of first-order ones."""
    sums = [_Terms() for _ in range(order + 1)]
    for i, u in enumerate(a.terms[:order + 1]):
        if u is None:
            continue
        for j in range(order + 1 - i):
            v = b[j]
            if v is None or (i in a.first and j in b.first):
                continue
            sums[i + j].add(_matmul(u, i in a.first, v, j in b.first), (i in a.first) or (j in b.first))
    out = Jet([None] * (order + 1))
    for m, terms in enumerate(sums):
        _set(out, m, terms.result())
    return out


def add(*jets: Jet) -> Jet:
    order = max(len(j) for j in jets) - 1
    out = Jet([None] * (order + 1))
    for m in range(order + 1):
        terms = _Terms()
        for jet in jets:
            terms.add(jet[m], m in jet.first)
        _set(out, m, terms.result())
    return out


def apply(jet: Jet, fn) -> Jet:
    """A linear map (gather, transpose) applied coefficient by coefficient."""
    return Jet([None if t is None else fn(t) for t in jet.terms], jet.first)


def log_normaliser(s: Jet, p: Jet, m: int):
    """ℓ_m = (1/m) Σ_{j=1}^m j Σ_last s_j p_{m−j} (m ≥ 1) of ℓ = log Σ exp s, from p = softmax(s)
    (p_0 … p_{m−1} suffice): (value [..., 1] or None, first order)."""
    terms = _Terms()
    for j in range(1, m + 1):
        terms.add_dot(s[j], j in s.first, p[m - j], (m - j) in p.first, j / m)
    return terms.result()


def softmax_jet(s: Jet, order: int) -> Jet:
    """p = softmax(s) over the last dimension, coefficients 0 … order (s_0 may hold −inf: masked).
    With e_j = s_j − ℓ_j:  p_m = (1/m) Σ_{j=1}^m j e_j p_{m−j}."""
    p = Jet([torch.softmax(s[0], dim=-1)] + [None] * order)   # p_0 depends on θ0 through s_0
    e = Jet([None] * (order + 1))
    for m in range(1, order + 1):
        normaliser, first = log_normaliser(s, p, m)
        difference = _Terms()
        difference.add(s[m], m in s.first)
        difference.add(normaliser, first, -1.0)
        _set(e, m, difference.result())
        terms = _Terms()
        for j in range(1, m + 1):
            terms.add_product(e[j], j in e.first, p[m - j], (m - j) in p.first, j / m)
        _set(p, m, terms.result())
    return p


# -- the model on jets -------------------------------------------------------------------------------
def _weight_jets(leaves: dict, coefficients: list, order: int, variant: str = "residual") -> dict:
    """Each parameter as the jet θ0 + Σ_{j=1}^{order} c_j τ^j for the pass that gives c_{order+1}.
    θ0 is the zero leaf (first order) where c_{order+1} is wanted, and left out (None) where it is
    known to be zero (order + 1 below the kind's leading power in the model's variant); the
    coefficients below the leading power are zero and left out too."""
    jets = {}
    for name, leaf in leaves.items():
        power = kind_of(name, variant).power
        jets[name] = Jet([leaf if order + 1 >= power else None] +
                         [coefficients[j - 1][name] if j >= power else None for j in range(1, order + 1)], first=[0])
    return jets


def _one_hot_product(tokens: Optional[Tensor], residual: Optional[Jet], weight: Jet, order: int) -> Jet:
    """h M for the residual stream h = X + residual (X one-hot): a row gather M[tokens] plus a product.
    tokens None: h has no one-hot part (after a layer without the residual connection)."""
    if tokens is None:
        return cauchy(residual, weight, order)
    gathered = apply(weight, lambda m: m[tokens])
    return gathered if residual is None else add(gathered, cauchy(residual, weight, order))


def _scores(tokens: Optional[Tensor], residual: Optional[Jet], W: Jet, order: int) -> Jet:
    """S = h W hᵀ for h = X + residual.  At the first layer (h = X) a gather W[x_t, x_s]; after it,
    hW and then a column gather of hW for the key side's one-hot part (none when tokens is None)."""
    if tokens is None:
        return cauchy(cauchy(residual, W, order), apply(residual, lambda r: r.transpose(-1, -2)), order)
    if residual is None:
        return apply(W, lambda w: w[tokens[:, :, None], tokens[:, None, :]])
    b, T = tokens.shape
    keys = tokens[:, None, :].expand(b, T, T)
    queries = _one_hot_product(tokens, residual, W, order)
    return add(apply(queries, lambda q: q.gather(-1, keys)),
               cauchy(queries, apply(residual, lambda r: r.transpose(-1, -2)), order))


def jet_loss(weights: dict, n_layers: int, tokens: Tensor, targets: Tensor, position_index: Tensor,
             causal: Optional[Tensor], order: int, selected: Optional[Tensor] = None,
             residual_stream: bool = True) -> Tensor:
    """L_order of the chunk: the τ^order coefficient of Σ over its positions (the `selected` ones, a
    boolean [B, T], when given) of the cross-entropy (the caller divides by the number of positions of
    all chunks).  `causal` None: attention over all positions; `residual_stream` False: h^l is the
    attention output alone; no "W_O" in `weights`: logits = h^L.  docs/theory.md §1, §16 on jets."""
    T = tokens.shape[1]
    index = position_index[:T, :T]
    hidden = None if causal is None else ~causal[:T, :T]
    one_hot, residual = tokens, None             # h = X + residual; h⁰ = X; without the residual stream
    for l in range(n_layers):                    # X is left out from the first layer's output on
        W, V, P = (weights[f"layers.{l}.{k}"] for k in ("W", "V", "P"))
        scores = add(_scores(one_hot, residual, W, order), apply(P, lambda p: p[index]))
        # order 0 is zero in value (uniform attention); a constant zero when neither W's nor P's
        # gradient is wanted at this order
        zero = scores[0] if scores[0] is not None else index.new_zeros(index.shape, dtype=torch.float64)
        scores.terms[0] = zero if hidden is None else zero.masked_fill(hidden, float("-inf"))
        attention = softmax_jet(scores, order)
        values = _one_hot_product(one_hot, residual, V, order)
        out = cauchy(attention, values, order)
        if residual_stream:
            residual = out if residual is None else add(residual, out)
        else:
            one_hot, residual = None, out
    if selected is not None:
        # the loss reads the selected rows only: the output softmax runs on them alone
        one_hot = None if one_hot is None else one_hot[selected]
        residual = None if residual is None else apply(residual, lambda r: r[selected])
        targets = targets[selected]
    if "W_O" in weights:
        logits = _one_hot_product(one_hot, residual, weights["W_O"], order)
    elif one_hot is None:
        logits = residual
    else:
        raise ValueError("identity logits with the residual stream are not supported (no leading-term theory)")
    # lse_k − z_k[y] summed over positions; lse_k needs p_0 … p_{k−1} only
    present = [t for t in logits.terms if t is not None]
    if not present:          # logits constant zero (e.g. stacked layers without the residual): no gradient
        return 0.0
    if logits[0] is None:    # zero at order 0 in value and gradient: a constant zero (uniform p_0)
        logits = Jet([present[0].new_zeros(present[0].shape)] + logits.terms[1:], logits.first - {0})
    if order == 0:
        z = logits[0]
        return (torch.logsumexp(z, -1) - z.gather(-1, targets[..., None]).squeeze(-1)).sum()
    p = softmax_jet(Jet(logits.terms[:order], logits.first), order - 1)
    normaliser = log_normaliser(logits, p, order)[0]
    z = logits[order]
    total = 0.0 if normaliser is None else normaliser.sum()
    return total - (0.0 if z is None else z.gather(-1, targets[..., None]).sum())


# -- the series ----------------------------------------------------------------------------------------
def check_inputs(model, x: Tensor, y: Tensor, order: int, selected: Optional[Tensor] = None) -> None:
    """UserError (one line) for a model that is not a zero-initialised attention-only transformer of a
    variant with a leading-term table, sequences that do not fit it, a `selected` mask that does not
    match them or selects nothing, or an order below 1."""
    if not isinstance(model, AttentionOnlyTransformer):
        raise UserError(f"the series is defined for common.theory.model.AttentionOnlyTransformer "
                        f"(got {type(model).__name__})")
    model_variant(model)
    nonzero = [name for name, p in model.named_parameters() if bool(p.detach().ne(0).any())]
    if nonzero:
        raise UserError(f"the series of training starts from zero initialisation, but {len(nonzero)} "
                        f"weights are not zero (first: {nonzero[0]}); build the model with init_std=0")
    if not (isinstance(order, int) and order >= 1):
        raise UserError(f"the order of the series must be an integer ≥ 1 (got {order!r})")
    if x.dim() != 2 or x.shape != y.shape or x.shape[0] == 0 or x.shape[1] == 0:
        raise UserError(f"x and y must be [N, T] token ids of the same non-empty shape "
                        f"(got {tuple(x.shape)} and {tuple(y.shape)})")
    if x.shape[1] > model.seq_len:
        raise UserError(f"sequence length {x.shape[1]} exceeds the model's seq_len {model.seq_len}")
    low, high = int(min(x.min(), y.min())), int(max(x.max(), y.max()))
    if low < 0 or high >= model.vocab_size:
        raise UserError(f"token ids must lie in [0, {model.vocab_size}) (got {low} … {high})")
    if selected is not None:
        if selected.shape != x.shape or selected.dtype != torch.bool:
            raise UserError(f"selected must be a boolean [N, T] mask of x's shape {tuple(x.shape)} "
                            f"(got {selected.dtype} {tuple(selected.shape)})")
        if not bool(selected.any()):
            raise UserError("selected holds no position: the masked loss is empty")


def gradient_flow_series(model, x: Tensor, y: Tensor, order: int, chunk_size: int = 16,
                         device=None, progress: bool = False, selected: Optional[Tensor] = None) -> list:
    """[c_1, …, c_order] of full-batch gradient flow on the mean cross-entropy of (x, y) ([N, T]
    token ids) from the zero-initialised `model`: c_k maps every name of `model.named_parameters()`
    to its τ^k coefficient, float64 on the CPU.  Exact (Taylor-mode arithmetic, module docstring);
    `chunk_size` sequences per forward pass (memory, not the result, depends on it), on `device`
    (default: the model's).  `selected` (boolean [N, T]): the mean is over the selected positions of
    the whole batch (masked language modelling, x the corrupted input); every variant of the model
    (docs/theory.md §16)."""
    check_inputs(model, x, y, order, selected)
    if chunk_size < 1:
        raise UserError(f"the chunk size must be at least 1 (got {chunk_size})")
    variant = model_variant(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    x, y = x.to(device).long(), y.to(device).long()
    position_index = model.position_index.to(device)
    causal = None if model.causal is None else model.causal.to(device)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    leaves = {name: torch.zeros(shape, dtype=torch.float64, device=device, requires_grad=True)
              for name, shape in shapes.items()}
    if selected is None:
        n_positions, masks = x.numel(), [None] * len(x.split(chunk_size))
    else:
        selected = selected.to(device)
        n_positions, masks = int(selected.sum()), list(selected.split(chunk_size))
    chunks = list(zip(x.split(chunk_size), y.split(chunk_size), masks))
    coefficients = []
    bar = progress_bar(total=order * len(chunks), desc="series", disable=not progress, dynamic_ncols=True)
    for k in range(order):
        weights = _weight_jets(leaves, coefficients, k, variant)
        for xs, ys, mask in chunks:
            if mask is not None and not bool(mask.any()):
                bar.update()
                continue
            loss = jet_loss(weights, model.n_layers, xs, ys, position_index, causal, k, mask,
                            model.residual) / n_positions
            if torch.is_tensor(loss) and loss.requires_grad:
                loss.backward()
            bar.update()
        # c_{k+1} = −g_k/(k+1), kept on the compute device for the next order's jets
        coefficients.append({name: (torch.zeros_like(leaf) if leaf.grad is None else -leaf.grad / (k + 1)).detach()
                             for name, leaf in leaves.items()})
        for leaf in leaves.values():
            leaf.grad = None
    bar.close()
    return [{name: c.cpu() for name, c in step.items()} for step in coefficients]


# -- reading the series ----------------------------------------------------------------------------
def partial_sum(coefficients: list, name: str, tau: float, up_to: Optional[int] = None) -> Tensor:
    """Σ_{k ≤ up_to} c_k τ^k of one parameter (all orders by default)."""
    up_to = len(coefficients) if up_to is None else up_to
    return sum(coefficients[k - 1][name] * tau ** k for k in range(1, up_to + 1))


def coefficient_norms(coefficients: list) -> dict:
    """{parameter name: [‖c_1‖, …, ‖c_K‖]} (Frobenius)."""
    return {name: [float(c[name].norm()) for c in coefficients] for name in coefficients[0]}


def remainder_ratio(coefficients: list, name: str, taus, variant: str = "residual") -> list:
    """ρ(τ) = ‖Σ_{j>p} c_j τ^j‖ / ‖c_p τ^p‖ for p the kind's leading power in the model `variant`, at each
    τ (None where the series has no term beyond p).  ρ is the norm of a polynomial in τ with matrix
    coefficients, so one Gram matrix of the coefficients gives every τ."""
    power = kind_of(name, variant).power
    if len(coefficients) <= power:
        return [None for _ in taus]
    rest = torch.stack([coefficients[j - 1][name].reshape(-1) for j in range(power + 1, len(coefficients) + 1)])
    gram = rest @ rest.T
    lead = float(coefficients[power - 1][name].norm())
    ratios = []
    for tau in taus:
        w = torch.tensor([tau ** (j - power) for j in range(power + 1, len(coefficients) + 1)], dtype=torch.float64)
        ratios.append(float((w @ gram @ w).clamp_min(0).sqrt()) / lead if lead > 0 else math.inf)
    return ratios


def radius_estimates(norms: list, first: int = 1) -> dict:
    """Estimates of the radius of convergence R of Σ c_k τ^k from ‖c_first‖ … ‖c_K‖ (docs/theory.md §14),
    with the ratio test taken two orders apart, r_k = ‖c_k‖ / ‖c_{k−2}‖ → 1/R²: odd and even orders
    may differ in size (the even terms of W_O carry a factor 1/V), which misleads the one-step ratio.
        ratio        1/√r over the last two orders (geometric mean; the last one alone if only it exists)
        root         ‖c_K‖^{−1/K}  (Cauchy–Hadamard at the last order; approaches R slowly)
        domb_sykes   1/√(intercept) of the straight line through the last three r_k against 1/k, which
                     removes the 1/k correction of a power-law singularity (None with fewer than three
                     r_k or an intercept ≤ 0)
    Each is None where the norms do not allow it."""
    K = len(norms)
    estimates = {"ratio": None, "root": None, "domb_sykes": None}
    if K >= first and norms[K - 1] > 0:
        estimates["root"] = norms[K - 1] ** (-1.0 / K)
    ratios = [(k, norms[k - 1] / norms[k - 3]) for k in range(first + 2, K + 1)
              if norms[k - 3] > 0 and norms[k - 1] > 0]
    if ratios:
        last = [r for _, r in ratios[-2:]]
        estimates["ratio"] = math.prod(last) ** (-1.0 / (2 * len(last)))
    if len(ratios) >= 3:
        points = ratios[-3:]
        u = torch.tensor([1.0 / k for k, _ in points], dtype=torch.float64)
        r = torch.tensor([ratio for _, ratio in points], dtype=torch.float64)
        slope = float(((u - u.mean()) * (r - r.mean())).sum() / ((u - u.mean()) ** 2).sum())
        intercept = float(r.mean()) - slope * float(u.mean())
        estimates["domb_sykes"] = intercept ** -0.5 if intercept > 0 else None
    return estimates
