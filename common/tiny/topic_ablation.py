"""What makes attention topical, and what turns it away (docs/theory.md §11, §16): the grid of
topic_ablation.py.  One LDA corpus, the same steps, the same batches; every cell changes one of
    objective     masked (Li, Li & Risteski's) or causal (next token)
    attention     over all positions or causal
    depth         1 or 3 layers
    residual      on (with a trained W_O) or off (with W_O frozen to the identity: Li, Li & Risteski's variant)
and is trained from zero with plain SGD by the one Trainer (common/tiny/training.py).  Without the residual a
deep model's zero start is a saddle (every hidden state and every gradient stays zero), so those cells alone
start from a seeded random init of `deep_init_std`, and say so.

At every log point, on held-out documents:
  - the mean attention over same-topic and different-topic pairs per layer, and their ratio (clean text, the
    pairs of common/theory/topic_measures.py `attention_pairs`);
  - the explanation test (`query_topic`): how much the input of each layer at a query position already carries
    the topic of that position's word, on a fixed batch of the objective's own input (the corrupted one for
    the masked objective, one seeded draw), weighted by each query's share of the gradient of W^l.
The hypothesis under test: same-topic attention turns away once the queries that train W^l already carry
their own topic.  `verdicts` says, per cell and layer, what the ratio did (rises / turns / flat) and what the
hypothesis predicts from the query topic at the first log point.
"""
import itertools
from dataclasses import asdict

import torch

from common.config import Settings
from common.io import UserError
from common.theory.topic_measures import attention_means, query_topic
from common.tiny.topic_structure import topic_corpus, write_topic_corpus
from common.tiny.training import RunCallback, TrainConfig, Trainer, masking_scheme

RATIO_MARGIN = 0.005      # a ratio within 1 ± this at the end is flat
CARRIES_TOPIC = 0.5       # gradient-weighted query-topic alignment above this: the queries carry their topic


class TopicAblationConfig(Settings, script="topic_ablation.py"):
    """topic_ablation.py's settings: its hyperparameter block's names, types and defaults (common/config.py
    `Settings`; the block is the one home of each comment)."""


def cells(cfg: TopicAblationConfig) -> list:
    """The grid: one dict of trainer settings and a name per cell, in the order objective × attention ×
    depth × residual; or a UserError naming the bad setting."""
    for name, allowed in (("objectives", ("masked", "causal")), ("attentions", ("all", "causal")),
                          ("residuals", (True, False))):
        values = getattr(cfg, name)
        if not values or any(v not in allowed for v in values):
            raise UserError(f"--{name} must be a non-empty list of {', '.join(map(str, allowed))} (got {values!r})")
    if not cfg.depths or any(not isinstance(d, int) or d < 1 for d in cfg.depths):
        raise UserError(f"--depths must be a non-empty list of layer counts ≥ 1 (got {cfg.depths!r})")
    grid = []
    for objective, attention, depth, residual in itertools.product(cfg.objectives, cfg.attentions, cfg.depths,
                                                                    cfg.residuals):
        init = cfg.deep_init_std if (not residual and depth > 1) else 0.0
        grid.append({"name": f"{objective}_{attention}_L{depth}_{'res' if residual else 'nores'}",
                     "objective": objective, "attention": attention, "n_layers": depth, "residual": residual,
                     "output": "trained" if residual else "identity", "init_std": init})
    return grid


class AblationRecorder(RunCallback):
    """At each log point: attention by topic bin per layer (clean held-out text) and the query topic of each
    layer's input on the objective's own probe batch."""
    any_model = True

    def __init__(self, bins, heldout, topics, probe: dict):
        self.bins, self.heldout, self.topics, self.probe, self.log = bins, heldout, topics, probe, []

    def on_log(self, trainer, entry):
        model = trainer.model
        row = {"step": entry["step"], "loss": entry["loss"], **attention_means(model, self.heldout, self.bins)}
        row.update(query_topic(model, self.probe["clean"], self.probe["inputs"], self.probe["targets"],
                               self.probe["selected"], self.topics))
        self.log.append(row)


def probe_batch(objective: str, sequences: torch.Tensor, scheme, seed: int) -> dict:
    """The explanation test's batch from held-out sequences [N, T + 1]: for the masked objective the first T
    words corrupted once (a generator seeded with `seed`: the same draw for every cell and log point), the
    loss at the selected positions; for the causal objective x → y at every position."""
    from common.theory.masking import corrupt
    if objective == "masked":
        clean = sequences[:, :-1]
        corrupted, selected = corrupt(clean, scheme, torch.Generator().manual_seed(seed))
        return {"clean": clean, "inputs": corrupted, "targets": clean, "selected": selected}
    return {"clean": sequences[:, :-1], "inputs": sequences[:, :-1], "targets": sequences[:, 1:], "selected": None}


def ratio(measure: dict):
    """same_topic / different_topic mean attention (None when a bin is empty)."""
    if not measure.get("same_topic") or not measure.get("different_topic"):
        return None
    return measure["same_topic"] / measure["different_topic"]


def uniform_ratio(model, bins, heldout) -> float:
    """The ratio under uniform attention (W = P = 0) over the same pairs: not exactly 1 for causal attention,
    where a query's weight 1/(t + 1) depends on its position; the ratios are read against it."""
    from common.theory.model import AttentionOnlyTransformer
    uniform = AttentionOnlyTransformer(model.vocab_size, model.seq_len, 1, causal=model.is_causal)
    return ratio(attention_means(uniform, heldout, bins)["attention_layer_0"])


def verdicts(cell: dict) -> list:
    """Per layer: {layer, ratios, observed (rises / turns / flat at the last log point, against the uniform
    attention's ratio), query_topic (the gradient-weighted alignment at the first log point), carried (the
    same in the residual stream: without the residual nothing of the query bypasses the attention, so 0),
    predicted (turns when `carried` exceeds CARRIES_TOPIC, else rises), agrees}."""
    log = cell["log"]
    rows = []
    for layer in range(cell["n_layers"]):
        ratios = [ratio(entry[f"attention_layer_{layer}"]) for entry in log]
        last = ratios[-1]
        change = None if last is None else last / cell["uniform_ratio"]
        observed = "flat" if change is None or abs(change - 1) <= RATIO_MARGIN else "rises" if change > 1 else "turns"
        query = log[0][f"query_topic_layer_{layer}"]["gradient_weighted"]
        carried = None if query is None else (query if cell["residual"] else 0.0)
        predicted = None if carried is None else ("turns" if carried > CARRIES_TOPIC else "rises")
        rows.append({"layer": layer, "ratios": ratios, "observed": observed, "query_topic": query,
                     "query_topic_last": log[-1][f"query_topic_layer_{layer}"]["gradient_weighted"],
                     "carried": carried, "predicted": predicted, "agrees": predicted == observed})
    return rows


def run_topic_ablation(cfg: TopicAblationConfig, log=None) -> dict:
    """The body of topic_ablation.py: the corpus once, the 16 cells, topic_ablation.{json,md,png,pdf}."""
    import datasets

    from common.io import atomic_directory, write_json
    from common.corpus.lda import describe
    from common.corpus.tokenize import story_sequences

    if not cfg.progress:
        datasets.disable_progress_bars()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    grid = cells(cfg)
    for name in ("steps", "log_points", "batch_size", "probe_sequences"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name} must be at least 1 (got {getattr(cfg, name)})")
    corpus = topic_corpus(cfg)
    n_words = len(corpus.vocabulary)
    n_train = len(story_sequences(corpus.stories, cfg.seq_len, n_words))
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise UserError(f"{n_train} training sequences are fewer than one batch of {cfg.batch_size}")
    heldout = corpus.heldout
    probe_sequences = heldout[:cfg.probe_sequences]
    results = []
    with atomic_directory(cfg.out_dir) as tmp:
        write_topic_corpus(corpus, tmp / "data")
        for cell in grid:
            run = TrainConfig.from_settings(dict(
                data_dir=str(tmp / "data"), out_dir=str(tmp / "runs" / cell["name"]), seq_len=cfg.seq_len,
                n_layers=cell["n_layers"], batch_size=cfg.batch_size, lr=cfg.lr, tau=cfg.lr * cfg.steps,
                init_std=cell["init_std"], objective=cell["objective"], attention=cell["attention"],
                residual=cell["residual"], output=cell["output"], optimizer="sgd",
                log_every=cfg.steps / cfg.log_points / steps_per_epoch, save_every=0.0, keep_checkpoints=1,
                report_top=0, path_exact=False, stats_sequences=cfg.stats_sequences, seed=cfg.seed,
                device=cfg.device, deterministic=True, progress=cfg.progress))
            probe = probe_batch(cell["objective"], probe_sequences, masking_scheme(run, n_words), cfg.seed)
            recorder = AblationRecorder(corpus.bins, heldout[:, :-1], corpus.topics, probe)
            if log:
                log(f"cell {cell['name']} (init_std {cell['init_std']:g})")
            trainer = Trainer(run, callbacks=[recorder])
            cell = dict(cell, uniform_ratio=uniform_ratio(trainer.model, corpus.bins, heldout[:, :-1]))
            trainer.run()
            cell = dict(cell, log=recorder.log)
            cell["verdicts"] = verdicts(cell)
            results.append(cell)
        result = {"settings": asdict(cfg), "lda": describe(corpus.params) if corpus.params else None,
                  "vocab_size": n_words, "training_sequences": n_train, "cells": results}
        result["summary"] = hypothesis_summary(results)
        write_json(tmp / "topic_ablation.json", result)
        (tmp / "topic_ablation.md").write_text(ablation_markdown(result), encoding="utf-8")
        plot_topic_ablation(result, tmp / "topic_ablation")
    return result


def hypothesis_summary(results: list) -> dict:
    """How many (cell, layer) rows the hypothesis predicts right among those whose ratio moved, for the cells
    trained from zero (`from_zero`) and for those started from a random init (`random_init`)."""
    summary = {}
    for group, chosen in (("from_zero", lambda c: c["init_std"] == 0), ("random_init", lambda c: c["init_std"] > 0)):
        rows = [(cell, v) for cell in results if chosen(cell) for v in cell["verdicts"]
                if v["observed"] != "flat" and v["predicted"]]
        summary[group] = {"moved": len(rows), "agree": sum(v["agrees"] for _, v in rows),
                          "disagree": [f"{cell['name']} layer {v['layer']}" for cell, v in rows if not v["agrees"]]}
    return summary


def _fmt(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ablation_markdown(result: dict) -> str:
    """The grid as a table: per cell and layer the same-topic / different-topic attention ratio at five of the
    log points, what it did, the query topic and what the hypothesis predicts."""
    first = result["cells"][0]["log"]
    picks = sorted({round(k * (len(first) - 1) / 4) for k in range(5)}) if len(first) > 1 else [0]
    steps = [first[i]["step"] for i in picks]
    lines = ["| objective | attention | layers | residual | layer | uniform | " + " | ".join(f"step {s}" for s in steps)
             + " | ratio | query topic (first / last) | predicted |",
             "|---|---|---:|---|---:|---:|" + "---:|" * len(steps) + "---|---|---|"]
    for cell in result["cells"]:
        residual = "on" if cell["residual"] else "off" + (f" (init {cell['init_std']:g})" if cell["init_std"] else "")
        for v in cell["verdicts"]:
            lines.append(f"| {cell['objective']} | {cell['attention']} | {cell['n_layers']} | {residual} | "
                         f"{v['layer']} | {_fmt(cell['uniform_ratio'])} | " + " | ".join(_fmt(v["ratios"][i]) for i in picks)
                         + f" | {v['observed']} | {_fmt(v['query_topic'], 2)} / {_fmt(v['query_topic_last'], 2)} | "
                         f"{v['predicted'] or '—'}{'' if v['agrees'] or v['observed'] == 'flat' else ' ✗'} |")
    zero, init = result["summary"]["from_zero"], result["summary"]["random_init"]
    lines += ["", f"Ratio: same-topic over different-topic mean attention on held-out text; uniform: its value "
                  f"under uniform attention (rises / turns: the last ratio above / below the uniform one by more than "
                  f"a factor 1 ± {RATIO_MARGIN}). Query topic: the gradient-weighted alignment of the "
                  f"layer's input at the query with the topic of the query's word (first / last log point); "
                  f"predicted: turns when the query topic carried in the residual stream (0 without the residual) "
                  f"exceeds {CARRIES_TOPIC} at the first log point, else rises. The hypothesis predicts "
                  f"{zero['agree']} of the {zero['moved']} layers whose ratio moved in the cells trained from zero"
                  + (f" (not: {', '.join(zero['disagree'])})" if zero["disagree"] else "")
                  + f", and {init['agree']} of {init['moved']} in those started from a random init"
                  + (f" (not: {', '.join(init['disagree'])})." if init["disagree"] else ".")]
    return "\n".join(lines) + "\n"


def plot_topic_ablation(result: dict, stem) -> list:
    """One panel per cell: the same-topic / different-topic attention ratio per layer over training, the
    gradient-weighted query topic of each layer at the first log point in the legend."""
    from common.plotting import plt, save_figure
    grid = result["cells"]
    columns = 4
    rows = -(-len(grid) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.1 * rows), squeeze=False, sharex=True)
    for ax, cell in zip(axes.flat, grid):
        steps = [entry["step"] for entry in cell["log"]]
        for v in cell["verdicts"]:
            ax.plot(steps, v["ratios"], marker=".", color=f"C{v['layer']}",
                    label=f"layer {v['layer']} (query topic {_fmt(v['query_topic'], 2)})")
        ax.axhline(1.0, color="grey", linewidth=0.6)
        residual = "residual" if cell["residual"] else "no residual" + (
            f", init {cell['init_std']:g}" if cell["init_std"] else "")
        ax.set_title(f"{cell['objective']}, {cell['attention']} attention, {cell['n_layers']} layer"
                     f"{'s' if cell['n_layers'] > 1 else ''}, {residual}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes.flat[len(grid):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("same / different topic")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.suptitle("same-topic over different-topic attention on held-out text (the grid of topic_ablation.py)")
    fig.tight_layout()
    return save_figure(fig, stem)


def summary_lines(result: dict) -> list:
    """What topic_ablation.py prints: the table."""
    return [ablation_markdown(result)]
