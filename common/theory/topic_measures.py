"""Topic-structure measures of weights, attention and the closed forms (docs/theory.md §11): pair bins
by a word → topics table and binned means; the pipelines that use them live in common/tiny/topic_structure.py
and common/checkpoints/topic_embeddings.py.

Token pairs (a, b) of the vocabulary fall in three bins by a word → topics table:
    same_token       a = b
    same_topic       a ≠ b and their topic lists share a topic (with overlapping topics a word has several)
    different_topic  their topic lists are disjoint
A token whose table entry is empty (`[]` or null: punctuation, function words of a real corpus) is in
no bin.  The table must list every vocabulary token: a missing one is a UserError, not a silent gap.

Measures, each the mean over the pairs of a bin (`binned_means`):
  - `attention_layer_{l}`: post-softmax attention A[t, s], s < t, of layer l on held-out sequences,
    the pair being (query token x_t, key token x_s);
  - `{W_O, V_layer_l, W_layer_l}`: the weight's entries M[a, b];
    `…_inner`: the row Gram M[a]·M[b] (rows are what token a writes: the embedding analogue);
    `…_cosine`: the same for rows scaled to unit length (float64; a zero row has cosine 0);
  - theory: the entries of B̄, Φ̄, Σ_B, (B̄Φ̄)ᵀ, Q̄ (common/theory/statistics.py), and the row Gram and row cosine of
    B̄ and (B̄Φ̄)ᵀ — the statistics W_O and V line up with (common/theory/weight_kinds.py).
The leading-term model (every weight replaced by its docs/theory.md §3 prediction at the same step) is
measured exactly like the trained one, so both curves share their keys.

`embedding_measures` is the embedding measure of Li, Li & Risteski (2023) (common/checkpoints/topic_embeddings.py).
"""
import torch

from common.io import UserError
from common.theory.alignment import named_weights
from common.theory.leading_terms import predicted_weights
from common.theory.similarity import normalize_rows
from common.theory.statistics import CorpusStatistics
from common.theory.weight_kinds import STATISTIC, TOKEN_STATISTICS, parse_log_key

BINS = ("same_token", "same_topic", "different_topic")
SAME_TOKEN, SAME_TOPIC, DIFFERENT_TOPIC, NO_BIN = 0, 1, 2, -1
ROW_STATISTICS = ("bigram", "value_map")   # the statistics of W_O and V, whose rows are compared


# -- the table and the bins ----------------------------------------------------------------------
def vocabulary_topics(vocabulary: list, table: dict, where: str = "the word → topic table") -> list:
    """The topic set of every vocabulary token (by its string, never its id); a token missing from
    the table is one UserError line."""
    missing = [token for token in vocabulary if token not in table]
    if missing:
        shown = ", ".join(repr(t) for t in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise UserError(f"{where} misses {len(missing)} of the {len(vocabulary)} vocabulary words ({shown}); "
                        f"list every word (an empty list [] leaves a word out of every bin)")
    return [frozenset(table[token]) for token in vocabulary]


def pair_bins(topics: list) -> torch.Tensor:
    """int64 [V, V]: SAME_TOKEN on the diagonal, SAME_TOPIC / DIFFERENT_TOPIC off it, NO_BIN for a
    token without topics."""
    names = sorted({t for token_topics in topics for t in token_topics}, key=_topic_key)
    column = {name: k for k, name in enumerate(names)}
    membership = torch.zeros(len(topics), max(1, len(names)), dtype=torch.float64)
    for a, token_topics in enumerate(topics):
        for t in token_topics:
            membership[a, column[t]] = 1.0
    shared = membership @ membership.T > 0
    bins = torch.where(shared, SAME_TOPIC, DIFFERENT_TOPIC)
    bins.fill_diagonal_(SAME_TOKEN)
    labelled = membership.sum(1) > 0
    bins[~labelled] = NO_BIN
    bins[:, ~labelled] = NO_BIN
    return bins


def _topic_key(topic):
    return (isinstance(topic, str), topic)


def topic_order(topics: list):
    """(token indices ordered by first topic then index, the positions where a new first topic
    starts) — the block order of the heatmaps; tokens without topics are left out."""
    first = lambda a: min(topics[a], key=_topic_key)
    order = sorted((a for a, t in enumerate(topics) if t), key=lambda a: (_topic_key(first(a)), a))
    starts = [i for i in range(1, len(order)) if first(order[i]) != first(order[i - 1])]
    return order, starts


def bin_sizes(bins: torch.Tensor) -> dict:
    counts = torch.bincount(bins[bins >= 0].reshape(-1), minlength=len(BINS))
    return dict(zip(BINS, counts.tolist()))


def _means(values: torch.Tensor, pair_bins_: torch.Tensor) -> dict:
    keep = pair_bins_ >= 0
    index, values = pair_bins_[keep], values[keep].to(torch.float64)
    sums = torch.zeros(len(BINS), dtype=torch.float64).index_add_(0, index, values)
    counts = torch.bincount(index, minlength=len(BINS))
    return {name: float(sums[k] / counts[k]) if counts[k] > 0 else None for k, name in enumerate(BINS)}


@torch.no_grad()
def binned_means(matrix: torch.Tensor, bins: torch.Tensor) -> dict:
    """{bin: mean of matrix[a, b] over the pairs (a, b) of the bin} (None for an empty bin), float64."""
    return _means(matrix.detach().cpu(), bins.cpu())


def row_gram(matrix: torch.Tensor) -> torch.Tensor:
    """M Mᵀ in float64: entry (a, b) is the inner product of rows a and b."""
    rows = matrix.detach().cpu().to(torch.float64)
    return rows @ rows.T


def row_cosines(matrix: torch.Tensor) -> torch.Tensor:
    """Cosine between every two rows, float64 (zero rows give 0)."""
    return row_gram(normalize_rows(matrix.detach().cpu().to(torch.float64)))


def row_measures(name: str, matrix: torch.Tensor, bins: torch.Tensor) -> dict:
    """`{name}_inner` and `{name}_cosine` binned over the rows of `matrix`."""
    return {f"{name}_inner": binned_means(row_gram(matrix), bins),
            f"{name}_cosine": binned_means(row_cosines(matrix), bins)}


# -- measures --------------------------------------------------------------------------------------
@torch.no_grad()
def attention_means(model, tokens: torch.Tensor, bins: torch.Tensor, batch_size: int = 256) -> dict:
    """`attention_layer_{l}`: binned mean of A^l[t, s], s < t, over the (query, key) token pairs of
    `tokens` [N, T] (held-out sequences)."""
    T = tokens.shape[1]
    t, s = torch.tril_indices(T, T, offset=-1)
    sums = torch.zeros(model.n_layers, len(BINS), dtype=torch.float64)
    counts = torch.zeros(len(BINS), dtype=torch.int64)
    bins = bins.to(tokens.device)
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size]
        pairs = bins[chunk[:, t], chunk[:, s]].reshape(-1)
        keep = pairs >= 0
        counts += torch.bincount(pairs[keep], minlength=len(BINS)).cpu()
        for layer, attention in enumerate(model.attention_patterns(chunk)):
            weights = attention[:, t, s].reshape(-1)[keep].to(torch.float64).cpu()
            sums[layer].index_add_(0, pairs[keep].cpu(), weights)
    return {f"attention_layer_{layer}": {name: float(sums[layer, k] / counts[k]) if counts[k] > 0 else None
                                         for k, name in enumerate(BINS)} for layer in range(model.n_layers)}


def weight_name(key: str) -> str:
    """`W_O` or `{kind}_layer_{l}` for a log key of common.theory.alignment.named_weights."""
    parsed = parse_log_key(key)
    return parsed.kind if parsed.layer is None else f"{parsed.kind}_layer_{parsed.layer}"


@torch.no_grad()
def weight_measures(model, bins: torch.Tensor) -> dict:
    """Binned entries of W_O, V^l, W^l, and binned row inner products and cosines of W_O and V^l."""
    measures = {}
    for key, kind, weight in named_weights(model):
        if kind == "P":           # one number per distance, not a token pair
            continue
        name = weight_name(key)
        measures[name] = binned_means(weight, bins)
        if kind in ("W_O", "V"):
            measures.update(row_measures(name, weight, bins))
    return measures


def model_measures(model, heldout: torch.Tensor, bins: torch.Tensor) -> dict:
    return {**attention_means(model, heldout, bins), **weight_measures(model, bins)}


def theory_measures(stats: CorpusStatistics, bins: torch.Tensor) -> dict:
    """Binned entries of B̄, Σ_B, Φ̄, (B̄Φ̄)ᵀ, Q̄, and binned row Gram / cosine of B̄ and (B̄Φ̄)ᵀ."""
    measures = {s.field: binned_means(getattr(stats, s.field), bins) for s in TOKEN_STATISTICS}
    for field in ROW_STATISTICS:
        rows = row_measures(field, getattr(stats, field), bins)
        measures[f"{field}_gram"] = rows.pop(f"{field}_inner")
        measures.update(rows)
    return measures


@torch.no_grad()
def leading_term_model(model, stats: CorpusStatistics, lr: float, step: int):
    """A copy of `model` whose every weight is its docs/theory.md §3 prediction after `step` SGD steps."""
    import copy
    predicted = predicted_weights(stats, lr, step)
    twin = copy.deepcopy(model)
    for _, kind, weight in named_weights(twin):
        weight.copy_(predicted[kind].to(weight))
    return twin


def contrast(measure: dict):
    """same_topic − different_topic (None when either bin is empty)."""
    if measure.get("same_topic") is None or measure.get("different_topic") is None:
        return None
    return measure["same_topic"] - measure["different_topic"]


def embedding_measures(embeddings: torch.Tensor, bins: torch.Tensor) -> dict:
    """Li, Li & Risteski's embedding measure: binned mean inner product and cosine of embedding rows."""
    rows = row_measures("embedding", embeddings, bins)
    return {"inner": rows["embedding_inner"], "cosine": rows["embedding_cosine"]}


def statistic_symbol(field: str) -> str:
    base = field.removesuffix("_gram").removesuffix("_cosine")
    suffix = " rows ·" if field.endswith("_gram") else " rows cos" if field.endswith("_cosine") else ""
    return STATISTIC[base].symbol + suffix
