"""The topic-structure pipeline of topic_structure.py (docs/theory.md §11): corpus → natural tokens → the one
Trainer (common/tiny/training.py), measuring the trained model and its leading-term twin at every log point with
common/theory/topic_measures.py → topic_structure.json and figure."""
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from common.config import Settings
from common.corpus.lda import read_topic_table
from common.device import resolve_device
from common.io import UserError
from common.theory.statistics import CorpusStatistics
from common.theory.topic_measures import (BINS, bin_sizes, contrast, leading_term_model, model_measures, pair_bins,
                                          statistic_symbol, theory_measures, topic_order, vocabulary_topics)
from common.theory.weight_kinds import kinds_by_name
from common.tiny.training import RunCallback, TrainConfig, Trainer, statistics_variant


class TopicStructureConfig(Settings, script="topic_structure.py"):
    """topic_structure.py's settings: its hyperparameter block's names, types and defaults (common/config.py
    `Settings`; the block is the one home of each comment)."""


# Li, Li & Risteski (2023)'s release configuration (docs/theory.md §16): one-hot tokens, one layer and one head,
# no residual, the decoder frozen to the identity, masked LM 15% (80/10/10), Adam 0.01, batch 40, 10 000
# documents; its first stage keeps the attention uniform (W_K = W_Q = 0) while W_V trains, the second trains
# everything.  Here the first epoch (250 steps) is the first stage and the second epoch the second; each
# document's first 99 words (the shortest document has 100) make a sequence.
PRESETS = {"li2023": dict(objective="masked", attention="auto", n_layers=1, residual=False, output="identity",
                          optimizer="adam", lr=0.01, batch_size=40, n_documents=10000, seq_len=99, epochs=2,
                          uniform_attention_steps=250, log_every=0.1)}


def apply_preset(settings: dict) -> dict:
    """The settings with `settings["preset"]`'s values in place of every setting not given on the command
    line (`_explicit`, common/config.py `override`); corpus settings stay overridable."""
    name = settings.get("preset", "")
    if not name:
        return settings
    if name not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)} or empty (got {name!r})")
    explicit = set(settings.get("_explicit", ()))
    return dict(settings, **{key: value for key, value in PRESETS[name].items() if key not in explicit})


def _training_config(cfg: TopicStructureConfig, data_dir, out_dir):
    return TrainConfig.from_settings(dict(asdict(cfg), data_dir=str(data_dir), out_dir=str(out_dir), report_top=0,
                                          path_exact=False, save_every=0, keep_checkpoints=1, resume=False))


def _corpus(cfg: TopicStructureConfig):
    """(training texts, held-out texts, word → topics table, LDA parameters or None), every input
    checked before anything is generated or written."""
    from dataclasses import replace

    from common.corpus.lda import LDAParameters, generate_lda
    from common.corpus.text import iter_texts, load_text_dataset
    heldout = cfg.heldout_documents
    if heldout < 1:
        raise UserError(f"--heldout_documents must be at least 1 (got {heldout}): the attention is measured on them")
    if cfg.data == "lda":
        if cfg.topics:
            raise UserError("--topics is for a corpus other than --data=lda (the LDA generator knows its topics)")
        params = LDAParameters.from_settings(asdict(cfg)).validate(cfg.seq_len)
        corpus = generate_lda(replace(params, n_documents=params.n_documents + heldout), cfg.seed)
        return corpus.documents[:-heldout], corpus.documents[-heldout:], corpus.table, params
    if not cfg.topics:
        raise UserError(f"--data={cfg.data} needs --topics=<word → topic table.json> (or use --data=lda)")
    table = read_topic_table(cfg.topics)
    texts = list(iter_texts(load_text_dataset(cfg.data)))
    if len(texts) <= heldout:
        raise UserError(f"{cfg.data} has {len(texts)} documents: too few to hold out "
                        f"--heldout_documents={heldout} and train on the rest")
    return texts[:-heldout], texts[-heldout:], table, None


def has_leading_terms(cfg: TrainConfig) -> bool:
    """Whether the run's weights have closed-form leading terms to compare with: plain SGD from zero, every
    weight training from the first step, in a variant with a leading-term table (docs/theory.md §3, §16)."""
    return (cfg.optimizer == "sgd" and cfg.uniform_attention_steps == 0 and cfg.init_std == 0
            and (cfg.residual, cfg.output) in ((True, "trained"), (False, "identity")))


class TopicRecorder(RunCallback):
    """At each of the trainer's log points: measures the trained model (attention on clean held-out text, for
    every objective and model variant) and, where leading terms exist (`has_leading_terms`), its twin."""
    any_model = True

    def __init__(self, bins, heldout, leading_terms: bool = True):
        self.bins, self.heldout, self.trained, self.leading = bins, heldout, [], []
        self.leading_terms = leading_terms

    def on_log(self, trainer, entry):
        head = {"step": entry["step"], "epoch": entry["epoch"], "loss": entry["loss"]}
        self.trained.append(dict(head, **model_measures(trainer.model, self.heldout, self.bins)))
        if self.leading_terms:
            twin = leading_term_model(trainer.model, trainer.stats, trainer.cfg.lr, trainer.step)
            self.leading.append(dict(head, **model_measures(twin, self.heldout, self.bins)))


@dataclass
class TopicCorpus:
    """A corpus tokenized for a topic run: the natural tokens, the word → topics table, the pair bins of the
    vocabulary and the held-out sequences [N, T + 1] (clean text)."""
    stories: object
    vocabulary: list
    frequencies: object
    summary: dict
    table: dict
    params: object          # LDAParameters, or None for a corpus of your own
    topics: list
    bins: torch.Tensor
    heldout: torch.Tensor


def topic_corpus(cfg) -> TopicCorpus:
    """`cfg`'s corpus (`_corpus`) tokenized, every input checked before anything is written."""
    import datasets

    from common.corpus.tokenize import keep_in_vocabulary, story_sequences, tokenize_natural
    train_texts, heldout_texts, table, params = _corpus(cfg)
    stories, vocabulary, frequencies, summary = tokenize_natural(
        datasets.Dataset.from_dict({"text": train_texts}), cfg.vocab_size)
    topics = vocabulary_topics(vocabulary, table, cfg.topics or "the LDA table")
    heldout = story_sequences(keep_in_vocabulary(datasets.Dataset.from_dict({"text": heldout_texts}), vocabulary),
                              cfg.seq_len, len(vocabulary)).long()
    return TopicCorpus(stories, vocabulary, frequencies, summary, table, params, topics, pair_bins(topics), heldout)


def write_topic_corpus(corpus: TopicCorpus, folder) -> None:
    """The trainer's data folder: the natural tokens and the topic table beside them."""
    from common.corpus.lda import TABLE_FILE
    from common.corpus.tokenize import write_token_folder
    write_token_folder(folder, corpus.stories, corpus.vocabulary, corpus.frequencies, corpus.summary,
                       extra_files={TABLE_FILE: corpus.table})


def run_topic_structure(cfg: TopicStructureConfig) -> dict:
    """The body of topic_structure.py (see its docstring); returns the result written."""
    import datasets

    from common.io import atomic_directory, write_json
    from common.corpus.lda import describe

    if not cfg.progress:
        datasets.disable_progress_bars()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    corpus = topic_corpus(cfg)
    vocabulary, topics, bins, params = corpus.vocabulary, corpus.topics, corpus.bins, corpus.params
    heldout = corpus.heldout[:, :-1]   # the first T words: a masked run's input, a causal run's too

    with atomic_directory(cfg.out_dir) as tmp:
        write_topic_corpus(corpus, tmp / "data")
        device = resolve_device(cfg.device)
        train_cfg = _training_config(cfg, tmp / "data", tmp / "run")
        recorder = TopicRecorder(bins.to(device), heldout.to(device), has_leading_terms(train_cfg))
        trainer = Trainer(train_cfg, callbacks=[recorder])
        # the checkpoints name the data folder where it will be once the whole folder is in place
        trainer.recorded_data_dir = str(Path(cfg.out_dir) / "data")
        trainer.run()
        result = {"settings": asdict(cfg), "lda": describe(params) if params else None,
                  "vocab_size": len(vocabulary), "pairs": bin_sizes(bins), "heldout_sequences": len(heldout),
                  "causal_attention": trainer.model.is_causal,
                  "theory": theory_measures(trainer.stats, bins, statistics_variant(trainer.cfg)),
                  "trained": recorder.trained, "leading_terms": recorder.leading}
        write_json(tmp / "topic_structure.json", result)
        order, starts = topic_order(topics)
        plot_topic_structure(result, heatmap_panels(trainer.model, trainer.stats, order,
                                                    statistics_variant(trainer.cfg)), starts,
                             tmp / "topic_structure")
    return result


# -- figures -----------------------------------------------------------------------------------------
def heatmap_panels(model, stats: CorpusStatistics, order: list, variant: str = "residual") -> list:
    """(title, matrix in topic order) for the closed form of W beside trained W⁰ and that of V beside
    trained V⁰ (Q̄ and (B̄Φ̄)ᵀ; Q̄' and Φ̄ᵀ in the identity variant, docs/theory.md §16)."""
    index = torch.tensor(order, dtype=torch.long)
    block = lambda m: m.detach().cpu().to(torch.float64)[index][:, index].numpy()
    layer, kinds = model.layers[0], kinds_by_name(variant)
    return [(f"{kinds['W'].symbol}  (closed form)", block(kinds["W"].matrix(stats))),
            ("trained W, layer 0", block(layer.W)),
            (f"{kinds['V'].symbol}  (closed form)", block(kinds["V"].matrix(stats))),
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
    causal = result.get("causal_attention", True)
    value_rows = "context_transpose" if "context_transpose_cosine" in theory else "value_map"   # V's statistic
    attention_panel(axes[1][0], result, layers, f"attention, {'keys s<t' if causal else 'every key s'} (held-out)")
    lines = [("V rows: cosine", "V_layer_{l}_cosine", f"{value_rows}_cosine", None),
             ("W_O rows: cosine", "W_O_cosine", "bigram_cosine", None),
             ("W entries (symlog)", "W_layer_{l}", None, "leading_once")]   # the prediction is one for every layer
    for ax, (title, key, statistic, closed) in zip(axes[1][1:], lines):
        if all(key.format(l=0) not in entry for entry in trained):   # W_O frozen to the identity
            ax.text(0.5, 0.5, f"{title.split()[0]}: not trained in this model", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for l in (layers if "{l}" in key else [None]):
            name = key.format(l=l)
            color = colors[(l or 0) % len(colors)]
            label = f"layer {l}" if l is not None else "trained"
            ax.plot(steps, _series(trained, name), color=color, marker=".", label=label)
            if leading and (closed == "leading" or (closed == "leading_once" and l == layers[0])):
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


def attention_panel(ax, result: dict, layers: list, title: str) -> None:
    """Mean attention over same-topic (solid) and different-topic (dashed) pairs per layer over training,
    the leading-term model's same-topic mean (dotted) where it exists."""
    trained, leading = result["trained"], result["leading_terms"]
    steps = [entry["step"] for entry in trained]
    for l in layers:
        key, color = f"attention_layer_{l}", f"C{l % 10}"
        ax.plot(steps, [e[key]["same_topic"] for e in trained], color=color, marker=".", label=f"layer {l}: same topic")
        ax.plot(steps, [e[key]["different_topic"] for e in trained], color=color, linestyle="--",
                label=f"layer {l}: different topic")
        if leading:
            ax.plot(steps, [e[key]["same_topic"] for e in leading], color=color, linestyle=":",
                    label=f"layer {l}: leading terms, same topic")
    ax.set(title=title, xlabel="step", ylabel="mean attention weight", xscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def summary_lines(result: dict) -> list:
    """The closed forms' and the last log point's binned means, one labelled line each (for the script)."""
    def show(measure):
        return "  ".join(f"{name.replace('_', ' ')} {measure[name]:+.3e}" if measure.get(name) is not None
                         else f"{name.replace('_', ' ')} —" for name in BINS)
    pairs = ", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in result["pairs"].items())
    lines = [f"{result['vocab_size']} tokens; token pairs: {pairs}", "closed forms:"]
    lines += [f"  {statistic_symbol(field):<16} {show(measure)}" for field, measure in result["theory"].items()]
    last = result["trained"][-1]
    lines.append(f"trained, step {last['step']} (loss {last['loss']:.4f}):")
    lines += [f"  {key:<20} {show(measure)}" for key, measure in last.items() if isinstance(measure, dict)]
    return lines
