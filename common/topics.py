"""Topic structure of trained weights and of the closed forms (docs/theory.md §11).

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
  - theory: the entries of B̄, Φ̄, Σ_B, (B̄Φ̄)ᵀ, Q̄ (common/stats.py), and the row Gram and row cosine of
    B̄ and (B̄Φ̄)ᵀ — the statistics W_O and V line up with (common/weight_kinds.py).
The leading-term model (every weight replaced by its docs/theory.md §3 prediction at the same step) is
measured exactly like the trained one, so both curves share their keys.

`run_topic_structure` is the body of topic_structure.py: corpus → natural tokens → the one Trainer
(common/training.py), measuring at every log point → topic_structure.json and figure.
`embedding_measures` is the embedding measure of Li, Li & Risteski (2023) for topic_embeddings.py.
"""
import torch

from common.alignment import named_weights
from common.io import UserError, read_json
from common.leading_terms import predicted_weights
from common.similarity import normalize_rows
from common.stats import CorpusStatistics
from common.training import TrainConfig, Trainer
from common.weight_kinds import STATISTIC, TOKEN_STATISTICS, parse_log_key

BINS = ("same_token", "same_topic", "different_topic")
SAME_TOKEN, SAME_TOPIC, DIFFERENT_TOPIC, NO_BIN = 0, 1, 2, -1
ROW_STATISTICS = ("bigram", "value_map")   # the statistics of W_O and V, whose rows are compared


# -- the table and the bins ----------------------------------------------------------------------
def read_topic_table(path) -> dict:
    """{word: [topics]} from a JSON object whose values are a topic (number or string), a list of
    topics, or null/[] (a word in no bin)."""
    table = read_json(path, "word → topic table")
    if not isinstance(table, dict):
        raise UserError(f"{path} is not a JSON object {{word: topic or [topics]}}")
    normalised = {}
    for word, topics in table.items():
        topics = [] if topics is None else topics if isinstance(topics, list) else [topics]
        if not all(isinstance(t, (int, str)) and not isinstance(t, bool) for t in topics):
            raise UserError(f"{path}: the topic of {word!r} must be a number, a string or a list of them "
                            f"(got {table[word]!r})")
        normalised[word] = topics
    return normalised


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
    """`W_O` or `{kind}_layer_{l}` for a log key of common.alignment.named_weights."""
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


# -- topic_structure.py --------------------------------------------------------------------------
class MeasuringTrainer(Trainer):
    """The one trainer (common/training.py), calling `recorder(trainer, log entry)` at each log point."""
    recorder = None

    def log_point(self) -> dict:
        entry = super().log_point()
        if self.recorder is not None:
            self.recorder(self, entry)
        return entry


def _training_config(config: dict, data_dir, out_dir):
    return TrainConfig.from_dict(dict(config, data_dir=str(data_dir), out_dir=str(out_dir), report_top=0,
                                      path_exact=False, save_every=0, keep_checkpoints=1, resume=False))


def _corpus(config: dict):
    """(training texts, held-out texts, word → topics table, LDA parameters or None), every input
    checked before anything is generated or written."""
    from dataclasses import replace

    from common.lda import LDAParameters, generate_lda
    from common.text import iter_texts, load_text_dataset
    heldout = config["heldout_documents"]
    if heldout < 1:
        raise UserError(f"--heldout_documents must be at least 1 (got {heldout}): the attention is measured on them")
    if config["data"] == "lda":
        if config["topics"]:
            raise UserError("--topics is for a corpus other than --data=lda (the LDA generator knows its topics)")
        params = LDAParameters.from_config(config).validate(config["seq_len"])
        corpus = generate_lda(replace(params, n_documents=params.n_documents + heldout), config["seed"])
        return corpus.documents[:-heldout], corpus.documents[-heldout:], corpus.table, params
    if not config["topics"]:
        raise UserError(f"--data={config['data']} needs --topics=<word → topic table.json> (or use --data=lda)")
    table = read_topic_table(config["topics"])
    texts = list(iter_texts(load_text_dataset(config["data"])))
    if len(texts) <= heldout:
        raise UserError(f"{config['data']} has {len(texts)} documents: too few to hold out "
                        f"--heldout_documents={heldout} and train on the rest")
    return texts[:-heldout], texts[-heldout:], table, None


class _Recorder:
    """Called at each of the trainer's log points: measures the trained model and its leading-term twin."""

    def __init__(self, bins, heldout):
        self.bins, self.heldout, self.trained, self.leading = bins, heldout, [], []

    def __call__(self, trainer, entry):
        head = {"step": entry["step"], "epoch": entry["epoch"], "loss": entry["loss"]}
        self.trained.append(dict(head, **model_measures(trainer.model, self.heldout, self.bins)))
        twin = leading_term_model(trainer.model, trainer.stats, trainer.cfg.lr, trainer.step)
        self.leading.append(dict(head, **model_measures(twin, self.heldout, self.bins)))


def run_topic_structure(config: dict) -> dict:
    """The body of topic_structure.py (see its docstring); returns the result written."""
    import datasets

    from common.io import atomic_directory, write_json
    from common.lda import TABLE_FILE, describe
    from common.tokenize import keep_in_vocabulary, story_sequences, tokenize_natural, write_token_folder

    if not config["progress"]:
        datasets.disable_progress_bars()
    if config.get("num_threads", 0) > 0:
        torch.set_num_threads(config["num_threads"])
    train_texts, heldout_texts, table, params = _corpus(config)
    stories, vocabulary, frequencies, summary = tokenize_natural(
        datasets.Dataset.from_dict({"text": train_texts}), config["vocab_size"])
    topics = vocabulary_topics(vocabulary, table, config["topics"] or "the LDA table")
    bins = pair_bins(topics)
    heldout = story_sequences(keep_in_vocabulary(datasets.Dataset.from_dict({"text": heldout_texts}), vocabulary),
                              config["seq_len"], len(vocabulary))[:, :-1].long()

    with atomic_directory(config["out_dir"]) as tmp:
        write_token_folder(tmp / "data", stories, vocabulary, frequencies, summary, extra_files={TABLE_FILE: table})
        trainer = MeasuringTrainer(_training_config(config, tmp / "data", tmp / "run"))
        recorder = trainer.recorder = _Recorder(bins.to(trainer.proc.device), heldout.to(trainer.proc.device))
        trainer.run()
        settings = {k: v for k, v in config.items() if not k.startswith("_")}
        result = {"settings": settings, "lda": describe(params) if params else None,
                  "vocab_size": len(vocabulary), "pairs": bin_sizes(bins), "heldout_sequences": len(heldout),
                  "theory": theory_measures(trainer.stats, bins),
                  "trained": recorder.trained, "leading_terms": recorder.leading}
        write_json(tmp / "topic_structure.json", result)
        order, starts = topic_order(topics)
        plot_topic_structure(result, heatmap_panels(trainer.model, trainer.stats, order), starts,
                             tmp / "topic_structure")
    return result


# -- figures -----------------------------------------------------------------------------------------
def heatmap_panels(model, stats: CorpusStatistics, order: list) -> list:
    """(title, matrix in topic order) for Q̄ beside trained W⁰ and (B̄Φ̄)ᵀ beside trained V⁰."""
    index = torch.tensor(order, dtype=torch.long)
    block = lambda m: m.detach().cpu().to(torch.float64)[index][:, index].numpy()
    layer = model.layers[0]
    return [(f"{STATISTIC['attention_map'].symbol}  (closed form)", block(stats.attention_map)),
            ("trained W, layer 0", block(layer.W)),
            (f"{STATISTIC['value_map'].symbol}  (closed form)", block(stats.value_map)),
            ("trained V, layer 0", block(layer.V))]


def _series(entries: list, key: str):
    return [contrast(entry[key]) if key in entry else None for entry in entries]


def plot_topic_structure(result: dict, panels: list, starts: list, stem) -> list:
    """Top: block heatmaps in topic order (each on its own symmetric colour scale, topic boundaries
    drawn).  Bottom: same-topic − different-topic contrast over training, trained (solid) against
    the closed form (dotted): attention, row cosines of V and W_O, entries of W."""
    import numpy as np

    from common.plotting import plt, save_figure
    trained, leading, theory = result["trained"], result["leading_terms"], result["theory"]
    steps = [entry["step"] for entry in trained]
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in trained[-1] if k.startswith("attention_layer_"))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(2, 4, figsize=(18, 8.5), gridspec_kw={"height_ratios": [1.1, 1]})
    for ax, (title, matrix) in zip(axes[0], panels):
        limit = float(np.abs(matrix).max()) or 1.0
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        for start in starts:
            ax.axhline(start - 0.5, color="black", linewidth=0.4)
            ax.axvline(start - 0.5, color="black", linewidth=0.4)
        ax.set(title=title, xticks=[], yticks=[], xlabel="tokens by topic")
        fig.colorbar(image, ax=ax, shrink=0.8)
    lines = [("attention A[t,s], s<t (held-out)", "attention_layer_{l}", None, "leading"),
             ("V rows: cosine", "V_layer_{l}_cosine", "value_map_cosine", None),
             ("W_O rows: cosine", "W_O_cosine", "bigram_cosine", None),
             ("W entries (symlog)", "W_layer_{l}", None, "leading_once")]   # the prediction is one for every layer
    for ax, (title, key, statistic, closed) in zip(axes[1], lines):
        for l in (layers if "{l}" in key else [None]):
            name = key.format(l=l)
            color = colors[(l or 0) % len(colors)]
            label = f"layer {l}" if l is not None else "trained"
            ax.plot(steps, _series(trained, name), color=color, marker=".", label=label)
            if closed == "leading" or (closed == "leading_once" and l == layers[0]):
                ax.plot(steps, _series(leading, name), color=color if closed == "leading" else "black",
                        linestyle=":", label="leading terms" + (f", layer {l}" if closed == "leading" else ""))
        if statistic:
            ax.axhline(contrast(theory[statistic]), color="black", linestyle=":",
                       label=f"closed form {statistic_symbol(statistic)}")
        if closed and key.startswith("W_layer"):
            largest = max((abs(v) for v in _series(trained, name) if v), default=1.0)
            ax.set_yscale("symlog", linthresh=10.0 ** np.floor(np.log10(max(1e-12, 1e-3 * largest))))
        if not statistic:   # the cosine panels stay near their closed form, far from 0
            ax.axhline(0, color="grey", linewidth=0.5)
        ax.set(title=title, xlabel="step", ylabel="same topic − different topic", xscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    lda = result.get("lda")
    fig.suptitle("topic structure: trained weights against their closed forms" +
                 (f" (LDA: {lda['n_topics']} topics × {lda['words_per_topic']} words, α = {lda['alpha']}, "
                  f"overlap {lda['overlap']})" if lda else ""))
    fig.tight_layout()
    return save_figure(fig, stem)


def print_summary(result: dict, out_dir) -> None:
    """The closed forms' and the last log point's same-topic / different-topic means, one line each."""
    show = lambda m: (f"same token {m['same_token']:+.3e}  same topic {m['same_topic']:+.3e}  "
                      f"different topic {m['different_topic']:+.3e}" if None not in m.values() else str(m))
    print(f"{result['vocab_size']} tokens, pairs {result['pairs']}")
    print("closed forms:")
    for field, measure in result["theory"].items():
        print(f"  {statistic_symbol(field):<16} {show(measure)}")
    last = result["trained"][-1]
    print(f"trained, step {last['step']} (loss {last['loss']:.4f}):")
    for key, measure in last.items():
        if isinstance(measure, dict):
            print(f"  {key:<20} {show(measure)}")
    print(f"wrote {out_dir}/topic_structure.json and topic_structure.png/.pdf")


# -- topic_embeddings.py ---------------------------------------------------------------------------
def table_of_source(dataset: str, topics: str) -> dict:
    """The word → topics table: `topics` (a JSON file) when given, else the LDA source's own."""
    from common.lda import parse_source, topic_table
    if topics:
        return read_topic_table(topics)
    params = parse_source(dataset)
    if params is None:
        raise UserError(f"--dataset={dataset} is not an LDA corpus (lda or lda:name=value,…); "
                        f"pass its word → topic table with --topics=<table.json>")
    return topic_table(params)


def single_token_ids(tokenizer, words: list, where: str) -> list:
    """The one token id of every word under `tokenizer` (a word it splits is one UserError line)."""
    ids = []
    for word in words:
        encoded = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1 or encoded[0] == tokenizer.unk_token_id:
            raise UserError(f"the tokenizer of {where} does not keep {word!r} as one known token "
                            f"({len(encoded)} tokens); the embedding measure needs one token per word")
        ids.append(encoded[0])
    return ids


def run_topic_embeddings(config: dict) -> dict:
    """The body of topic_embeddings.py: the binned embedding measure for every revision."""
    from common.checkpoints import CheckpointSource
    from common.io import atomic_directory, write_json
    table = table_of_source(config["dataset"], config["topics"])
    words = [word for word, word_topics in table.items() if word_topics]
    bins = pair_bins([frozenset(table[word]) for word in words])
    source = CheckpointSource(config["model_name"])
    revisions = source.resolve([r.strip() for r in str(config["revisions"]).split(",") if r.strip()])
    records = []
    for revision in revisions:
        ids = single_token_ids(source.load_tokenizer(revision), words, f"{config['model_name']}/{revision}")
        weight = source.load_model(revision).get_input_embeddings().weight
        records.append({"revision": revision, **embedding_measures(weight[torch.tensor(ids)], bins)})
    result = {"model_name": str(config["model_name"]), "words": len(words), "pairs": bin_sizes(bins),
              "revisions": records}
    with atomic_directory(config["out_dir"]) as tmp:
        write_json(tmp / "topic_embeddings.json", result)
        plot_topic_embeddings(result, tmp / "topic_embeddings")
    return result


def plot_topic_embeddings(result: dict, stem) -> list:
    """Same-topic and different-topic mean inner product and cosine of the embeddings, per revision."""
    from common.plotting import plt, save_figure
    records = result["revisions"]
    x = range(len(records))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, measure in zip(axes, ("inner", "cosine")):
        for name, style in (("same_topic", "-"), ("different_topic", "--"), ("same_token", ":")):
            if measure == "cosine" and name == "same_token":
                continue   # 1 by definition
            ax.plot(x, [r[measure][name] for r in records], style, marker=".", label=name.replace("_", " "))
        ax.set_xticks(list(x), [r["revision"] for r in records], rotation=60, ha="right", fontsize=7)
        ax.set(title=f"input embeddings: mean {'inner product' if measure == 'inner' else 'cosine'}",
               xlabel="revision")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"topic structure of the embeddings: {result['model_name']} ({result['words']} words)")
    fig.tight_layout()
    return save_figure(fig, stem)
