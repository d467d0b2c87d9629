"""A per-token measure of what a checkpoint has learnt, beside the rsa heatmaps (docs/theory.md §6): for every
revision, how often the model's single-token associations (common/checkpoints/associations.py) name the
corpus statistic's top partners.

Tokens measured: those of K seen at least `min_count` times as inputs whose statistic row has a
positive entry.  For such a token a, with s the statistic's row and m the model's row:
  - top-1 (next tokens only): the model's most probable next token b* in K is a top partner of B̄,
        s[b*] = max_b s[b]                                  (any maximiser counts: ties are common in counts)
  - overlap@k:  |M_k ∩ S_k| / min(|S_k|, k),
        M_k the k largest entries of m, S_k = {b : s[b] > 0 and s[b] ≥ the k-th largest entry of s}
        (the statistic's top k, its ties at the k-th value included, positive entries only).
Next tokens compare p(· | a) with B̄; attention compares each layer's head-average scores (and each head
of the per-head run's layer) with Q̄.  Chance is what a model ranking K in a uniformly random order
scores on the same tokens: top-1 |argmax s| / |K|, overlap k·|S_k| / (|K|·min(|S_k|, k)).

Written to {output_dir}/association_agreement.json:
    {"k": k, "min_count": …, "n_tokens": {"next_token": …, "attention": …},
     "chance": {"next_token_top1": …, "next_token_overlap": …, "attention_overlap": …},
     "revisions": {"step0": {"next_token_top1": …, "next_token_overlap": …,
                             "attention_overlap": {"layer_0": …, …},
                             "attention_head_overlap": {"layer_L": {"head_0": …, …}}}, …}}
(`attention_head_overlap` only for the revisions of a per-head run) and drawn over revisions
(association_agreement.png/.pdf).  A masked LM (BERT, docs/theory.md §17) has no next token: its record
says "objective": "masked" and its `next_token_*` numbers measure the fill-in instead — the model's
prediction at a MASK beside a, p(b | [CLS] a [MASK] [SEP]) (common/checkpoints/associations.py), against
Φ̄ₘᵀ row a of the masked statistics (the words whose masked position has a in its context); attention
against Q̄ₘ.  Its record adds "unigram": the fill-in numbers of a predictor that fills every MASK with the
corpus's most frequent tokens of K (`frequency_ranking`): Φ̄ₘᵀ rows are mostly the unigram distribution, so
a model has learnt something beyond frequency only where it beats that line (drawn dotted).  Over several
models (seeds) each number becomes {"mean", "std", "min", "max", "n"} and the curves show the mean with a
min–max band.
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from common.io import UserError, read_json, write_json

AGREEMENT_FILE = "association_agreement.json"
CURVES_STEM = "association_agreement"
ROW_CHUNK = 1024   # tokens per block of rows (a |K| = 50k float64 block is 400 MB)


@dataclass
class StatisticRows:
    """The statistic's side of the measure over the tokens measured."""
    tokens: torch.Tensor          # indices in K of the tokens measured (CPU)
    best: torch.Tensor            # max_b s[a,b]
    kth: torch.Tensor             # the k-th largest s[a,b]
    n_best: torch.Tensor          # |argmax_b s[a,b]|
    n_set: torch.Tensor           # |S_k(a)|
    values_at: Callable           # (tokens, partners [n, j]) → s at those partners, float64 (CPU)
    n_columns: int                # |K|

    def chance(self, k: int):
        """(top-1, overlap@k) of a uniformly random ranking, averaged over the tokens measured."""
        if not len(self.tokens):
            return None, None
        top1 = (self.n_best.double() / self.n_columns).mean()
        overlap = (k * self.n_set.double() / (self.n_columns * self.n_set.clamp(max=k).double())).mean()
        return float(top1), float(overlap)


def check_k(k: int, n_columns: int) -> int:
    if not 1 <= k <= n_columns:
        raise UserError(f"--k={k} must lie between 1 and the token set's size {n_columns}")
    return k


def statistic_rows(matrix, values_at, candidates: torch.Tensor, k: int) -> StatisticRows:
    """Thresholds of each candidate's row of `matrix` (a tensor or common.checkpoints.associations.RowsOnDemand);
    the candidates whose row has no positive entry are left out."""
    check_k(k, matrix.shape[1])
    parts = []
    for start in range(0, len(candidates), ROW_CHUNK):
        rows = candidates[start:start + ROW_CHUNK]
        block = matrix.detach()[rows.to(matrix.device)].double()
        top = block.topk(k, dim=1).values
        best, kth = top[:, 0], top[:, -1]
        parts.append(torch.stack([best, kth, (block == best[:, None]).sum(1).double(),
                                  ((block > 0) & (block >= kth[:, None])).sum(1).double()], dim=1).cpu())
    columns = torch.cat(parts) if parts else torch.zeros(0, 4, dtype=torch.float64)
    keep = columns[:, 0] > 0
    return StatisticRows(candidates.cpu()[keep], columns[keep, 0], columns[keep, 1], columns[keep, 2].long(),
                         columns[keep, 3].long(), values_at, matrix.shape[1])


def dense_values_at(matrix: torch.Tensor):
    """`values_at` of a dense statistic."""
    return lambda tokens, partners: matrix[tokens.to(matrix.device)[:, None], partners.to(matrix.device)].double().cpu()


def model_top_k(matrix, tokens: torch.Tensor, k: int) -> torch.Tensor:
    """Columns of the k largest entries of each token's row of a model matrix ([n, k], largest first, CPU)."""
    parts = [matrix[tokens[start:start + ROW_CHUNK]].topk(k, dim=1).indices.cpu()
             for start in range(0, len(tokens), ROW_CHUNK)]
    return torch.cat(parts) if parts else torch.zeros(0, k, dtype=torch.long)


def top1_agreement(statistic: StatisticRows, model_ids: torch.Tensor):
    """Fraction of the tokens whose model top-1 (model_ids[:, 0]) is a top partner of the statistic."""
    if not len(statistic.tokens):
        return None
    values = statistic.values_at(statistic.tokens, model_ids[:, :1])[:, 0]
    return float((values == statistic.best).double().mean())


def overlap_agreement(statistic: StatisticRows, model_ids: torch.Tensor, k: int):
    """Mean over the tokens of |M_k ∩ S_k| / min(|S_k|, k) (module docstring)."""
    if not len(statistic.tokens):
        return None
    values = statistic.values_at(statistic.tokens, model_ids[:, :k])
    inside = (values > 0) & (values >= statistic.kth[:, None])
    return float((inside.sum(1).double() / statistic.n_set.clamp(max=k).double()).mean())


def revision_agreement(next_token: StatisticRows, attention: StatisticRows, model_next, layers: list, k: int) -> dict:
    """One revision's entry: `model_next` the model's next-token rows, `layers` its LayerAttention list
    (common/checkpoints/associations.py; heads measured where a layer carries them)."""
    next_ids = model_top_k(model_next, next_token.tokens, k)
    entry = {"next_token_top1": top1_agreement(next_token, next_ids),
             "next_token_overlap": overlap_agreement(next_token, next_ids, k), "attention_overlap": {}}
    for layer in layers:
        entry["attention_overlap"][f"layer_{layer.layer}"] = overlap_agreement(
            attention, model_top_k(layer.mean, attention.tokens, k), k)
        if layer.heads:
            entry.setdefault("attention_head_overlap", {})[f"layer_{layer.layer}"] = {
                f"head_{h}": overlap_agreement(attention, model_top_k(scores, attention.tokens, k), k)
                for h, scores in enumerate(layer.heads)}
    return entry


def frequency_ranking(input_counts: torch.Tensor, n_tokens: int, k: int) -> torch.Tensor:
    """The model ids of a predictor that ranks K by input frequency for every token ([n_tokens, k])."""
    return input_counts.cpu().argsort(descending=True, stable=True)[:k].expand(n_tokens, k)


def agreement_record(next_token: StatisticRows, attention: StatisticRows, k: int, min_count: int,
                     revisions: dict, objective: str = "causal", input_counts=None) -> dict:
    """The JSON of one model (module docstring) from {revision: revision_agreement(...)}; a masked LM's
    record (`objective="masked"`) carries the unigram predictor's numbers, from `input_counts`."""
    top1, overlap = next_token.chance(k)
    unigram = {}
    if objective == "masked" and input_counts is not None:
        ids = frequency_ranking(input_counts, len(next_token.tokens), k)
        unigram = {"unigram": {"next_token_top1": top1_agreement(next_token, ids),
                               "next_token_overlap": overlap_agreement(next_token, ids, k)}}
    return {"k": k, "min_count": min_count, **({"objective": objective} if objective != "causal" else {}), **unigram,
            "n_tokens": {"next_token": len(next_token.tokens), "attention": len(attention.tokens)},
            "chance": {"next_token_top1": top1, "next_token_overlap": overlap,
                       "attention_overlap": attention.chance(k)[1]},
            "revisions": revisions}


# ---------------------------------------------------------------------------------------------
# several models (seeds)
def _flatten(entry: dict, prefix=()) -> dict:
    flat = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix + (key,)))
        else:
            flat[prefix + (key,)] = value
    return flat


def _nest(flat: dict) -> dict:
    nested = {}
    for path, value in flat.items():
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return nested


def summary(values: list) -> dict:
    """{mean, std (population), min, max, n} of the numbers given (None where a model has no value)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean = sum(values) / len(values)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)),
            "min": min(values), "max": max(values), "n": len(values)}


def aggregate_agreement(records: dict) -> dict:
    """{model: agreement record} → one record whose every number is a summary over the models (the
    revisions of any model; `n` says how many models hold each)."""
    if not records:
        raise UserError("no model to aggregate")
    ks = {record["k"] for record in records.values()}
    if len(ks) > 1:
        raise UserError(f"the models' agreement files use different k ({sorted(ks)}); write them with one --k")
    from common.checkpoints.revisions import sort_revisions

    revisions = sort_revisions({r for record in records.values() for r in record["revisions"]})
    aggregated = {}
    for revision in revisions:
        flats = [_flatten(record["revisions"][revision]) for record in records.values()
                 if revision in record["revisions"]]
        paths = list(dict.fromkeys(path for flat in flats for path in flat))
        aggregated[revision] = _nest({path: summary([flat.get(path) for flat in flats]) for path in paths})
    first = next(iter(records.values()))
    chance = _nest({path: summary([_flatten(r["chance"]).get(path) for r in records.values()])
                    for path in _flatten(first["chance"])})
    n_tokens = _nest({path: summary([_flatten(r["n_tokens"]).get(path) for r in records.values()])
                      for path in _flatten(first["n_tokens"])})
    objectives = {record.get("objective", "causal") for record in records.values()}
    if len(objectives) > 1:
        raise UserError("the models' agreement files mix causal and masked LMs; aggregate one kind at a time")
    unigram = ({"unigram": _nest({path: summary([_flatten(r["unigram"]).get(path) for r in records.values()])
                                  for path in _flatten(first["unigram"])})} if "unigram" in first else {})
    return {"k": first["k"], "min_count": first["min_count"],
            **({"objective": first["objective"]} if "objective" in first else {}), **unigram,
            "models": list(records), "n_tokens": n_tokens,
            "chance": chance, "revisions": aggregated}


def read_agreement(folder) -> dict:
    path = Path(folder) / AGREEMENT_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: write the explorer of {folder} first (pythia_explore.py "
                        f"--output_dir={folder})")
    return read_json(path, "agreement file")


def agreement_lines(record: dict) -> list:
    """A record (one model's, or the mean of an aggregate) as lines of text, one per revision."""
    mean = lambda v: v.get("mean") if isinstance(v, dict) else v
    shown = lambda v: "–" if mean(v) is None else f"{mean(v):.3f}"
    chance = record["chance"]
    what = "fill-in" if record.get("objective") == "masked" else "next"
    lines = [f"agreement{' (mean over the models)' if 'models' in record else ''}, k = {record['k']}, "
             f"{mean(record['n_tokens']['next_token']):.0f} tokens measured (chance: top-1 "
             f"{shown(chance['next_token_top1'])}, {what} overlap {shown(chance['next_token_overlap'])}, attention "
             f"overlap {shown(chance['attention_overlap'])}"
             + (f"; unigram predictor: top-1 {shown(record['unigram']['next_token_top1'])}, {what} overlap "
                f"{shown(record['unigram']['next_token_overlap'])}" if "unigram" in record else "") + "):"]
    for revision, entry in record["revisions"].items():
        lines.append(f"  {revision:>12}  top-1 {shown(entry['next_token_top1'])}  {what} overlap "
                     f"{shown(entry['next_token_overlap'])}  attention overlap by layer "
                     + " ".join(shown(v) for v in entry["attention_overlap"].values()))
    return lines


# ---------------------------------------------------------------------------------------------
# curves
def _at(entry, path: tuple):
    for key in path:
        entry = entry.get(key) if isinstance(entry, dict) else None
    return entry


def _series(record: dict, path: tuple):
    """(mean, low, high) of one number over the revisions (low = high = NaN for a single model)."""
    rows = []
    for entry in record["revisions"].values():
        value = _at(entry, path)
        rows.append((value.get("mean"), value.get("min"), value.get("max")) if isinstance(value, dict)
                    else (value, None, None))
    return [[math.nan if v is None else v for v in column] for column in zip(*rows)]


def _chance(record: dict, name: str):
    value = record["chance"].get(name)
    return value.get("mean") if isinstance(value, dict) else value


def plot_agreement(record: dict, stem, labels=None) -> list:
    """Two panels over revisions: next tokens (top-1 and overlap@k) and attention (overlap@k per layer),
    chance dashed; a min–max band where the record aggregates several models."""
    import matplotlib.pyplot as plt

    from common.plotting import save_figure

    revisions = list(record["revisions"])
    labels = labels or revisions
    x = list(range(len(revisions)))
    k = record["k"]
    layers = sorted({name for entry in record["revisions"].values() for name in entry.get("attention_overlap", {})},
                    key=lambda name: int(name.split("_")[1]))
    several = "models" in record
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 0.45 * len(x) + 5), 3.8), sharey=True)

    def draw(axis, path, colour, label):
        mean, low, high = _series(record, path)
        axis.plot(x, mean, marker="o", markersize=3, color=colour, label=label)
        if several:
            axis.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)

    masked = record.get("objective") == "masked"
    statistic = "Φ̄ₘᵀ" if masked else "B̄"
    draw(axes[0], ("next_token_top1",), "C0", f"top-1 is a top partner of {statistic}")
    draw(axes[0], ("next_token_overlap",), "C1", f"overlap@{k} with {statistic}")
    for name, colour in (("next_token_top1", "C0"), ("next_token_overlap", "C1")):
        if _chance(record, name) is not None:
            axes[0].axhline(_chance(record, name), color=colour, linestyle="--", linewidth=0.8)
        if "unigram" in record:   # a masked LM: the predictor that fills every MASK with the most frequent tokens
            value = record["unigram"][name]
            value = value.get("mean") if isinstance(value, dict) else value
            axes[0].axhline(value, color=colour, linestyle=":", linewidth=1.0,
                            label="unigram predictor" if name == "next_token_overlap" else None)
    colours = plt.cm.viridis([i / max(1, len(layers) - 1) * 0.9 for i in range(len(layers))])
    for name, colour in zip(layers, colours):
        draw(axes[1], ("attention_overlap", name), colour, name.replace("_", " "))
    if _chance(record, "attention_overlap") is not None:
        axes[1].axhline(_chance(record, "attention_overlap"), color="grey", linestyle="--", linewidth=0.8,
                        label="chance")
    band = f"; mean of {len(record['models'])} models, band min–max" if several else ""
    axes[0].set_title(f"fill-in: p(· at [MASK] | [CLS] a [MASK] [SEP]) vs Φ̄ₘᵀ row a{band}" if masked else
                      f"next token: p(· | a alone) vs B̄ row a{band}", fontsize=9)
    axes[1].set_title(f"attention: head-average scores of query a vs Q̄{'ₘ' * masked}, overlap@{k}", fontsize=9)
    axes[0].set_ylabel("fraction of tokens / mean overlap (dashed: chance)")
    for axis in axes:
        axis.set_xticks(x)
        axis.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        axis.set_xlabel("revision")
        axis.set_ylim(-0.02, 1.02)
        axis.legend(fontsize=7, ncol=1 + len(layers) // 12 if axis is axes[1] else 1)
    fig.tight_layout()
    try:
        return save_figure(fig, stem)
    finally:
        plt.close(fig)


def write_agreement(output_dir, record: dict, labels=None) -> list:
    """association_agreement.json and its curves (PNG, PDF) in `output_dir`; returns the paths."""
    output_dir = Path(output_dir)
    write_json(output_dir / AGREEMENT_FILE, record)
    return [output_dir / AGREEMENT_FILE] + plot_agreement(record, output_dir / CURVES_STEM, labels)
