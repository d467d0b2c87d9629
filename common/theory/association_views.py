"""Association views of token × token matrices (docs/theory.md §2): how a row of a corpus statistic, or of
a trained weight that learns it, is read — raw, normalised, both, lift — and which token pairs are the
corpus's strongest associations.  Pure functions of the statistics; the association report
(common/tiny/report.py) and both explorers (common/tiny/explorer.py, common/checkpoints/explorer.py) read them.

Views (docs/theory.md §2).  `raw` shows the matrix entries.  `normalised` divides row a of every map —
each statistic and each trained weight — by the frequency of a among the inputs, P̂(x=a)
(`CorpusStatistics.input_frequency`; a row whose token never occurs as an input is 0).  For the bigram
map this is the conditional, per-occurrence reading

    B̄[a,b] / P̂(x=a) = P̂(y=b | x=a) − 1/V,

so `bird → flew` reads ≈ 1 whatever the frequency of `bird`, while the raw entry of a rare token is
tiny next to those of `,` or `the`.  For the other maps it is the same per-occurrence rescaling of the
row (Φ̄ and Σ_B are indexed by output tokens: their rows are still divided by P̂(x=a), which differs
from P̂(y=a) only by the sequence ends).  Dividing a row by one number leaves the order of its
partners unchanged: the views differ in the values, which become comparable across tokens, and in the
choice of the strongest-association tokens below.

`lift` divides entry [a, b] by the frequencies of both tokens (input frequencies on both axes: a
token's frequency as an input and as an output differ only by the sequence ends), as often as each
enters the entry, and leaves out partners seen fewer than `min_count` times.  B̄, Σ_B, Φ̄ and (B̄Φ̄)ᵀ
(and W_O and V, which learn B̄ and (B̄Φ̄)ᵀ) accumulate over the co-occurrences of a and b, so they
grow as P̂(a) P̂(b) and are divided by it; for the bigram map

    B̄[a,b] / (P̂(a) P̂(b)) = P̂(y=b | x=a) / P̂(b) − 1/(V P̂(b)),

the lift of the pair minus a small correction.  Q̄ (and W, which learns it) is divided by P̂(a) P̂(b)²:
its entry for query a and key b sums the attention-score gradient over the co-occurrences of a and b
(one P̂(a) P̂(b)), and each of those gradients carries the value written by key b, M[t,s] = Ḡ[b, y_t] −
…, whose size grows with P̂(b) as the value map's row b does (a second P̂(b); docs/theory.md §2).  Either
way a partner's lift no longer grows with its frequency, so `,` and `the` do not lead every row just by
being frequent; the partners' order changes.

Strongest associations: pairs (a, b) ranked by the lower end of the lift's confidence interval,

    lift⁻(a, b) = (c − 2√c) / (n P̂(x=a) P̂(y=b)),   c = n P̂(x=a, y=b), the pair's count,

the lift discounted by two Poisson standard deviations of c: it needs both a large lift and enough
co-occurrences to be sure of it.  A pair that always occurs but is expected anyway (`near → the`:
P̂(the | near) = 1 but the lift only ≈ 12) ranks below a content pair of lift ≈ 1000 seen 40 times
(`bird → flew`), and a pair seen a handful of times ranks low whatever its lift.  The strongest-
association tokens are those whose best pair (largest lift⁻) is largest, among the tokens a and
partners b seen at least `min_count` times; ties go to the more frequent token.
"""
import torch

from common.io import UserError


PAGE_VIEWS = ("normalised", "raw", "both")   # the views that keep each row's order (the checkpoint explorer's)
VIEWS = PAGE_VIEWS + ("lift",)                # the report's and the tiny explorer's views
MIN_COUNT = 10   # a strongest-association token (or a lift partner) must occur at least this often as an input
LIFT_Z = 2.0     # the strongest pairs' lift is discounted by this many Poisson standard deviations of the pair count
LIFT_KEY_POWER = {"attention_map": 2}   # the power of P̂(b) in the lift's divisor (module docstring); others 1
VIEW_TEXT = {
    "raw": "raw matrix entries",
    "normalised": "entries of row a divided by the frequency P̂(x=a) of a (for B̄: P̂(y=b | x=a) − 1/V)",
    "both": "raw entry, then in parentheses the entry divided by the frequency P̂(x=a) of a "
            "(for B̄: P̂(y=b | x=a) − 1/V)",
    "lift": "entries divided by the frequencies of both tokens, P̂(a) P̂(b) (for Q̄ and W: P̂(a) P̂(b)², the key's "
            f"frequency entering once more through the size of its value), partners seen fewer than {MIN_COUNT} "
            "times left out (for B̄: P̂(y=b | x=a) / P̂(b) − 1/(V P̂(b)))",
}


def check_view(view: str, name: str = "report_view", views=VIEWS) -> str:
    if view not in views:
        raise UserError(f"--{name} must be one of {', '.join(views)} (got {view!r})")
    return view


def lift_key_power(field: str) -> int:
    """The power of the partner's frequency P̂(b) in the lift of statistic `field` (and of the weights
    that learn it): 2 for Q̄, 1 for the others (module docstring)."""
    return LIFT_KEY_POWER.get(field, 1)


def lifted_rows(matrix: torch.Tensor, frequency: torch.Tensor, counts: torch.Tensor,
                min_count: int = MIN_COUNT, key_power: int = 1) -> torch.Tensor:
    """Rows of `matrix` whose tokens have input frequencies `frequency` (a subset of rows), divided by
    P̂(a) P̂(b)^key_power; columns of tokens seen fewer than `min_count` times (of `counts`, every token)
    are −inf, rows of tokens never seen are 0 (module docstring, `lift`)."""
    rows = normalised_rows(matrix, frequency)
    column = (counts / counts.sum()).to(torch.float64) ** key_power
    lifted = rows / torch.where(column > 0, column, torch.ones_like(column))[None, :]
    return lifted.masked_fill((counts < min_count - 1e-6)[None, :], -float("inf"))


def token_frequency(stats) -> torch.Tensor:
    """P̂(x=a) for every token a (float64, CPU): the divisor of the normalised view."""
    return stats.input_frequency.detach().to("cpu", torch.float64)


def normalised_rows(matrix: torch.Tensor, frequency: torch.Tensor) -> torch.Tensor:
    """Row a of `matrix` (a statistic or a trained weight, rows indexed by token) divided by
    P̂(x=a); rows of tokens that never occur as inputs are 0."""
    matrix = matrix.detach().to("cpu", torch.float64)
    safe = torch.where(frequency > 0, frequency, torch.ones_like(frequency))
    return torch.where(frequency[:, None] > 0, matrix / safe[:, None], torch.zeros_like(matrix))


def statistic_view(stats, field: str, view: str = "normalised", min_count: int = MIN_COUNT) -> torch.Tensor:
    """Statistic `field` of `stats` (a CorpusStatistics field of TOKEN_STATISTICS) in the `raw`, the
    `normalised` or the `lift` view (module docstring), float64 on the CPU."""
    matrix = getattr(stats, field).detach().to("cpu", torch.float64)
    return weight_view(matrix, stats, field, view, min_count)


def weight_view(matrix: torch.Tensor, stats, field: str, view: str, min_count: int = MIN_COUNT) -> torch.Tensor:
    """A token × token matrix lining up with statistic `field` (the statistic itself or a trained weight
    that learns it) in `view`; `both` is the raw matrix (the normalised values are read beside it)."""
    frequency = token_frequency(stats)
    if view == "normalised":
        return normalised_rows(matrix, frequency)
    if view == "lift":
        return lifted_rows(matrix, frequency, frequency * stats.n_positions, min_count, lift_key_power(field))
    return matrix.detach().to("cpu", torch.float64)


ROW_CHUNK = 1024   # rows of the V × V pair measures held at once


def pair_counts(stats, rows=None):
    """(c [rows, V] pair counts n P̂(x=a, y=b), count of each row token n P̂(x=a), count of each token as
    an output n P̂(y=b) [V]) from B̄ = P̂(x=a, y=b) − P̂(x=a)/V, float64 on the CPU."""
    n = float(stats.n_positions)
    frequency = token_frequency(stats)
    V = stats.bigram.shape[1]
    rows = torch.arange(stats.bigram.shape[0]) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    output = getattr(stats, "output_frequency", None)
    if output is None:   # column sums of the joint distribution, a chunk of rows at a time
        output = sum((stats.bigram[s:s + ROW_CHUNK].detach().to("cpu", torch.float64)
                      + frequency[s:s + ROW_CHUNK, None] / V).sum(0) for s in range(0, V, ROW_CHUNK))
    joint = stats.bigram.detach()[rows.to(stats.bigram.device)].to("cpu", torch.float64) + frequency[rows, None] / V
    return (joint * n).clamp_min(0), frequency[rows] * n, output.to(torch.float64) * n


def lift_lower_bound(pairs: torch.Tensor, row_counts: torch.Tensor, column_counts: torch.Tensor,
                     n: float, z: float = LIFT_Z) -> torch.Tensor:
    """lift⁻ = (c − z√c) / (n P̂(a) P̂(b)) = n (c − z√c) / (count(a) count(b)) (module docstring);
    0 where c ≤ z², and where either token never occurs."""
    expected = row_counts[:, None] * column_counts[None, :] / n
    lower = (pairs - z * pairs.sqrt()).clamp_min(0)
    return torch.where(expected > 0, lower / torch.where(expected > 0, expected, torch.ones_like(expected)),
                       torch.zeros_like(lower))


def best_pairs(stats, min_count: int = MIN_COUNT):
    """(lift⁻ of the best pair of every token a, its partner b) [V], among partners seen at least
    `min_count` times as outputs; −inf for tokens seen fewer than `min_count` times as inputs."""
    V = stats.bigram.shape[0]
    best, partner = torch.full((V,), -float("inf"), dtype=torch.float64), torch.zeros(V, dtype=torch.long)
    for start in range(0, V, ROW_CHUNK):
        rows = torch.arange(start, min(start + ROW_CHUNK, V))
        pairs, row_counts, column_counts = pair_counts(stats, rows)
        bound = lift_lower_bound(pairs, row_counts, column_counts, float(stats.n_positions))
        bound = bound.masked_fill((column_counts < min_count - 1e-6)[None, :], -float("inf"))
        bound = bound.masked_fill((row_counts < min_count - 1e-6)[:, None], -float("inf"))
        best[rows], partner[rows] = bound.max(dim=1)
    return best, partner


def strongest_association_tokens(stats, n_tokens: int, min_count: int = MIN_COUNT) -> list:
    """The `n_tokens` tokens whose best pair has the largest lift⁻ (module docstring), among those seen
    at least `min_count` times as inputs, strongest first (ties, to 1e-9 relative: the more frequent first)."""
    best, _ = best_pairs(stats, min_count)
    eligible = torch.nonzero(torch.isfinite(best)).flatten()
    frequency = token_frequency(stats)[eligible]
    # rounded so that equal bounds tie despite float noise, and ties go to frequency
    strength = best[eligible]
    scale = float(strength.abs().max()) if len(strength) else 1.0
    strength = (strength / (scale or 1.0)).round(decimals=9)
    # sort by frequency first, then (stably) by strength: equal strengths keep the frequency order
    by_frequency = frequency.argsort(descending=True, stable=True)
    order = by_frequency[strength[by_frequency].argsort(descending=True, stable=True)]
    return eligible[order][:n_tokens].tolist()


def strongest_pair_table(stats, n_pairs: int, min_count: int = MIN_COUNT) -> list:
    """The best pair (largest lift⁻) of each of the `n_pairs` strongest-association tokens, strongest
    first: {a, b, conditional P̂(b | a), lift, lift_lower (lift⁻), pairs (count of a → b), count (of a)} —
    where a reader of the report or the explorer starts."""
    tokens = strongest_association_tokens(stats, n_pairs, min_count)
    if not tokens:
        return []
    _, partner = best_pairs(stats, min_count)
    pairs, row_counts, column_counts = pair_counts(stats, tokens)
    n, table = float(stats.n_positions), []
    for i, a in enumerate(tokens):
        b = int(partner[a])
        c = float(pairs[i, b])
        expected = float(row_counts[i]) * float(column_counts[b]) / n
        table.append({"a": a, "b": b, "conditional": c / float(row_counts[i]), "lift": c / expected,
                      "lift_lower": float(lift_lower_bound(pairs[i:i + 1, b:b + 1], row_counts[i:i + 1],
                                                           column_counts[b:b + 1], n)),
                      "pairs": int(round(c)), "count": int(round(float(row_counts[i])))})
    return table


def strongest_pairs(stats, n_pairs: int, min_count: int = MIN_COUNT) -> list:
    """(a, b, P̂(y=b | x=a) − 1/V, count of a) of the pairs of strongest_pair_table, in its order."""
    V = stats.bigram.shape[1]
    return [(row["a"], row["b"], row["conditional"] - 1 / V, row["count"])
            for row in strongest_pair_table(stats, n_pairs, min_count)]


def frequent_partner_share(matrix: torch.Tensor, stats, field: str, view: str, n_frequent: int = 20,
                           min_count: int = MIN_COUNT) -> float:
    """The share of the rows of tokens seen at least `min_count` times whose top partner (among partners
    seen that often; Σ_B's diagonal left out) is one of the `n_frequent` most frequent tokens: how much
    frequency alone leads a view of `matrix` (a statistic `field` or a weight that learns it)."""
    frequency = token_frequency(stats)
    counts = frequency * stats.n_positions
    rows = torch.nonzero(counts >= min_count - 1e-6).flatten()
    frequent = frequency.argsort(descending=True, stable=True)[:n_frequent]
    shown = weight_view(matrix, stats, field, view, min_count)[rows].clone()
    shown[:, counts < min_count - 1e-6] = -float("inf")
    if field == "interchangeability":
        shown[torch.arange(len(rows)), rows] = -float("inf")
    return float(torch.isin(shown.argmax(dim=1), frequent).double().mean()) if len(rows) else 0.0
