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
  - `attention_layer_{l}`: post-softmax attention A[t, s] of layer l on held-out sequences, the pair
    being (query token x_t, key token x_s).  Which position pairs count (`attention_pairs`):
        causal attention          s < t: every key but the query itself (x_s = x_t at s < t is same token);
                                  the diagonal s = t is left out, as in every causal number reported so far
        attention over all        every s, before and after t, and s = t itself, which falls in the
        positions (masked LM)     same-token bin (its pair is (x_t, x_t))
    Held-out sequences are clean text (no corruption): the attention a query word pays to its context,
    which is what Li, Li & Risteski (2023) measure;
  - `{W_O, V_layer_l, W_layer_l}`: the weight's entries M[a, b] (a masked model's MASK token, the last
    id, is in no bin: matrices are read on the words' block, rows over every column);
    `…_inner`: the row Gram M[a]·M[b] (rows are what token a writes: the embedding analogue);
    `…_cosine`: the same for rows scaled to unit length (float64; a zero row has cosine 0);
  - theory: the entries of B̄, Φ̄, Σ_B, (B̄Φ̄)ᵀ, Q̄ (common/theory/statistics.py), and the row Gram and row cosine of
    B̄ and (B̄Φ̄)ᵀ — the statistics W_O and V line up with (common/theory/weight_kinds.py).
The leading-term model (every weight replaced by its docs/theory.md §3 prediction at the same step) is
measured exactly like the trained one, so both curves share their keys.

`query_topic` measures whether the query position already carries its own topic (docs/theory.md §16):
the topic readout of each layer's input at the query against the topic of the word there, weighted by
the query's share of the gradient of W^l (`score_gradients`); common/tiny/topic_ablation.py reads it.

`embedding_measures` is the embedding measure of Li, Li & Risteski (2023) (common/checkpoints/topic_embeddings.py).
"""
import torch

from common.io import UserError
from common.theory.alignment import named_weights
from common.theory.leading_terms import predicted_weights
from common.theory.similarity import normalize_rows
from common.theory.statistics import CorpusStatistics
from common.theory.weight_kinds import STATISTIC, TOKEN_STATISTICS, model_variant, parse_log_key

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


def topic_membership(topics: list) -> torch.Tensor:
    """float64 [V, K]: entry (a, k) is 1 when token a belongs to the k-th topic (topics sorted), else 0."""
    names = sorted({t for token_topics in topics for t in token_topics}, key=_topic_key)
    column = {name: k for k, name in enumerate(names)}
    membership = torch.zeros(len(topics), max(1, len(names)), dtype=torch.float64)
    for a, token_topics in enumerate(topics):
        for t in token_topics:
            membership[a, column[t]] = 1.0
    return membership


def pair_bins(topics: list) -> torch.Tensor:
    """int64 [V, V]: SAME_TOKEN on the diagonal, SAME_TOPIC / DIFFERENT_TOPIC off it, NO_BIN for a
    token without topics."""
    membership = topic_membership(topics)
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
    """{bin: mean of matrix[a, b] over the pairs (a, b) of the bin} (None for an empty bin), float64.
    A matrix larger than the bins (a masked model's, MASK the last id) is read on its leading block."""
    n = bins.shape[0]
    return _means(matrix.detach().cpu()[:n, :n], bins.cpu())


def row_gram(matrix: torch.Tensor) -> torch.Tensor:
    """M Mᵀ in float64: entry (a, b) is the inner product of rows a and b."""
    rows = matrix.detach().cpu().to(torch.float64)
    return rows @ rows.T


def row_cosines(matrix: torch.Tensor) -> torch.Tensor:
    """Cosine between every two rows, float64 (zero rows give 0)."""
    return row_gram(normalize_rows(matrix.detach().cpu().to(torch.float64)))


def row_measures(name: str, matrix: torch.Tensor, bins: torch.Tensor) -> dict:
    """`{name}_inner` and `{name}_cosine` binned over the rows of `matrix`."""
    rows = matrix[:bins.shape[0]]     # the words' rows (a masked model's MASK row is in no bin), every column
    return {f"{name}_inner": binned_means(row_gram(rows), bins),
            f"{name}_cosine": binned_means(row_cosines(rows), bins)}


# -- measures --------------------------------------------------------------------------------------
def attention_pairs(seq_len: int, causal: bool = True):
    """(t, s) index tensors of the position pairs the attention means run over (module docstring):
    s < t for causal attention; every (t, s), s = t included, for attention over all positions."""
    if causal:
        return torch.tril_indices(seq_len, seq_len, offset=-1)
    t, s = torch.meshgrid(torch.arange(seq_len), torch.arange(seq_len), indexing="ij")
    return t.reshape(-1), s.reshape(-1)


@torch.no_grad()
def attention_means(model, tokens: torch.Tensor, bins: torch.Tensor, batch_size: int = 256) -> dict:
    """`attention_layer_{l}`: binned mean of A^l[t, s] over the (query, key) token pairs of `tokens` [N, T]
    (held-out sequences), over the position pairs of `attention_pairs` for the model's attention."""
    T = tokens.shape[1]
    t, s = attention_pairs(T, getattr(model, "is_causal", True))
    sums = torch.zeros(model.n_layers, len(BINS), dtype=torch.float64)
    counts = torch.zeros(len(BINS), dtype=torch.int64)
    n = bins.shape[0]
    if model.vocab_size > n:   # a masked model's MASK token (the last id) is in no bin
        bins = torch.cat([torch.cat([bins, bins.new_full((n, model.vocab_size - n), NO_BIN)], 1),
                          bins.new_full((model.vocab_size - n, model.vocab_size), NO_BIN)])
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


# -- does the query position already carry its own topic? (docs/results.md §3's explanation test) -------
def layer_inputs(model, tokens: torch.Tensor, record: list):
    """(h⁰ … h^{L−1}, logits): the residual stream entering each layer, [B, T, V] each, rebuilt from the
    attention patterns the forward pass puts in `record` (h⁰ one-hot; h^l = h^{l−1} + A^l h^{l−1} V^l,
    or A^l h^{l−1} V^l without the residual), in the autograd graph of those patterns."""
    logits = model(tokens, record)
    h = torch.nn.functional.one_hot(tokens, model.vocab_size).to(logits.dtype)
    inputs = []
    for layer, attention in zip(model.layers, record):
        inputs.append(h)
        out = attention @ (h @ layer.V)
        h = h + out if model.residual else out
    return inputs, logits


def topic_alignment(hidden: torch.Tensor, own: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """[B, T] cosine, over the K topics, between the topic readout of `hidden` [B, T, ≥V] (the mean of its
    coordinates over each topic's words) and the topic indicator of the token `own` [B, T] at the same
    position, both centred over the topics (0 where either is constant: a MASK input reads no topic)."""
    n, K = membership.shape
    sizes = membership.sum(0).clamp_min(1.0)
    readout = hidden[..., :n].to(torch.float64) @ (membership / sizes)
    indicator = membership[own] / membership[own].sum(-1, keepdim=True).clamp_min(1.0)
    readout, indicator = readout - readout.mean(-1, keepdim=True), indicator - 1.0 / K
    norms = readout.norm(dim=-1) * indicator.norm(dim=-1)
    return torch.where(norms > 0, (readout * indicator).sum(-1) / norms.clamp_min(1e-300), torch.zeros_like(norms))


def score_gradients(model, inputs: torch.Tensor, targets: torch.Tensor, selected=None):
    """(h⁰ … h^{L−1}, ∂L/∂S¹ … ∂L/∂S^L): each layer's input [B, T, V] and the gradient of the loss
    (`model.loss`) with respect to its attention scores [B, T, T] (float64; zero at masked keys), from
    ∂L/∂A through the softmax: ∂L/∂S[t, s] = A[t, s] (∂L/∂A[t, s] − Σ_s' A[t, s'] ∂L/∂A[t, s'])."""
    record = []
    with torch.enable_grad():
        hidden, logits = layer_inputs(model, inputs, record)
        if selected is None:
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        else:
            loss = torch.nn.functional.cross_entropy(logits[selected], targets[selected])
        attention_grads = torch.autograd.grad(loss, record)
    d_scores = []
    for attention, d_attention in zip(record, attention_grads):
        attention, d_attention = attention.detach().to(torch.float64), d_attention.to(torch.float64)
        d_scores.append(attention * (d_attention - (attention * d_attention).sum(-1, keepdim=True)))
    return [h.detach() for h in hidden], d_scores


def query_topic(model, clean: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, selected,
                topics: list) -> dict:
    """`query_topic_layer_{l}`: how much the input of layer l at a query position carries the topic of the
    word at that position (`topic_alignment` with the clean token `clean`), on the training objective's
    own batch (`inputs` the model sees — the corrupted x̃ of a masked run —, `targets`, loss positions
    `selected` or None for all):
        all_positions       the mean over every position whose word has a topic
        loss_positions      the mean over the loss positions
        gradient_weighted   the mean weighted by ‖∂L/∂S^l[t, :]‖, the share of query t in the gradient of
                            W^l (∂L/∂W^l = Σ_{t,s} ∂L/∂S^l[t,s] h_t h_sᵀ): the query positions that train W^l
    Positions of a word without topics are left out of all three."""
    membership = topic_membership(topics).to(clean.device)
    has_topic = membership.sum(-1)[clean] > 0
    loss_positions = has_topic & (selected if selected is not None else torch.ones_like(has_topic))
    result = {}
    for layer, (h, d_scores) in enumerate(zip(*score_gradients(model, inputs, targets, selected))):
        weight = d_scores.norm(dim=-1) * has_topic
        cosine = topic_alignment(h, clean, membership)
        result[f"query_topic_layer_{layer}"] = {
            "all_positions": float(cosine[has_topic].mean()) if has_topic.any() else None,
            "loss_positions": float(cosine[loss_positions].mean()) if loss_positions.any() else None,
            "gradient_weighted": float((cosine * weight).sum() / weight.sum()) if weight.sum() > 0 else None}
    return result


def theory_measures(stats: CorpusStatistics, bins: torch.Tensor, variant: str = "residual") -> dict:
    """Binned entries of B̄, Σ_B, Φ̄, (B̄Φ̄)ᵀ, Q̄, and binned row Gram / cosine of B̄ and (B̄Φ̄)ᵀ; in the
    identity variant (docs/theory.md §16: V ≈ τ Φ̄ᵀ) also of the rows of Φ̄ᵀ (`context_transpose_…`)."""
    measures = {s.field: binned_means(getattr(stats, s.field), bins) for s in TOKEN_STATISTICS}
    rows_of = {field: getattr(stats, field) for field in ROW_STATISTICS}
    if variant == "identity":
        rows_of["context_transpose"] = stats.context.T
    for field, matrix in rows_of.items():
        rows = row_measures(field, matrix, bins)
        measures[f"{field}_gram"] = rows.pop(f"{field}_inner")
        measures.update(rows)
    return measures


@torch.no_grad()
def leading_term_model(model, stats: CorpusStatistics, lr: float, step: int):
    """A copy of `model` whose every weight is its docs/theory.md §3 prediction after `step` SGD steps."""
    import copy
    predicted = predicted_weights(stats, lr, step, variant=model_variant(model))
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
    if base.endswith("_transpose"):
        return STATISTIC[base.removesuffix("_transpose")].symbol + "ᵀ" + suffix
    return STATISTIC[base].symbol + suffix
