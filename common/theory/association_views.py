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

`lift` ranks a row's partners by their association, robustly to rare tokens: entry [a, b] of a map is
divided by the frequencies of both tokens, as often as each enters the entry, and discounted by the
noise of the counts the entry rests on; only pairs whose discounted lift is positive, of tokens seen at
least `min_count` times, are shown.  One function (`LiftSupport.lift_lower`) decides what a row may show
and the strongest-pairs table reads the B̄ rows it makes, so the table's pair a → b is the top partner of
a's B̄ row, with the same value.

    lift⁻[a, b] = X[a, b] / (P̂(a) D[b]) · (1 − z / √N[a, b]),   z = LIFT_Z = 2,

shown when X[a, b] > 0, N[a, b] > z² and both tokens are seen `min_count` times.  X is the map (a
statistic, or a trained weight that learns it); the frequencies are those of each axis — a token's count
as an input for B̄'s rows, (B̄Φ̄)ᵀ and Q̄, as an output for B̄'s columns, Σ_B and Φ̄'s rows (they differ at
the sequence ends: a name that ends its sequences, like `galindo` in `Patch by Pablo Galindo`, is an
output far more often than an input).  The divisor is the map's size when the tokens are independent
(the context of the next token, the next token of the input): P̂(a) P̂(b) for B̄, Σ_B and Φ̄ (and W_O);
P̂(k) P̂(i) s_i for (B̄Φ̄)ᵀ (and V), s_i = Σ_j P̂(y=j | x=i) P̂(y=j) the mean frequency of i's successors
— the entry sums Φ̄[j, k] B̄[i, j] over the successors j of i, each of size P̂(j) under independence, so
without s_i the tokens followed by one frequent token (`by <unk>`, `garbage collector`) lead every row;
and P̂(a) P̂(b)² for Q̄ (and W): its entry for query a and key b sums the attention-score gradient over
the co-occurrences of a and b (one P̂(a) P̂(b)), and each of those gradients carries the value written
by key b, M[t,s] = Ḡ[b, y_t] − …, whose size grows with P̂(b) as the value map's row b does (a second
P̂(b)).  Either way a partner's lift no longer grows with its frequency, so `,` and `the` do not lead
every row just by being frequent.

N[a, b] is the entry's effective number of supporting pairs, (entry / its standard error)², with every
count it is built from taken as Poisson (variance = count) and the products' errors by the delta method,
from the co-occurrence parts of the statistics — the centring (−P̂(x=i)/V in B̄, −m_k/V in Φ̄) is no pair
(docs/theory.md §2, "Reading a row"):
    B̄      N = c, the pair count n P̂(x=a, y=b); B̄'s own row shows the pair's lift, X = P̂(x=a, y=b)
           (B̄ without its centring), so that lift⁻ is (c − z√c) / (n P̂(x=a) P̂(y=b)), the lift less z
           Poisson standard deviations of c;
    Φ̄      N = f_jk = (n Φ̄[j, k])₊ · (len(p̄) + 1)/2, the context co-occurrence sum (each position's
           context a unit spread over its keys, as uniform attention spreads it) counted in (key, query)
           pairs: times the mean number of keys of a query, (T + 1)/2 causal, T over all positions;
    Σ_B    N = S² / Σ_i c_ij c_ij' (c_ij + c_ij'),  S = Σ_i c_ij c_ij'; Σ_B's own row shows that
           co-occurrence part, X = Σ_i P̂(x=i, y=j) P̂(x=i, y=j') (its centring, Σ_i P̂(i)²/V² and the
           like, is the same for every pair and, divided by P̂(j) P̂(j'), put the rarest tokens first);
    (B̄Φ̄)ᵀ  N = S² / Σ_j (f_jk² c_ij + c_ij² f_jk),  S = Σ_j f_jk c_ij;
    Q̄      1/N = 1/f[a, b] + 1/count(b): the co-occurrences of query a and key b (those of a as the next
           token and b among its keys, one position earlier; for a query never seen as an output, such as
           MASK, count(a) P̂(x=b) queries, in pairs), and the key's value, estimated from its count(b)
           occurrences.
A weight that learns a statistic rests on the same corpus pairs and takes its N.  A pair seen a handful
of times, or a product of a rare token's few occurrences, is discounted most: the lift of a rare token's
row is as noisy as its few counts, and a ranking by the lift alone put rare tokens at the top of every
row of Σ_B, (B̄Φ̄)ᵀ and Q̄.

Strongest associations: the best pair (largest lift⁻) of each token's B̄ row,

    lift⁻(a, b) = (c − 2√c) / (n P̂(x=a) P̂(y=b)),   c = n P̂(x=a, y=b), the pair's count:

it needs both a large lift and enough co-occurrences to be sure of it.  A pair that always occurs but is
expected anyway (`near → the`: P̂(the | near) = 1 but the lift only ≈ 12) ranks below a content pair of
lift ≈ 1000 seen 40 times (`bird → flew`), and a pair seen a handful of times ranks low whatever its
lift.  The strongest-association tokens are those whose best pair is largest; ties go to the more
frequent token.

Masked runs (docs/theory.md §16): the vocabulary ends with the MASK token, which is an input (the query
at the masked positions) but never an output: it has no count as an output, so it is never a partner on
an output axis (B̄'s and Σ_B's columns) nor has a row of Σ_B or Φ̄ (`output_axis_fields`).
"""
import math

import torch

from common.io import UserError


PAGE_VIEWS = ("normalised", "raw", "both")   # the views that keep each row's order (the checkpoint explorer's)
VIEWS = PAGE_VIEWS + ("lift",)                # the report's and the tiny explorer's views
MIN_COUNT = 10   # a token must occur at least this often (on its axis) to have a lift row or be a lift partner
LIFT_Z = 2.0     # the lift is discounted by this many standard deviations of the counts it rests on
LIFT_KEY_POWER = {"attention_map": 2}   # the power of P̂(b) in the lift's divisor (module docstring); others 1
# the lift's divisor D[b] as a page column names it (module docstring; s_b: the mean frequency of b's successors)
LIFT_DIVISOR_TEXT = {"bigram": "÷ P̂(a) P̂(b)", "interchangeability": "÷ P̂(a) P̂(b)", "context": "÷ P̂(a) P̂(b)",
                     "value_map": "÷ P̂(a) P̂(b) s_b", "attention_map": "÷ P̂(a) P̂(b)²"}
# the axis (input or output token) of each statistic's rows and columns
AXES = {"bigram": ("input", "output"), "interchangeability": ("output", "output"), "context": ("output", "input"),
        "value_map": ("input", "input"), "attention_map": ("input", "input")}
VIEW_TEXT = {
    "raw": "raw matrix entries",
    "normalised": "entries of row a divided by the frequency P̂(x=a) of a (for B̄: P̂(y=b | x=a) − 1/V)",
    "both": "raw entry, then in parentheses the entry divided by the frequency P̂(x=a) of a "
            "(for B̄: P̂(y=b | x=a) − 1/V)",
    "lift": "the discounted lift lift⁻: entries divided by the frequencies of both tokens, P̂(a) P̂(b) (for Q̄ "
            "and W: P̂(a) P̂(b)², the key's frequency entering once more through the size of its value; for "
            "(B̄Φ̄)ᵀ and V: P̂(a) P̂(b) s_b, s_b the mean frequency of b's successors), times "
            f"1 − {LIFT_Z:g}/√N, N the entry's effective number of supporting pairs in the corpus; only partners "
            f"with a positive lift⁻, of tokens seen at least {MIN_COUNT} times, are shown (for B̄: the pair's "
            "lift⁻ = (c − 2√c) / (n P̂(a) P̂(b)), c its count, as in the strongest associations)",
}


def check_view(view: str, name: str = "report_view", views=VIEWS) -> str:
    if view not in views:
        raise UserError(f"--{name} must be one of {', '.join(views)} (got {view!r})")
    return view


def lift_key_power(field: str) -> int:
    """The power of the partner's frequency P̂(b) in the lift of statistic `field` (and of the weights
    that learn it): 2 for Q̄, 1 for the others (module docstring)."""
    return LIFT_KEY_POWER.get(field, 1)


def output_axis_fields(rows: bool) -> tuple:
    """The statistics whose rows (`rows`) or columns are indexed by output tokens: where MASK, never an
    output, has no row, or is no partner."""
    return tuple(field for field, axes in AXES.items() if axes[0 if rows else 1] == "output")


def token_frequency(stats) -> torch.Tensor:
    """P̂(x=a) for every token a (float64, CPU): the divisor of the normalised view."""
    return stats.input_frequency.detach().to("cpu", torch.float64)


def normalised_rows(matrix: torch.Tensor, frequency: torch.Tensor) -> torch.Tensor:
    """Row a of `matrix` (a statistic or a trained weight, rows indexed by token) divided by
    P̂(x=a); rows of tokens that never occur as inputs are 0."""
    matrix = matrix.detach().to("cpu", torch.float64)
    safe = torch.where(frequency > 0, frequency, torch.ones_like(frequency))
    return torch.where(frequency[:, None] > 0, matrix / safe[:, None], torch.zeros_like(matrix))


ROW_CHUNK = 1024   # rows of the V × V pair measures held at once


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", torch.float64)


class LiftSupport:
    """The corpus side of the lift view (module docstring), computed once per statistics and shared by
    every row and every map: each token's count on the input and on the output axis, and the count
    matrices of the effective supports N (made on first use, float64 on the CPU).  `lift_lower` is the
    one rule of what a lift row shows; the strongest-pairs table reads its B̄ rows."""

    def __init__(self, stats, min_count: int = MIN_COUNT, z: float = LIFT_Z):
        self.stats, self.min_count, self.z = stats, min_count, z
        self.n = float(stats.n_positions)
        self.V = stats.bigram.shape[1]
        # B̄'s centring divides by the model's vocabulary size, larger than B̄'s columns for a token set K
        self.centring = getattr(stats, "full_vocab_size", None) or self.V
        frequency = token_frequency(stats)
        output = getattr(stats, "output_frequency", None)
        if output is None:   # the column sums of the joint distribution P̂(x, y) = B̄ + P̂(x)/V
            output = sum((_cpu(stats.bigram[s:s + ROW_CHUNK]) + frequency[s:s + ROW_CHUNK, None] / self.centring).sum(0)
                         for s in range(0, stats.bigram.shape[0], ROW_CHUNK))
        self.counts = {"input": frequency * self.n, "output": (_cpu(output) * self.n).clamp_min(0)}
        # the mean number of keys a query attends to, (len(p̄) + 1)/2: (T + 1)/2 for causal attention (p̄ has T
        # entries), T over all positions (2T − 1): Φ̄'s co-occurrence sum, a unit per query, counted in pairs
        position_map = getattr(stats, "position_map", None)
        self.keys_per_query = (position_map.numel() + 1) / 2 if position_map is not None else 1.0
        self._memo = {}

    # -- the count matrices -----------------------------------------------------------------------
    def _matrix(self, name: str) -> torch.Tensor:
        if name not in self._memo:
            if name == "pairs":        # c = n P̂(x=a, y=b)
                value = self.joint() * self.n
            elif name == "pairs_squared":
                value = self._matrix("pairs") ** 2
            elif name == "context_positive":   # f₊ = (n Φ̄)₊ in (key, query) pairs
                value = (_cpu(self.stats.context) * self.n).clamp_min(0) * self.keys_per_query
            else:
                raise KeyError(name)
            self._memo[name] = value
        return self._memo[name]

    def joint(self, rows=None) -> torch.Tensor:
        """P̂(x=a, y=b) = B̄ + P̂(x=a)/V for the tokens a of `rows` (every token when None), clamped at 0."""
        frequency = self.counts["input"] / self.n
        if rows is None:
            return (_cpu(self.stats.bigram) + frequency[:, None] / self.centring).clamp_min(0)
        rows = torch.as_tensor(rows, dtype=torch.long)
        return (_cpu(self.stats.bigram[rows.to(self.stats.bigram.device)])
                + frequency[rows, None] / self.centring).clamp_min(0)

    def support(self, field: str, rows) -> torch.Tensor:
        """N [len(rows), V]: the effective number of corpus pairs entry [a, b] of statistic `field` rests on,
        for the tokens a of `rows` (module docstring); 0 where it rests on none.  The last rows asked for
        are kept per statistic: the explorer asks for the same rows for the statistic and each weight."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        key, kept = rows.numpy().tobytes(), self._memo.setdefault("supports", {})
        if field not in kept or kept[field][0] != key:
            kept[field] = (key, self._support(field, rows))
        return kept[field][1]

    def _support(self, field: str, rows: torch.Tensor) -> torch.Tensor:
        if field == "bigram":
            return self._matrix("pairs")[rows]
        if field == "context":
            return self._matrix("context_positive")[rows]
        if field == "attention_map":
            pairs = self._matrix("context_positive")[rows]
            never_output = self.counts["output"][rows] < 1e-6        # MASK: independence of query and key
            independent = (self.counts["input"][rows, None] * (self.counts["input"] / self.n)[None, :]
                           * self.keys_per_query)
            pairs = torch.where(never_output[:, None], independent, pairs)
            key = self.counts["input"][None, :].expand_as(pairs)
            inverse = torch.where((pairs > 0) & (key > 0), 1 / pairs.clamp_min(1e-300) + 1 / key.clamp_min(1e-300),
                                  torch.full_like(pairs, float("inf")))
            return 1 / inverse
        c, c2 = self._matrix("pairs"), self._matrix("pairs_squared")
        if field == "interchangeability":    # S = Σ_i c_ij c_ij'
            entry = c[:, rows].T @ c
            variance = c[:, rows].T @ c2 + c2[:, rows].T @ c
        elif field == "value_map":           # S = Σ_j f₊_jk c_ij
            f = self._matrix("context_positive")
            entry = f[:, rows].T @ c.T
            variance = (f[:, rows] ** 2).T @ c.T + f[:, rows].T @ c2.T
        else:
            raise KeyError(f"no lift support for statistic {field!r}")
        return torch.where(variance > 0, entry ** 2 / variance.clamp_min(1e-300), torch.zeros_like(entry))

    # -- the rule -------------------------------------------------------------------------------
    def eligible(self, field: str, rows) -> torch.Tensor:
        """[len(rows), V] bool: both tokens seen at least min_count times on their axes (MASK, never an
        output, is never eligible on an output axis)."""
        row_axis, column_axis = AXES[field]
        rows = torch.as_tensor(rows, dtype=torch.long)
        enough = lambda counts: counts >= self.min_count - 1e-6
        return enough(self.counts[row_axis][rows])[:, None] & enough(self.counts[column_axis])[None, :]

    def lift_lower(self, matrix_rows: torch.Tensor, field: str, rows) -> torch.Tensor:
        """lift⁻ of rows `rows` of a map lining up with statistic `field` (`matrix_rows`, those rows: the
        statistic, or a trained weight that learns it): X / (P̂(a) D[b]) · (1 − z/√N), −inf where not shown
        (X ≤ 0, N ≤ z², or a token seen fewer than min_count times): the one rule of every lift row."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        X = _cpu(matrix_rows)
        row_frequency = self.counts[AXES[field][0]][rows] / self.n
        divisor = row_frequency[:, None] * self.column_divisor(field)[None, :]
        support = self.support(field, rows)
        shown = self.eligible(field, rows) & (X > 0) & (support > self.z ** 2) & (divisor > 0)
        discount = 1 - self.z / support.clamp_min(1e-300).sqrt()
        lifted = X / torch.where(divisor > 0, divisor, torch.ones_like(divisor)) * discount
        return torch.where(shown, lifted, torch.full_like(lifted, -float("inf")))

    def column_divisor(self, field: str) -> torch.Tensor:
        """[V] what the lift divides column b of statistic `field` by (module docstring): P̂(b)^p on b's
        axis; for (B̄Φ̄)ᵀ, P̂(x=i) s_i = Σ_j P̂(x=i, y=j) P̂(y=j), the frequency of i weighted by that of
        its successors (the value map's size under independence of context and next token)."""
        if field == "value_map":
            if "successor" not in self._memo:
                self._memo["successor"] = (self._matrix("pairs") / self.n) @ (self.counts["output"] / self.n)
            return self._memo["successor"]
        return (self.counts[AXES[field][1]] / self.n) ** lift_key_power(field)

    def statistic_lift_lower(self, field: str, rows) -> torch.Tensor:
        """lift⁻ of rows `rows` of the statistic `field` itself (module docstring): of the pair P̂(x=a, y=b)
        for B̄ and of the co-occurrence part Σ_i P̂(x=i, y=j) P̂(x=i, y=j') for Σ_B."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        if field == "bigram":
            matrix = self.joint(rows)
        elif field == "interchangeability":
            joint = self._matrix("pairs") / self.n
            matrix = joint[:, rows].T @ joint
        else:
            matrix = getattr(self.stats, field)[rows.to(getattr(self.stats, field).device)]
        return self.lift_lower(matrix, field, rows)

    def chunks(self, rows=None):
        """`rows` (every token when None) in chunks of ROW_CHUNK."""
        rows = torch.arange(self.V) if rows is None else torch.as_tensor(rows, dtype=torch.long)
        return [rows[s:s + ROW_CHUNK] for s in range(0, len(rows), ROW_CHUNK)]


def statistic_view(stats, field: str, view: str = "normalised", min_count: int = MIN_COUNT,
                   support: LiftSupport = None) -> torch.Tensor:
    """Statistic `field` of `stats` (a CorpusStatistics field of TOKEN_STATISTICS) in the `raw`, the
    `normalised` or the `lift` view (module docstring), float64 on the CPU."""
    if view == "lift":
        support = support or LiftSupport(stats, min_count)
        return torch.cat([support.statistic_lift_lower(field, chunk) for chunk in support.chunks()])
    return weight_view(getattr(stats, field), stats, field, view, min_count)


def weight_view(matrix: torch.Tensor, stats, field: str, view: str, min_count: int = MIN_COUNT,
                support: LiftSupport = None) -> torch.Tensor:
    """A token × token matrix lining up with statistic `field` (a trained weight that learns it, or any
    matrix) in `view`; `both` is the raw matrix (the normalised values are read beside it)."""
    if view == "normalised":
        return normalised_rows(matrix, token_frequency(stats))
    if view == "lift":
        support = support or LiftSupport(stats, min_count)
        return torch.cat([support.lift_lower(matrix.detach()[chunk.to(matrix.device)], field, chunk)
                          for chunk in support.chunks()])
    return _cpu(matrix)


def best_pairs(stats, min_count: int = MIN_COUNT, support: LiftSupport = None):
    """(lift⁻ of the best pair of every token a, its partner b) [V]: the top of a's B̄ row in the lift view;
    −inf for tokens whose row shows no partner."""
    support = support or LiftSupport(stats, min_count)
    V = stats.bigram.shape[0]
    best, partner = torch.full((V,), -float("inf"), dtype=torch.float64), torch.zeros(V, dtype=torch.long)
    for rows in support.chunks(torch.arange(V)):
        best[rows], partner[rows] = support.statistic_lift_lower("bigram", rows).max(dim=1)
    return best, partner


def strongest_association_tokens(stats, n_tokens: int, min_count: int = MIN_COUNT,
                                 support: LiftSupport = None) -> list:
    """The `n_tokens` tokens whose best pair has the largest lift⁻ (module docstring), among those whose
    B̄ row shows a partner, strongest first (ties, to 1e-9 relative: the more frequent first)."""
    best, _ = best_pairs(stats, min_count, support)
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


def strongest_pair_table(stats, n_pairs: int, min_count: int = MIN_COUNT, support: LiftSupport = None) -> list:
    """The best pair (largest lift⁻) of each of the `n_pairs` strongest-association tokens, strongest
    first: {a, b, conditional P̂(b | a), lift, lift_lower (lift⁻), pairs (count of a → b), count (of a)} —
    where a reader of the report or the explorer starts.  lift_lower is the top value of a's B̄ row in
    the lift view."""
    support = support or LiftSupport(stats, min_count)
    tokens = strongest_association_tokens(stats, n_pairs, min_count, support)
    if not tokens:
        return []
    best, partner = best_pairs(stats, min_count, support)
    pairs = support.joint(tokens) * support.n
    table = []
    for i, a in enumerate(tokens):
        b = int(partner[a])
        c, count_a, count_b = float(pairs[i, b]), float(support.counts["input"][a]), float(support.counts["output"][b])
        table.append({"a": a, "b": b, "conditional": c / count_a, "lift": c * support.n / (count_a * count_b),
                      "lift_lower": float(best[a]), "pairs": int(round(c)), "count": int(round(count_a))})
    return table


def strongest_pairs(stats, n_pairs: int, min_count: int = MIN_COUNT) -> list:
    """(a, b, P̂(y=b | x=a) − 1/V, count of a) of the pairs of strongest_pair_table, in its order (V: the
    model's vocabulary, `full_vocab_size` where B̄ holds a token set's columns only)."""
    V = getattr(stats, "full_vocab_size", None) or stats.bigram.shape[1]
    return [(row["a"], row["b"], row["conditional"] - 1 / V, row["count"])
            for row in strongest_pair_table(stats, n_pairs, min_count)]


def frequent_partner_share(matrix: torch.Tensor, stats, field: str, view: str, n_frequent: int = 20,
                           min_count: int = MIN_COUNT, support: LiftSupport = None) -> float:
    """The share of the rows whose top partner (among those the lift view may show: both tokens seen
    min_count times on their axes; Σ_B's diagonal left out) is one of the `n_frequent` most frequent tokens,
    over the rows that show a partner: how much frequency alone leads a view of `matrix` (a statistic
    `field` or a weight that learns it)."""
    support = support or LiftSupport(stats, min_count)
    frequent = token_frequency(stats).argsort(descending=True, stable=True)[:n_frequent]
    if view == "lift":
        shown = weight_view(matrix, stats, field, view, min_count, support)
    else:
        shown = weight_view(matrix, stats, field, view, min_count).masked_fill(
            ~support.eligible(field, torch.arange(support.V)), -float("inf"))
    if field == "interchangeability":
        shown.fill_diagonal_(-float("inf"))
    has_partner = torch.isfinite(shown).any(dim=1)
    if not has_partner.any():
        return 0.0
    return float(torch.isin(shown[has_partner].argmax(dim=1), frequent).double().mean())
