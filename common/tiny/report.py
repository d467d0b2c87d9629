"""Association report: for the most frequent tokens, the tokens with the strongest associations and any
asked for by name, their strongest partners in each corpus statistic and in each trained weight, as a
readable markdown file.

Row a of each matrix, read as:
    B̄        a → next token            (bigram map; W_O learns it first)
    Σ_B      a ~ interchangeable output (tokens that follow the same inputs as a)
    Φ̄        context tokens that predict a as the next token
    (B̄Φ̄)ᵀ    a in the context writes (the value map; V learns it)
    Q̄        query a attends to key    (the attention map; W learns it)
The trained W_O, V^l and W^l rows are listed under the statistic each one converges to.

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

`lift` (report only) divides entry [a, b] by the frequencies of both tokens, P̂(a) P̂(b) (input
frequencies on both axes: a token's frequency as an input and as an output differ only by the sequence
ends), and leaves out partners seen fewer than `min_count` times.  For the bigram map

    B̄[a,b] / (P̂(a) P̂(b)) = P̂(y=b | x=a) / P̂(b) − 1/(V P̂(b)),

the lift of the pair minus a small correction: a PMI-like reading in which `,` and `the` no longer
lead every row just by being frequent, so the partners' order changes.

Strongest associations: the tokens a with the largest row maximum of the normalised B̄,
max_b P̂(y=b | x=a) − 1/V, among the tokens seen at least `min_count` times as inputs (a token seen once
is trivially followed by one token); ties go to the more frequent token.
"""
from pathlib import Path

import torch

from common.io import UserError, atomic_path
from common.page import top_partner_table
from common.tiny.training import RunCallback
from common.theory.alignment import named_weights, theory_entry
from common.theory.weight_kinds import KIND, TOKEN_STATISTICS, parse_log_key

PAGE_VIEWS = ("normalised", "raw", "both")   # the views the explorer page offers (one partner order)
VIEWS = PAGE_VIEWS + ("lift",)                # the report's views
MIN_COUNT = 10   # a strongest-association token (or a lift partner) must occur at least this often as an input
VIEW_TEXT = {
    "raw": "raw matrix entries",
    "normalised": "entries of row a divided by the frequency P̂(x=a) of a (for B̄: P̂(y=b | x=a) − 1/V)",
    "both": "raw entry, then in parentheses the entry divided by the frequency P̂(x=a) of a "
            "(for B̄: P̂(y=b | x=a) − 1/V)",
    "lift": "entries divided by the frequencies of both tokens, P̂(a) P̂(b), partners seen fewer than "
            f"{MIN_COUNT} times left out (for B̄: P̂(y=b | x=a) / P̂(b) − 1/(V P̂(b)))",
}


def check_view(view: str, name: str = "report_view", views=VIEWS) -> str:
    if view not in views:
        raise UserError(f"--{name} must be one of {', '.join(views)} (got {view!r})")
    return view


def lifted_rows(matrix: torch.Tensor, frequency: torch.Tensor, counts: torch.Tensor,
                min_count: int = MIN_COUNT) -> torch.Tensor:
    """Rows of `matrix` whose tokens have input frequencies `frequency` (a subset of rows), divided by
    P̂(a) P̂(b); columns of tokens seen fewer than `min_count` times (of `counts`, every token) are −inf,
    rows of tokens never seen are 0 (module docstring, `lift`)."""
    rows = normalised_rows(matrix, frequency)
    column = counts / counts.sum()
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


def statistic_view(stats, field: str, view: str = "normalised") -> torch.Tensor:
    """Statistic `field` of `stats` (a CorpusStatistics field of TOKEN_STATISTICS) in the `raw` or the
    `normalised` view (module docstring), float64 on the CPU."""
    matrix = getattr(stats, field).detach().to("cpu", torch.float64)
    return normalised_rows(matrix, token_frequency(stats)) if view == "normalised" else matrix


def _cell(word: str) -> str:
    return f"`{word}`".replace("|", "\\|") if word.strip() else repr(word)


def top_partners(row: torch.Tensor, vocabulary: list, k: int, skip: int = -1, scale: float = None) -> str:
    """The k strongest partners of one raw row, `word value`; with `scale` (1/P̂(x=a)) also the
    normalised value in parentheses."""
    row = row.detach().to(torch.float64).cpu().clone()
    if 0 <= skip < len(row):
        row[skip] = -float("inf")
    values, ids = row.topk(min(k, len(row) - (skip >= 0)))
    return ", ".join(f"{_cell(vocabulary[i])} {v:.3g}" + ("" if scale is None else f" ({v * scale:.3g})")
                     for v, i in zip(values.tolist(), ids.tolist()))


def most_frequent_tokens(tokens: torch.Tensor, vocab_size: int, n_tokens: int) -> list:
    counts = torch.bincount(tokens.reshape(-1).long(), minlength=vocab_size)
    return counts.argsort(descending=True, stable=True)[:n_tokens].tolist()


def association_strength(stats) -> torch.Tensor:
    """max_b B̄[a,b] / P̂(x=a) = max_b P̂(y=b | x=a) − 1/V for every token a."""
    return statistic_view(stats, "bigram", "normalised").max(dim=1).values


def strongest_association_tokens(stats, n_tokens: int, min_count: int = MIN_COUNT) -> list:
    """The `n_tokens` tokens with the largest association strength among those seen at least
    `min_count` times as inputs, strongest first (ties, to 1e-9: the more frequent first)."""
    frequency = token_frequency(stats)
    counts = frequency * stats.n_positions
    eligible = torch.nonzero(counts >= min_count - 1e-6).flatten()
    # rounded so that equal conditionals (e.g. every P̂(b|a) = 1) tie despite float noise, and ties go to frequency
    strength = association_strength(stats)[eligible].round(decimals=9)
    # sort by frequency first, then (stably) by strength: equal strengths keep the frequency order
    by_frequency = frequency[eligible].argsort(descending=True, stable=True)
    order = by_frequency[strength[by_frequency].argsort(descending=True, stable=True)]
    return eligible[order][:n_tokens].tolist()


def strongest_pairs(stats, n_pairs: int, min_count: int = MIN_COUNT) -> list:
    """(a, b, P̂(y=b | x=a) − 1/V, count of a) of the strongest association pair of each of the
    `n_pairs` strongest-association tokens: where a reader of the report or the explorer starts."""
    tokens = strongest_association_tokens(stats, n_pairs, min_count)
    if not tokens:
        return []
    values, ids = top_partner_table(statistic_view(stats, "bigram", "normalised"), tokens, 1)
    counts = token_frequency(stats) * stats.n_positions
    return [(a, int(b), float(v), int(round(float(counts[a]))))
            for a, b, v in zip(tokens, ids[:, 0].tolist(), values[:, 0].tolist())]


def report_token_ids(tokens: torch.Tensor, vocabulary: list, n_tokens: int, words: str, stats=None) -> list:
    """The `n_tokens` most frequent tokens of the training sequences, then (with `stats`) the `n_tokens`
    tokens with the strongest associations, then the named `words` (unknown words are listed as missing
    rather than failing the run); each token once."""
    chosen = most_frequent_tokens(tokens, len(vocabulary), n_tokens)
    if stats is not None:
        chosen += [a for a in strongest_association_tokens(stats, n_tokens) if a not in chosen]
    index = {token: i for i, token in enumerate(vocabulary)}
    for word in (w.strip() for w in words.split(",")):
        if word in index and index[word] not in chosen:
            chosen.append(index[word])
    return chosen


def trained_weights_by_statistic(model) -> dict:
    """statistic field → [(label, trained token × token weight lining up with it)] (P, a vector, is left out)."""
    trained = {}
    for key, kind, weight in named_weights(model):
        if weight.dim() == 2:
            layer = parse_log_key(key).layer
            trained.setdefault(KIND[kind].statistic, []).append(
                (kind if layer is None else f"{kind} (layer {layer})", weight))
    return trained


def association_report(model, stats, vocabulary: list, tokens: torch.Tensor, top: int = 5,
                       n_tokens: int = 20, words: str = "", lr: float = None, step: int = None,
                       view: str = "normalised") -> str:
    check_view(view)
    ids = report_token_ids(tokens, vocabulary, n_tokens, words, stats)
    known = set(vocabulary)
    missing = [w.strip() for w in words.split(",") if w.strip() and w.strip() not in known]
    lines = ["# Association report", "",
             f"Top {top} partners (value after the token) of {len(ids)} tokens — the {n_tokens} most frequent, "
             f"the {n_tokens} with the strongest associations (largest max_b P̂(y=b | x=a) among tokens seen "
             f"at least {MIN_COUNT} times), then those asked for — in the corpus statistics "
             f"(docs/theory.md §2) and in the trained weights of a {model.n_layers}-layer model after step {step}. "
             "Rows are read as: B̄ and W_O: a → next token; Σ_B: outputs interchangeable with a; Φ̄: "
             "context tokens predicting a; (B̄Φ̄)ᵀ and V: what a writes when attended to; Q̄ and W: the "
             "keys query a attends to.", "",
             f"View: **{view}** — values are {VIEW_TEXT[view]}. "
             + ("Partners are ranked by that lift, so frequent tokens no longer lead every row."
                if view == "lift" else "The order of the partners is the same in the raw, normalised and "
                "both views (a row is divided by one number); `--report_view=lift` ranks them by lift."), ""]
    if missing:
        lines += [f"Not in the vocabulary: {', '.join(missing)}.", ""]
    if lr is not None and step:
        entry = theory_entry(model, stats, lr, step)
        lines += ["| weight | cosine with its matrix | relative error to §3 |", "| --- | --- | --- |"]
        for key, _, _ in named_weights(model):
            err = entry[f"{key}_rel_err"]
            lines.append(f"| `{key}` | {entry[key]:.4f} | {'—' if err is None else f'{err:.3g}'} |")
        lines.append("")
    trained = trained_weights_by_statistic(model)
    frequency = token_frequency(stats)
    counts = frequency * stats.n_positions
    for a in ids:
        # both: the raw row, each value followed by its normalised one (same order in both views)
        if view == "lift":
            shown = lambda row: lifted_rows(row[None], frequency[a:a + 1], counts)[0]
        elif view == "normalised":
            shown = lambda row: normalised_rows(row[None], frequency[a:a + 1])[0]
        else:
            shown = lambda row: row
        scale = float(normalised_rows(torch.ones(1, 1), frequency[a:a + 1])) if view == "both" else None
        lines += [f"## {_cell(vocabulary[a])}", "", "| map | reads | top partners |", "| --- | --- | --- |"]
        for statistic in TOKEN_STATISTICS:
            field, symbol = statistic.field, statistic.symbol
            skip = a if field == "interchangeability" else -1
            row = getattr(stats, field)[a].detach().to("cpu", torch.float64)
            lines.append(f"| {symbol} | {statistic.reads} | "
                         f"{top_partners(shown(row), vocabulary, top, skip, scale)} |")
            for name, weight in trained.get(field, []):
                row = weight[a].detach().to("cpu", torch.float64)
                lines.append(f"| {name} | trained, as {symbol} | {top_partners(shown(row), vocabulary, top, -1, scale)} |")
        lines.append("")
    return "\n".join(lines)


def write_report(path, model, stats, vocabulary, tokens, cfg, step=None) -> Path:
    text = association_report(model, stats, vocabulary, tokens, cfg.report_top, cfg.report_tokens,
                              cfg.report_words, cfg.lr, step, getattr(cfg, "report_view", "normalised"))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


REPORT_FILE = "associations.md"


class AssociationReport(RunCallback):
    """The run's association report (`associations.md`), written when the run reaches its last step."""

    def on_end(self, trainer):
        if not trainer.proc.main:
            return None
        path = write_report(trainer.out_dir / REPORT_FILE, trainer.model, trainer.stats, trainer.vocabulary,
                            trainer.tokens, trainer.cfg, trainer.step)
        return {"association report": str(path)}
