"""Association explorer: one self-contained HTML page per run (`explorer.html`), for looking up a token
instead of scrolling the association report.

For the chosen token the page shows, side by side, its top partners in every corpus statistic of
docs/theory.md §2 (B̄, Σ_B, Φ̄, (B̄Φ̄)ᵀ, Q̄) and in every trained token × token weight lining up with
one (W_O; V and W of each layer), in the raw view, the frequency-normalised view of common/theory/association_views.py
(row a divided by P̂(x=a); for B̄, P̂(y=b | x=a) − 1/V), both, or the report's lift view (the discounted
lift lift⁻ of association_views.LiftSupport.lift_lower, its one rule: only partners with a positive lift⁻
shown, ranked by it: its own top-k tables); a slider over the saved checkpoints; the training curves of the
log (cosines and relative errors, the path-exact ones of §10 dashed); and the corpus's strongest
associations to start from (common/theory/association_views.strongest_pair_table: each the top of its B̄
lift row).  `explorer.html#token=bird&checkpoint=0&view=raw` selects a token, a checkpoint (index among
those on the page, oldest first) and a view.

A masked run (docs/theory.md §16; its checkpoints record `mask_token`, the last token of the vocabulary):
the page names MASK's row "<mask> (MASK)", says for Σ_B and Φ̄ that MASK is never an output, and never
lists MASK as a partner on an output axis (B̄'s, W_O's and Σ_B's columns).

The page works offline: no network, styles and hand-written scripts inline, the data embedded as one
JSON object.  Only the top `top` partners of each row are kept, never whole matrices: per table the
partner ids (uint16, or uint32 past 65 536 tokens), their values as int16 fractions of the row's
largest |value| and that float32 scale, each base64-encoded; every matrix has two tables, one in the
row order of the raw view and one in the lift order, where a partner not shown (lift⁻ not positive) is
stored as 0 and left out by the page (page sizes: docs/benchmarks.md §10).  When the page would exceed `max_bytes`, only the rows of the most frequent tokens are
kept and the page says so (a token beyond them says its row was cut).
"""
import json
import math
from pathlib import Path

import torch

from common.theory.alignment import named_weights
from common.io import UserError, load_tensors
from common.theory.model import AttentionOnlyTransformer
from common.theory.path_exact import split_checkpoint
from common.tiny.training import RunCallback
from common.page import encode_partners, page_html, partner_table, rows_on_page, write_page
from common.theory.association_views import (LIFT_DIVISOR_TEXT, MIN_COUNT, VIEWS, LiftSupport, check_view, lift_key_power,
                                              output_axis_fields, strongest_association_tokens, strongest_pair_table,
                                              token_frequency)
from common.theory.weight_kinds import KIND, TOKEN_STATISTICS, parse_log_key

EXPLORER_FILE = "explorer.html"


# -- checkpoints and log -------------------------------------------------------------------------
def mask_id_of(meta: dict, vocabulary: list):
    """The MASK token's id of a masked run's checkpoint (`mask_token` recorded, the vocabulary's last
    token), None for a causal run."""
    token = meta.get("mask_token")
    return len(vocabulary) - 1 if token and vocabulary and vocabulary[-1] == token else None


def checkpoint_models(paths, vocabulary: list) -> list:
    """(metadata, model) of each checkpoint file, oldest first, refusing one of another vocabulary or
    of other training sequences than the first.  A masked run's `vocabulary` ends with its MASK token
    (common.tiny.training.load_run); the checkpoints record the words' fingerprint and the model variant."""
    from common.corpus.tokenize import vocabulary_fingerprint
    models = []
    for path in paths:
        tensors, meta = load_tensors(path)
        words = vocabulary[:-1] if mask_id_of(meta, vocabulary) is not None else vocabulary
        if meta.get("vocabulary_sha256") != vocabulary_fingerprint(words):
            raise UserError(f"checkpoint {path} was trained on another vocabulary than this run's data; "
                            f"pass the --data_dir it was trained on")
        if models and meta.get("data_fingerprint") != models[0][0].get("data_fingerprint"):
            raise UserError(f"checkpoints {paths[0]} and {path} were trained on different sequences; "
                            f"keep one run per folder")
        model = AttentionOnlyTransformer(len(vocabulary), meta["seq_len"], meta["n_layers"],
                                         causal=meta.get("attention", "causal") == "causal",
                                         residual=meta.get("residual", True), output=meta.get("output", "trained"))
        model.load_state_dict(split_checkpoint(tensors)[0])
        models.append((meta, model))
    return sorted(models, key=lambda pair: pair[0]["step"])


def _rounded(value, digits: int = 6):
    return None if value is None or not math.isfinite(value) else float(f"{value:.{digits}g}")


def curve_data(logs: list) -> dict:
    """The training log as the page draws it: steps, epochs, loss and one series per weight key
    (common.theory.weight_kinds.parse_log_key: kind, layer, corpus or path-exact reference, cosine or error)."""
    keys = []
    for entry in logs:
        keys += [key for key in entry if key not in keys and parse_log_key(key) is not None]
    series = []
    for key in keys:
        parsed = parse_log_key(key)
        series.append({"key": key, "kind": parsed.kind, "layer": parsed.layer, "reference": parsed.reference,
                       "rel_err": parsed.rel_err, "symbol": KIND[parsed.kind].symbol,
                       "values": [_rounded(entry.get(key)) for entry in logs]})
    return {"step": [entry["step"] for entry in logs], "epoch": [_rounded(entry.get("epoch")) for entry in logs],
            "loss": [_rounded(entry.get("loss")) for entry in logs], "series": series}


# -- the page data -------------------------------------------------------------------------------
ROW_CHUNK = 1024   # rows lifted at once (a V = 10000 float64 block of 1024 rows is 82 MB)


def lift_table(matrix, field: str, rows, top: int, support: LiftSupport, skip_self: bool = False,
               statistic: bool = False):
    """The top partners of `rows` in the lift view of `matrix` (the statistic `field` itself when `statistic`)
    by association_views' one rule (`LiftSupport.lift_lower`), encoded, a partner not shown stored as 0;
    None when no row shows a partner."""
    k = min(top, matrix.shape[1])
    values, ids = [], []
    for start in range(0, len(rows), ROW_CHUNK):
        chunk = rows[start:start + ROW_CHUNK]
        block = (support.statistic_lift_lower(field, chunk) if statistic
                 else support.lift_lower(matrix.detach()[chunk.to(matrix.device)], field, chunk))
        if skip_self:
            block[torch.arange(len(chunk)), chunk] = -float("inf")
        v, i = block.topk(k, dim=1)
        values.append(v)
        ids.append(i)
    values = torch.cat(values)
    if not torch.isfinite(values).any():
        return None
    return encode_partners(values.clamp_min(0), torch.cat(ids), matrix.shape[1])


def without_partner(matrix: torch.Tensor, column) -> torch.Tensor:
    """`matrix` with `column` (a token that is no partner here: MASK on an output axis) at −inf, or
    `matrix` itself when `column` is None."""
    if column is None:
        return matrix
    matrix = matrix.detach().clone()
    matrix[:, column] = -float("inf")
    return matrix


def explorer_data(stats, vocabulary: list, checkpoints: list, logs: list, top: int = 8,
                  max_bytes: int = 5_000_000, view: str = "normalised", title: str = "",
                  mask_id: int = None) -> dict:
    """Everything the page shows, as one JSON-ready dict. `checkpoints`: (metadata, model) pairs,
    oldest first (checkpoint_models); `mask_id`: a masked run's MASK token (by default read from the
    checkpoints' `mask_token`)."""
    check_view(view, views=VIEWS)
    V = len(vocabulary)
    if top < 1:
        raise UserError(f"--top must be at least 1 (got {top})")
    if mask_id is None and checkpoints:
        mask_id = mask_id_of(checkpoints[0][0], vocabulary)
    frequency = token_frequency(stats)
    support = LiftSupport(stats)
    no_partner = output_axis_fields(rows=False)
    n_weights = sum(weight.dim() == 2 for _, _, weight in named_weights(checkpoints[0][1])) if checkpoints else 0
    n_tables = 2 * (len(TOKEN_STATISTICS) + n_weights * len(checkpoints))    # raw order and lift order
    fixed = len(json.dumps(vocabulary, ensure_ascii=False)) + 24 * V + 200_000   # words, frequencies, curves, page
    n_rows, notes = rows_on_page(V, n_tables, top, fixed, max_bytes, "tokens", "lower --top")
    rows = frequency.argsort(descending=True, stable=True)[:n_rows].sort().values

    def tables(matrix, field, skip_self=False, statistic=False):
        shown = without_partner(matrix, mask_id if field in no_partner else None)
        return {"table": partner_table(shown, rows, top, skip_self),
                "lift": lift_table(matrix, field, rows, top, support, skip_self, statistic)}

    statistics = [dict({"field": s.field, "symbol": s.symbol, "reads": s.reads},
                       **tables(getattr(stats, s.field), s.field, s.field == "interchangeability", True))
                  for s in TOKEN_STATISTICS]
    trained = []
    for meta, model in checkpoints:
        weights = []
        for key, kind, weight in named_weights(model):
            if weight.dim() == 2:
                layer = parse_log_key(key).layer
                field = KIND[kind].statistic
                weights.append(dict({"key": key, "kind": kind, "layer": layer, "statistic": field,
                                     "label": kind if layer is None else f"{kind} (layer {layer})"},
                                    **tables(weight, field)))
        trained.append({"step": meta["step"], "epoch": _rounded(meta.get("epoch"), 4), "weights": weights})
    strongest = strongest_association_tokens(stats, 1, support=support)
    has_lift = statistics[0]["lift"] is not None
    if not has_lift:
        notes.append(f"No lift view: no pair of tokens seen {MIN_COUNT} times has a positive lift⁻.")
    return {"title": title, "vocab_size": V, "vocabulary": vocabulary, "top": top,
            "view": view if has_lift or view != "lift" else "normalised",
            "views": list(VIEWS) if has_lift else [v for v in VIEWS if v != "lift"],
            "rows": None if n_rows == V else rows.tolist(), "notes": notes,
            "frequency": [_rounded(f, 6) for f in frequency.tolist()], "n_positions": int(stats.n_positions),
            "min_count": MIN_COUNT, "lift_key_power": {s.field: lift_key_power(s.field) for s in TOKEN_STATISTICS},
            "lift_divisor": LIFT_DIVISOR_TEXT, "mask_id": mask_id, "no_row": list(output_axis_fields(rows=True)),
            "statistics": statistics, "checkpoints": trained, "curves": curve_data(logs),
            "strongest": [[r["a"], r["b"], _rounded(r["conditional"]), _rounded(r["lift"]),
                           _rounded(r["lift_lower"]), r["pairs"], r["count"]]
                          for r in strongest_pair_table(stats, 40, support=support)],
            "default_token": vocabulary[strongest[0] if strongest else int(frequency.argmax())]}


PAGE_FILE = "explorer_page.html"   # the page's own style, markup and script, beside this module (common/page.html wraps it)


def explorer_page(data: dict) -> str:
    """The HTML page (explorer_page.html) with the data embedded."""
    return page_html(__package__, PAGE_FILE, data, f"Association explorer — {data['title']}")


def write_explorer(path, stats, vocabulary: list, checkpoint_files, logs: list, view: str = "normalised",
                   top: int = 8, max_bytes: int = 5_000_000, title: str = "") -> Path:
    """Write the page for a run: its statistics, its checkpoint files (common.tiny.training.checkpoint_paths)
    and its log entries."""
    data = explorer_data(stats, vocabulary, checkpoint_models(checkpoint_files, vocabulary), logs, top,
                         max_bytes, view, title)
    return write_page(path, explorer_page(data))


class ExplorerPage(RunCallback):
    """The run's explorer page (`explorer.html`) over its saved checkpoints, written when the run reaches
    its last step, opening in the report's view (--report_view); for every objective and model (a masked
    run's MASK row labelled)."""
    any_model = True

    def on_end(self, trainer):
        if not trainer.proc.main:
            return None
        from common.tiny.training import checkpoint_paths
        view = trainer.cfg.report_view if trainer.cfg.report_view in VIEWS else "normalised"
        path = write_explorer(trainer.out_dir / EXPLORER_FILE, trainer.stats, trainer.vocabulary,
                              checkpoint_paths(trainer.out_dir), trainer.logs, view,
                              title=f"{trainer.out_dir}, step {trainer.step}")
        return {"association explorer": str(path)}
