"""Association report: for the most frequent tokens (and any asked for by name), their strongest
partners in each corpus statistic and in each trained weight, as a readable markdown file.

Row a of each matrix, read as:
    B̄        a → next token            (bigram map; W_O learns it first)
    Σ_B      a ~ interchangeable output (tokens that follow the same inputs as a)
    Φ̄        context tokens that predict a as the next token
    (B̄Φ̄)ᵀ    a in the context writes (the value map; V learns it)
    Q̄        query a attends to key    (the attention map; W learns it)
The trained W_O, V^l and W^l rows are listed under the statistic each one converges to.
"""
from pathlib import Path

import torch

from common.io import atomic_path
from common.alignment import named_weights, theory_entry
from common.weight_kinds import KIND, TOKEN_STATISTICS, parse_log_key


def _cell(word: str) -> str:
    return f"`{word}`".replace("|", "\\|") if word.strip() else repr(word)


def top_partners(row: torch.Tensor, vocabulary: list, k: int, skip: int = -1) -> str:
    row = row.detach().to(torch.float64).cpu().clone()
    if 0 <= skip < len(row):
        row[skip] = -float("inf")
    values, ids = row.topk(min(k, len(row) - (skip >= 0)))
    return ", ".join(f"{_cell(vocabulary[i])} {v:.3g}" for v, i in zip(values.tolist(), ids.tolist()))


def report_token_ids(tokens: torch.Tensor, vocabulary: list, n_tokens: int, words: str) -> list:
    """The `n_tokens` most frequent tokens of the training sequences, then the named `words`
    (unknown words are listed as missing rather than failing the run)."""
    counts = torch.bincount(tokens.reshape(-1).long(), minlength=len(vocabulary))
    chosen = counts.argsort(descending=True, stable=True)[:n_tokens].tolist()
    index = {token: i for i, token in enumerate(vocabulary)}
    for word in (w.strip() for w in words.split(",")):
        if word in index and index[word] not in chosen:
            chosen.append(index[word])
    return chosen


def association_report(model, stats, vocabulary: list, tokens: torch.Tensor, top: int = 5,
                       n_tokens: int = 20, words: str = "", lr: float = None, step: int = None) -> str:
    ids = report_token_ids(tokens, vocabulary, n_tokens, words)
    known = set(vocabulary)
    missing = [w.strip() for w in words.split(",") if w.strip() and w.strip() not in known]
    lines = ["# Association report", "",
             f"Top {top} partners (value after the token) of {len(ids)} tokens in the corpus statistics "
             f"(docs/theory.md §2) and in the trained weights of a {model.n_layers}-layer model after step {step}. "
             "Rows are read as: B̄ and W_O: a → next token; Σ_B: outputs interchangeable with a; Φ̄: "
             "context tokens predicting a; (B̄Φ̄)ᵀ and V: what a writes when attended to; Q̄ and W: the "
             "keys query a attends to.", ""]
    if missing:
        lines += [f"Not in the vocabulary: {', '.join(missing)}.", ""]
    if lr is not None and step:
        entry = theory_entry(model, stats, lr, step)
        lines += ["| weight | cosine with its matrix | relative error to §3 |", "| --- | --- | --- |"]
        for key, _, _ in named_weights(model):
            err = entry[f"{key}_rel_err"]
            lines.append(f"| `{key}` | {entry[key]:.4f} | {'—' if err is None else f'{err:.3g}'} |")
        lines.append("")
    trained = {}   # statistic field → [(label, trained weight lining up with it)]
    for key, kind, weight in named_weights(model):
        if weight.dim() == 2:
            layer = parse_log_key(key).layer
            trained.setdefault(KIND[kind].statistic, []).append(
                (kind if layer is None else f"{kind} (layer {layer})", weight))
    for a in ids:
        lines += [f"## {_cell(vocabulary[a])}", "", "| map | reads | top partners |", "| --- | --- | --- |"]
        for statistic in TOKEN_STATISTICS:
            field, symbol = statistic.field, statistic.symbol
            skip = a if field == "interchangeability" else -1
            lines.append(f"| {symbol} | {statistic.reads} | "
                         f"{top_partners(getattr(stats, field)[a], vocabulary, top, skip)} |")
            for name, weight in trained.get(field, []):
                lines.append(f"| {name} | trained, as {symbol} | {top_partners(weight[a], vocabulary, top)} |")
        lines.append("")
    return "\n".join(lines)


def write_report(path, model, stats, vocabulary, tokens, cfg, step=None) -> Path:
    text = association_report(model, stats, vocabulary, tokens, cfg.report_top, cfg.report_tokens,
                              cfg.report_words, cfg.lr, step)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
