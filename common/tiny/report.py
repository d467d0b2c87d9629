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
common/theory/association_views.py; the lift rows and the strongest-pairs table follow its one rule
(`LiftSupport.lift_lower`), so the table's pair a → b heads a's B̄ row with the same lift⁻.

A masked run's vocabulary ends with its MASK token (docs/theory.md §16): its section is headed
"`<mask>` (MASK)", holds the rows where MASK is an input (B̄ and W_O: what a MASK at a position predicts
there; (B̄Φ̄)ᵀ and V; Q̄ and W: what a MASK query attends to) and says, for Σ_B and Φ̄, that MASK is never
an output; MASK is never listed as a partner on an output axis (B̄'s, W_O's and Σ_B's columns).
"""
from pathlib import Path

import torch

from common.io import atomic_path
from common.tiny.training import RunCallback
from common.theory.alignment import named_weights, theory_entry
from common.theory.association_views import (MIN_COUNT, VIEW_TEXT, LiftSupport, check_view, normalised_rows,
                                              output_axis_fields, strongest_association_tokens, token_frequency)
from common.theory.weight_kinds import KIND, TOKEN_STATISTICS, parse_log_key

def _cell(word: str) -> str:
    return f"`{word}`".replace("|", "\\|") if word.strip() else repr(word)


MASK_LABEL = "(MASK)"   # after the MASK token's name in a section header


def token_label(vocabulary: list, a: int, mask_id: int = None) -> str:
    """A token as a report header names it: MASK's name followed by (MASK)."""
    return _cell(vocabulary[a]) + (f" {MASK_LABEL}" if a == mask_id else "")


def top_partners(row: torch.Tensor, vocabulary: list, k: int, skip=(), scale: float = None) -> str:
    """The k strongest partners of one row (−inf: not shown), `word value`, leaving out the ids `skip`;
    with `scale` (1/P̂(x=a)) also the normalised value in parentheses."""
    row = row.detach().to(torch.float64).cpu().clone()
    skip = [i for i in ([skip] if isinstance(skip, int) else skip) if 0 <= i < len(row)]
    row[skip] = -float("inf")
    values, ids = row.topk(max(0, min(k, len(row) - len(set(skip)))))
    return ", ".join(f"{_cell(vocabulary[i])} {v:.3g}" + ("" if scale is None else f" ({v * scale:.3g})")
                     for v, i in zip(values.tolist(), ids.tolist()) if v != -float("inf")) or "—"


def most_frequent_tokens(tokens: torch.Tensor, vocab_size: int, n_tokens: int) -> list:
    counts = torch.bincount(tokens.reshape(-1).long(), minlength=vocab_size)
    return counts.argsort(descending=True, stable=True)[:n_tokens].tolist()


def report_token_ids(tokens: torch.Tensor, vocabulary: list, n_tokens: int, words: str, stats=None,
                     mask_id: int = None, support: LiftSupport = None) -> list:
    """The `n_tokens` most frequent tokens of the training sequences, then (with `stats`) the `n_tokens`
    tokens with the strongest associations, then the named `words` (unknown words are listed as missing
    rather than failing the run), then a masked run's MASK token; each token once."""
    chosen = most_frequent_tokens(tokens, len(vocabulary), n_tokens)
    if stats is not None:
        chosen += [a for a in strongest_association_tokens(stats, n_tokens, support=support) if a not in chosen]
    index = {token: i for i, token in enumerate(vocabulary)}
    for word in (w.strip() for w in words.split(",")):
        if word in index and index[word] not in chosen:
            chosen.append(index[word])
    if mask_id is not None and mask_id not in chosen:
        chosen.append(mask_id)
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
                       view: str = "normalised", mask_id: int = None, uniform_attention_steps: int = 0) -> str:
    """The report's markdown; `mask_id`: a masked run's MASK token (the last id), None for a causal run;
    `uniform_attention_steps`: the run's first stage, during which W and P did not train (their predictions
    count only the steps they trained, common/theory/alignment.py)."""
    check_view(view)
    support = LiftSupport(stats)
    ids = report_token_ids(tokens, vocabulary, n_tokens, words, stats, mask_id, support)
    known = set(vocabulary)
    missing = [w.strip() for w in words.split(",") if w.strip() and w.strip() not in known]
    lines = ["# Association report", "",
             f"Top {top} partners (value after the token) of {len(ids)} tokens — the {n_tokens} most frequent, "
             f"the {n_tokens} with the strongest associations (the largest lift⁻ of a pair a → b, the lift "
             f"discounted by two Poisson standard deviations of the pair's count, among tokens seen at least "
             f"{MIN_COUNT} times), then those asked for"
             + (f", then the MASK token {_cell(vocabulary[mask_id])}" if mask_id is not None else "")
             + " — in the corpus statistics "
             f"(docs/theory.md §2) and in the trained weights of a {model.n_layers}-layer model after step {step}. "
             "Rows are read as: B̄ and W_O: a → next token; Σ_B: outputs interchangeable with a; Φ̄: "
             "context tokens predicting a; (B̄Φ̄)ᵀ and V: what a writes when attended to; Q̄ and W: the "
             "keys query a attends to.", "",
             f"View: **{view}** — values are {VIEW_TEXT[view]}. "
             + ("Partners are ranked by that lift⁻, so neither frequent tokens nor rare ones lead every row; "
                "the strongest pair of a token heads its B̄ row."
                if view == "lift" else "The order of the partners is the same in the raw, normalised and "
                "both views (a row is divided by one number); `--report_view=lift` ranks them by lift."), ""]
    if mask_id is not None:
        lines += [f"Masked run: the model reads the words with some replaced by {_cell(vocabulary[mask_id])} (MASK), "
                  "and predicts the word at each masked position; B̄ and W_O read a → the word at a's position "
                  "(a: MASK, a random word or the word itself). MASK is never an output: it has no Σ_B or Φ̄ row "
                  "and is no partner of B̄, W_O or Σ_B.", ""]
    if missing:
        lines += [f"Not in the vocabulary: {', '.join(missing)}.", ""]
    lines += [unknown_token_line(vocabulary, tokens), ""]
    if lr is not None and step:
        entry = theory_entry(model, stats, lr, step, uniform_attention_steps)
        lines += ["| weight | cosine with its matrix | relative error to §3 |", "| --- | --- | --- |"]
        for key, _, _ in named_weights(model):
            err = entry[f"{key}_rel_err"]
            lines.append(f"| `{key}` | {entry[key]:.4f} | {'—' if err is None else f'{err:.3g}'} |")
        lines.append("")
    trained = trained_weights_by_statistic(model)
    frequency = token_frequency(stats)
    no_row, no_partner = output_axis_fields(rows=True), output_axis_fields(rows=False)
    for a in ids:
        # both: the raw row, each value followed by its normalised one (same order in both views)
        def shown(row, field, statistic=False):
            if view == "lift":   # the one rule of association_views: what the explorer and the table show
                return (support.statistic_lift_lower(field, [a]) if statistic
                        else support.lift_lower(row[None], field, [a]))[0]
            return normalised_rows(row[None], frequency[a:a + 1])[0] if view == "normalised" else row
        scale = float(normalised_rows(torch.ones(1, 1), frequency[a:a + 1])) if view == "both" else None
        lines += [f"## {token_label(vocabulary, a, mask_id)}", "", "| map | reads | top partners |",
                  "| --- | --- | --- |"]
        for statistic in TOKEN_STATISTICS:
            field, symbol = statistic.field, statistic.symbol
            if a == mask_id and field in no_row:
                lines.append(f"| {symbol} | {statistic.reads} | — (MASK is never an output: no row) |")
                continue
            not_partner = [mask_id] if mask_id is not None and field in no_partner else []
            row = getattr(stats, field)[a].detach().to("cpu", torch.float64)
            skip = not_partner + ([a] if field == "interchangeability" else [])
            lines.append(f"| {symbol} | {statistic.reads} | "
                         f"{top_partners(shown(row, field, True), vocabulary, top, skip, scale)} |")
            for name, weight in trained.get(field, []):
                row = weight[a].detach().to("cpu", torch.float64)
                lines.append(f"| {name} | trained, as {symbol} | "
                             f"{top_partners(shown(row, field), vocabulary, top, not_partner, scale)} |")
        lines.append("")
    return "\n".join(lines)


def mask_id_of(cfg, vocabulary: list):
    """The MASK token's id of a masked run (the last of its vocabulary), None for a causal run."""
    return len(vocabulary) - 1 if getattr(cfg, "objective", "causal") == "masked" else None


def write_report(path, model, stats, vocabulary, tokens, cfg, step=None, theory: bool = True) -> Path:
    """`theory`: whether the run's weights have leading terms to compare with (the cosine table)."""
    text = association_report(model, stats, vocabulary, tokens, cfg.report_top, cfg.report_tokens,
                              cfg.report_words, cfg.lr if theory else None, step,
                              getattr(cfg, "report_view", "normalised"), mask_id_of(cfg, vocabulary),
                              getattr(cfg, "uniform_attention_steps", 0))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


REPORT_FILE = "associations.md"


class AssociationReport(RunCallback):
    """The run's association report (`associations.md`), written when the run reaches its last step; for
every objective and model (a masked run's MASK row labelled; the cosine table where the run has leading
terms)."""
    any_model = True

    def on_end(self, trainer):
        if not trainer.proc.main:
            return None
        path = write_report(trainer.out_dir / REPORT_FILE, trainer.model, trainer.stats, trainer.vocabulary,
                            trainer.tokens, trainer.cfg, trainer.step, getattr(trainer, "theory", True))
        return {"association report": str(path)}
