"""The embedding measure of Li, Li & Risteski (2023) over checkpoint revisions (topic_embeddings.py,
docs/theory.md §11): binned mean inner product and cosine of the input-embedding rows of single-token words."""

import torch

from common.config import Settings
from common.io import UserError
from common.corpus.lda import read_topic_table
from common.theory.topic_measures import bin_sizes, embedding_measures, pair_bins


# -- topic_embeddings.py ---------------------------------------------------------------------------
def table_of_source(dataset: str, topics: str) -> dict:
    """The word → topics table: `topics` (a JSON file) when given, else the LDA source's own."""
    from common.corpus.lda import parse_source, topic_table
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


class TopicEmbeddingsConfig(Settings, script="topic_embeddings.py"):
    """topic_embeddings.py's settings: its hyperparameter block's names, types and defaults
    (common/config.py `Settings`; the block is the one home of each comment)."""


def run_topic_embeddings(config: TopicEmbeddingsConfig) -> dict:
    """The body of topic_embeddings.py: the binned embedding measure for every revision."""
    from common.checkpoints.loading import CheckpointSource
    from common.io import atomic_directory, write_json
    table = table_of_source(config.dataset, config.topics)
    words = [word for word, word_topics in table.items() if word_topics]
    bins = pair_bins([frozenset(table[word]) for word in words])
    source = CheckpointSource(config.model_name)
    revisions = source.resolve([r.strip() for r in str(config.revisions).split(",") if r.strip()])
    records = []
    for revision in revisions:
        ids = single_token_ids(source.load_tokenizer(revision), words, f"{config.model_name}/{revision}")
        weight = source.load_model(revision).get_input_embeddings().weight
        records.append({"revision": revision, **embedding_measures(weight[torch.tensor(ids)], bins)})
    result = {"model_name": str(config.model_name), "words": len(words), "pairs": bin_sizes(bins),
              "revisions": records}
    with atomic_directory(config.out_dir) as tmp:
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
