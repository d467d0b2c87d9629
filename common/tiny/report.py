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

The views (raw, normalised, both, lift) and the strongest associations are defined in
common/theory/association_views.py.
"""
from pathlib import Path

import torch

from common.io import atomic_path
from common.tiny.training import RunCallback
from common.theory.alignment import named_weights, theory_entry
from common.theory.association_views import (MIN_COUNT, VIEW_TEXT, check_view, lift_key_power, lifted_rows, normalised_rows,
                                              strongest_association_tokens, token_frequency)
from common.theory.weight_kinds import KIND, TOKEN_STATISTICS, parse_log_key

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
                     for v, i in zip(values.tolist(), ids.tolist()) if v != -float("inf")) or "—"


def most_frequent_tokens(tokens: torch.Tensor, vocab_size: int, n_tokens: int) -> list:
    counts = torch.bincount(tokens.reshape(-1).long(), minlength=vocab_size)
    return counts.argsort(descending=True, stable=True)[:n_tokens].tolist()


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


def unknown_token_line(vocabulary: list, tokens: torch.Tensor) -> str:
    """The report's sentence on the unknown token: its share of the training tokens, or that the
    vocabulary has none (the tokenizer then dropped every story with a token outside it)."""
    from common.corpus.tokenize import UNKNOWN_TOKEN
    if UNKNOWN_TOKEN not in vocabulary:
        return (f"Unknown-token rate: 0 (no {UNKNOWN_TOKEN} in the vocabulary: stories with tokens outside it were "
                "left out by the tokenizer).")
    count, total = int((tokens == vocabulary.index(UNKNOWN_TOKEN)).sum()), tokens.numel()
    return (f"Unknown-token rate: {count / max(total, 1):.2%} of the training tokens ({count:,} of {total:,}) are "
            f"{UNKNOWN_TOKEN}, the tokens outside the vocabulary.")


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
             f"the {n_tokens} with the strongest associations (the largest lift⁻ of a pair a → b, the lift "
             f"discounted by two Poisson standard deviations of the pair's count, among tokens seen at least "
             f"{MIN_COUNT} times), then those asked for — in the corpus statistics "
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
    lines += [unknown_token_line(vocabulary, tokens), ""]
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
        def shown(row, field):
            if view == "lift":
                return lifted_rows(row[None], frequency[a:a + 1], counts, MIN_COUNT, lift_key_power(field))[0]
            return normalised_rows(row[None], frequency[a:a + 1])[0] if view == "normalised" else row
        scale = float(normalised_rows(torch.ones(1, 1), frequency[a:a + 1])) if view == "both" else None
        lines += [f"## {_cell(vocabulary[a])}", "", "| map | reads | top partners |", "| --- | --- | --- |"]
        for statistic in TOKEN_STATISTICS:
            field, symbol = statistic.field, statistic.symbol
            skip = a if field == "interchangeability" else -1
            row = getattr(stats, field)[a].detach().to("cpu", torch.float64)
            lines.append(f"| {symbol} | {statistic.reads} | "
                         f"{top_partners(shown(row, field), vocabulary, top, skip, scale)} |")
            for name, weight in trained.get(field, []):
                row = weight[a].detach().to("cpu", torch.float64)
                lines.append(f"| {name} | trained, as {symbol} | "
                             f"{top_partners(shown(row, field), vocabulary, top, -1, scale)} |")
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
