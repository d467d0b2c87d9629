"""Association explorer of a checkpoint comparison: one self-contained page per model,
{output_dir}/explorer.html, for seeing *what* a checkpoint has learnt token by token, revision by
revision (docs/theory.md §6), beside the per-token agreement measure (common/checkpoints/agreement.py).

For the chosen token a of the token set K, at the chosen revision, side by side:
  - next token: B̄ row a (the corpus: what follows a) and the model's p(· | a alone at position 0);
  - attention: Q̄ row a (the keys query a should attend to) and the model's single-token attention
    scores of query a in every layer (head average) and in every head of a per-head run's layer (at the
    revisions that run covered), from the factors of the similarities (common/checkpoints/associations.py).
A masked LM (BERT, docs/theory.md §17) has no next token: its first pair of cards is the fill-in, Φ̄ₘᵀ row a
of the masked statistics (the words whose masked position has a in its context, §16 in expectation over the
corruption) beside the model's prediction at a MASK next to a, p(b | [CLS] a [MASK] [SEP]) read at the MASK
(common/checkpoints/associations.py `fill_in_distribution`: the form of every sequence BERT saw in
pretraining), and its attention cards compare with Q̄ₘ; the agreement measures the same pairs.
Views, as in the tiny explorer (common/tiny/explorer.py): a statistic's row raw, divided by P̂(x=a), or
both; the model's next-token card shows p(b | a) raw and p(b | a) − 1/V normalised (the normalised B̄ is
P̂(b | a) − 1/V); attention scores carry no frequency and read the same in every view.  Every view keeps
each row's order.

The revisions are those with comparison results in the folder (pythia.py's revision_*/matrix_theoretical/,
pythia_per_head.py's revision_*/layer_*/), oldest first, each with the marks revisions.json gives it
(every field but the hashes: duplicate_of, and whatever integrity marks the record carries).
`explorer.html#token=bird&revision=step0&view=raw` selects a token (its exact text, else the most
frequent token of K whose text without surrounding spaces is the one asked: `bird` finds Pythia's
` bird`), a revision (its name or its index, oldest first) and a view.

One offline file, data embedded as top-k partner tables (common/page.py).  The page holds
2 + Σ_revisions (1 + layers + per-head heads) tables of |K| rows; past `max_bytes` only the rows of the
most frequent tokens are kept, and the page says so.  Figures at Pythia's setting: docs/benchmarks.md §10.

Entry point of a comparison run: `write_explorers(config)` (one model, or several models' pages in
{output_dir}/{model}/ and `write_explorer_overview` beside them: their agreement files aggregated into one
record, mean and min–max band, and an index page).
"""
import base64
import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch
from common.progress import progress_bar, write

from common.checkpoints.agreement import (CURVES_STEM, aggregate_agreement, agreement_record, check_k,
                                          dense_values_at, read_agreement, revision_agreement, statistic_rows,
                                          write_agreement)
from common.checkpoints.associations import next_token_counts, next_token_distribution, single_token_attention
from common.checkpoints.comparison import ComparisonConfig, compute_dtype
from common.checkpoints.results import model_folder_name, read_head_results, read_layer_results, read_revision_record
from common.checkpoints.integrity import column_label
from common.checkpoints.revisions import revision_step, sort_revisions
from common.config import Settings
from common.io import UserError
from common.page import ROW_CHUNK, page_html, partner_table, rows_on_page, write_page
from common.theory.association_views import MIN_COUNT, PAGE_VIEWS, check_view, strongest_pairs

EXPLORER_FILE = "explorer.html"
PAGE_FILE = "explorer_page.html"        # the page's own style, markup and script, beside this module (common/page.html wraps it)
INDEX_FILE = "explorer_index.html"      # the several-models overview page
STATISTICS = (("bigram", "B̄", "a → next token (corpus)"), ("attention_map", "Q̄", "query a attends to (corpus)"))
MASKED_STATISTICS = (("bigram", "Φ̄ₘᵀ", "a → the words that fill a MASK in its context (masked statistics)"),
                     ("attention_map", "Q̄ₘ", "query a attends to (masked statistics)"))
MASKED_WORDS = {   # the page's wording for a masked LM (explorer_page.html reads D.words; causal: its defaults)
    "group": "Fill-in — what a MASK beside a is filled with", "statistic": "Φ̄ₘᵀ (corpus, masked)", "symbol": "Φ̄ₘᵀ",
    "model": "model: p(b at [MASK] | [CLS] a [MASK] [SEP])", "sentence": "most probable fill-in of a MASK beside it",
    "column": "partner b", "value": "Φ̄ₘ[b, a] (normalised)", "overlap": "fill-in overlap@",
    "strongest": "Tokens a with the largest Φ̄ₘ[b, a] ÷ P̂(x=a) (the masked statistics' fill-in partners) among "
                 "this page's tokens seen at least"}


# -- what the folder holds ---------------------------------------------------------------------
def compared_revisions(output_dir):
    """(revisions with results, oldest first; {layer: revisions of its per-head results})."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise UserError(f"comparison folder not found: {output_dir}")
    revisions, heads = set(), {}
    try:
        revisions |= set(read_layer_results(output_dir)["attention"])
    except UserError:
        pass
    try:
        heads = {layer: set(by_revision) for layer, by_revision in read_head_results(output_dir).items()}
    except UserError:
        pass
    for covered in heads.values():
        revisions |= covered
    if not revisions:
        raise UserError(f"no comparison results in {output_dir} (revision_*/matrix_theoretical/ or "
                        f"revision_*/layer_*/): run pythia.py or pythia_per_head.py with "
                        f"--output_dir={output_dir} first")
    return sort_revisions(revisions), heads


def revision_marks(record: dict, revisions: list) -> dict:
    """{revision: {mark: shown value}}: every field of revisions.json but the hashes."""
    def shown(value):
        if isinstance(value, dict):
            value = list(value)
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value[:8]] + (["…"] if len(value) > 8 else [])
        return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)

    return {revision: {key: shown(value) for key, value in record.get(revision, {}).items()
                       if "sha256" not in key and "hash" not in key}
            for revision in revisions}


def check_tokenizers(source, revisions: list, tokenizer) -> None:
    """Every revision's tokenizer is the first one's (a token set means one vocabulary)."""
    from common.checkpoints.token_statistics import tokenizer_fingerprint

    expected = tokenizer_fingerprint(tokenizer)
    for revision in revisions[1:]:
        if tokenizer_fingerprint(source.load_tokenizer(revision)) != expected:
            raise UserError(f"revisions disagree: the tokenizer of {revision} is not that of {revisions[0]}, so "
                            f"their vocabularies differ; explore revisions of one model")


def token_texts(tokenizer, token_ids: torch.Tensor) -> list:
    """Each token of K as text (decoded alone: Pythia's ` bird` keeps its space)."""
    return tokenizer.batch_decode([[i] for i in token_ids.tolist()])


# -- sizes -------------------------------------------------------------------------------------
def table_count(n_layers: int, n_heads: int, revisions: list, heads: dict) -> int:
    """Tables on a page: the two statistics, and per revision the next token, each layer, and each head of
    every per-head layer covering it."""
    return 2 + sum(1 + n_layers + n_heads * sum(revision in covered for covered in heads.values())
                   for revision in revisions)


def strongest_on_page(counts, rows: torch.Tensor, n_pairs: int, min_count: int = MIN_COUNT) -> list:
    """common.theory.association_views.strongest_pairs among the page's rows, in K's indices.  B̄ is given to it on the
    columns that hold some row's largest entry only: the strongest pairs are read there, and a |rows| × |K|
    block never stays in memory."""
    chunks = [rows[s:s + ROW_CHUNK] for s in range(0, len(rows), ROW_CHUNK)]
    columns = torch.unique(torch.cat([counts.bigram_rows(chunk).argmax(dim=1) for chunk in chunks]))
    bigram = torch.cat([counts.bigram_rows(chunk)[:, columns] for chunk in chunks])
    view = SimpleNamespace(bigram=bigram, input_frequency=counts.input_frequency[rows],
                           n_positions=counts.n_positions, full_vocab_size=getattr(counts, "full_vocab_size", None))
    return [[int(rows[a]), int(columns[b]), value, count] for a, b, value, count
            in strongest_pairs(view, n_pairs, min_count)]


# -- the page data and the measure ---------------------------------------------------------------
class ExplorerConfig(Settings, script="pythia_explore.py", names=("top", "k", "max_mb", "min_count", "view")):
    """The page's and the measure's settings: pythia_explore.py's own hyperparameters (names, types and
    defaults; common/config.py `Settings`)."""

    def check(self) -> "ExplorerConfig":
        check_view(self.view, "view", PAGE_VIEWS)
        if self.top < 1 or self.min_count < 1 or self.max_mb <= 0:
            raise UserError(f"--top, --min_count and --max_mb must be positive (got {self.top}, {self.min_count}, "
                            f"{self.max_mb})")
        return self


@dataclass
class CorpusSide:
    """What the page and the measure read of the corpus, shared by every model of one tokenizer."""
    tokenizer: str                # the tokenizer's fingerprint
    token_ids: torch.Tensor       # K
    attention_map: torch.Tensor   # Q̄ over K (on the compute device)
    counts: object                # common.checkpoints.associations.NextTokenCounts


def corpus_side(config: ComparisonConfig, tokenizer, full_vocab_size: int, device, log=write,
                objective: str = "causal") -> CorpusSide:
    """Q̄ from the comparison's statistics cache (computed when absent) and the next-token counts (cached beside);
    for a masked LM, Q̄ₘ and Φ̄ₘᵀ from its masked statistics (common/checkpoints/associations.py FillInPartners)."""
    from common.checkpoints.associations import FillInPartners
    from common.checkpoints.token_statistics import load_or_compute_statistics, tokenizer_fingerprint

    masked = objective == "masked"
    statistics = load_or_compute_statistics(
        tokenizer, dataset=config.dataset, n_examples=config.n_examples, seq_len=config.max_seq_len,
        top_tokens=config.top_tokens, full_vocab_size=full_vocab_size, cache_dir=config.cache_dir,
        device=device, dtype=compute_dtype(device), chunk_size=config.chunk_size,
        max_unknown_rate=config.max_unknown_rate, log=log, objective=objective, context=masked)
    token_ids = statistics["token_ids"].cpu()
    if masked:
        partners = FillInPartners(token_ids, statistics["context"].T, statistics["input_counts"].cpu(),
                                  int(statistics["input_positions"]), full_vocab_size)
        return CorpusSide(tokenizer_fingerprint(tokenizer), token_ids, statistics["attention_map"], partners)
    counts = next_token_counts(tokenizer, dataset=config.dataset, n_examples=config.n_examples,
                               seq_len=config.max_seq_len, token_ids=token_ids, full_vocab_size=full_vocab_size,
                               cache_dir=config.cache_dir, log=log)
    return CorpusSide(tokenizer_fingerprint(tokenizer), token_ids, statistics["attention_map"], counts)


def checkpoint_explorer(config: ComparisonConfig, options: Optional[ExplorerConfig] = None, corpus=None,
                        log=write):
    """(page data, agreement record, corpus side) of one model's comparison folder `config.output_dir`, from its
    checkpoints (`config.model_name`) and its corpus (`corpus`, or the comparison's cache)."""
    from common.checkpoints.architectures import architecture_for
    from common.checkpoints.associations import fill_in_distribution
    from common.checkpoints.loading import CheckpointSource, single_token_representations
    from common.checkpoints.token_statistics import tokenizer_fingerprint
    from common.device import configure_numerics, resolve_device

    options = (options or ExplorerConfig()).check()   # None: pythia_explore.py's defaults
    top, min_count = options.top, options.min_count
    output_dir = Path(config.output_dir)
    revisions, heads = compared_revisions(output_dir)
    marks = revision_marks(read_revision_record(output_dir), revisions)
    device = resolve_device(config.device)
    configure_numerics(config.deterministic)
    source = CheckpointSource(config.model_name)
    revisions = source.resolve(revisions)
    model_config = source.check_revisions(revisions)
    tokenizer = source.load_tokenizer(revisions[0])
    check_tokenizers(source, revisions, tokenizer)
    masked = architecture_for(model_config).objective == "masked"
    if corpus is None:
        corpus = corpus_side(config, tokenizer, model_config.vocab_size, device, log,
                             architecture_for(model_config).objective)
    elif corpus.tokenizer != tokenizer_fingerprint(tokenizer):
        raise UserError(f"{config.model_name} has another tokenizer than the models before it: explore models "
                        f"of one tokenizer together")
    token_ids, attention_map, counts = corpus.token_ids, corpus.attention_map, corpus.counts
    K = len(token_ids)
    k = check_k(options.k, K)
    measured = torch.nonzero(counts.input_counts >= min_count).flatten()
    next_statistic = statistic_rows(counts.bigram, counts.bigram_at, measured, k)
    attention_statistic = statistic_rows(attention_map, dense_values_at(attention_map), measured, k)

    # the page's rows: every token of K, or the most frequent that fit
    vocabulary = token_texts(tokenizer, token_ids)
    n_layers, n_heads = model_config.num_hidden_layers, model_config.num_attention_heads
    n_tables = table_count(n_layers, n_heads, revisions, heads)
    # token texts, ids and frequencies, the curves image and the agreement record beside the tables
    fixed = len(json.dumps(vocabulary, ensure_ascii=False).encode()) + 30 * K + 400_000
    max_bytes = int(options.max_mb * 1e6)
    n_rows, notes = rows_on_page(K, n_tables, top, fixed, max_bytes, "tokens of K", "lower --top or --top_tokens")
    rows = counts.input_counts.argsort(descending=True, stable=True)[:n_rows].sort().values

    biases = getattr(config, "attention_bias", False)
    pages, measures = [], {}
    for revision in progress_bar(revisions, desc="explorer: revisions"):
        model = source.load_model(revision)
        if int(token_ids.max()) >= model.config.vocab_size:
            raise UserError(f"revision {revision} has a vocabulary of {model.config.vocab_size} tokens but the "
                            f"token set uses id {int(token_ids.max())}: the revisions do not share one vocabulary")
        model = model.to(device)
        representations = single_token_representations(model, token_ids, config.batch_size)
        model_next = (fill_in_distribution(model, tokenizer, token_ids) if masked
                      else next_token_distribution(model, token_ids))
        attention, head_tables = [], []

        def layers():   # one layer's factors at a time: its tables, then its measure
            for layer in range(n_layers):
                scores = single_token_attention(model, representations, layer,
                                                with_heads=revision in heads.get(layer, ()), biases=biases)
                attention.append({"layer": layer, "table": partner_table(scores.mean, rows, top)})
                head_tables.extend({"layer": layer, "head": h, "table": partner_table(s, rows, top)}
                                   for h, s in enumerate(scores.heads))
                yield scores

        measures[revision] = revision_agreement(next_statistic, attention_statistic, model_next, layers(), k)
        pages.append({"name": revision, "step": revision_step(revision), "marks": marks[revision],
                      "next_token": partner_table(model_next, rows, top), "attention": attention,
                      "heads": head_tables})
        del model, representations, model_next
    record = agreement_record(next_statistic, attention_statistic, k, min_count, measures,
                              "masked" if masked else "causal", counts.input_counts)
    strongest = strongest_on_page(counts, rows, 40, min_count)
    by_frequency = counts.input_counts.argsort(descending=True, stable=True)
    data = {"title": str(config.model_name), "model_name": str(config.model_name),
            "n_tokens": K, "vocab_size": K, "full_vocab_size": model_config.vocab_size,
            "vocabulary": vocabulary, "token_ids": token_ids.tolist(),
            "frequency": [float(f"{f:.6g}") for f in counts.input_frequency.tolist()],
            "n_positions": counts.n_positions, "top": top, "view": options.view, "views": PAGE_VIEWS,
            "rows": None if n_rows == K else rows.tolist(), "notes": notes, "min_count": min_count,
            "n_layers": n_layers, "n_heads": n_heads,
            "statistics": [{"field": field, "symbol": symbol, "reads": reads,
                            "table": partner_table(matrix, rows, top)}
                           for (field, symbol, reads), matrix in zip(MASKED_STATISTICS if masked else STATISTICS,
                                                                     (counts.bigram, attention_map))],
            **({"words": MASKED_WORDS, "objective": "masked"} if masked else {}),
            "revisions": pages, "agreement": record, "strongest": strongest,
            "default_token": vocabulary[strongest[0][0] if strongest else int(by_frequency[0])]}
    return data, record, corpus


def _png_data_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def explorer_page(data: dict) -> str:
    """The HTML page (explorer_page.html) with the data embedded."""
    return page_html(__package__, PAGE_FILE, data, f"Association explorer — {data['title']}")


def _write(output_dir, data: dict, record: dict) -> list:
    output_dir = Path(output_dir)
    marks = read_revision_record(output_dir)
    labels = [column_label(revision, marks) for revision in record["revisions"]]
    paths = write_agreement(output_dir, record, labels)
    data["curves"] = _png_data_uri(output_dir / f"{CURVES_STEM}.png")
    return [write_page(output_dir / EXPLORER_FILE, explorer_page(data))] + paths


def write_checkpoint_explorer(config: ComparisonConfig, options: Optional[ExplorerConfig] = None,
                              log=write) -> list:
    """{output_dir}/explorer.html, association_agreement.json and its curves (PNG, PDF) for one model's
    comparison folder `config.output_dir`; returns the paths."""
    data, record, _ = checkpoint_explorer(config, options, log=log)
    return _write(config.output_dir, data, record)


def write_explorers(config: ComparisonConfig, options: Optional[ExplorerConfig] = None, log=write) -> list:
    """The explorers of a comparison run, as pythia.py and pythia_per_head.py lay it out: one model in
    `config.output_dir`, or several (`--model_name` a comma list or a brace range) in
    {output_dir}/{model}/ with the overview beside them (`write_explorer_overview`).  Every model's folder is
    checked before any page is written; the corpus side is read once.  Returns the paths written."""
    from common.checkpoints.loading import expand_model_names

    names = expand_model_names(config.model_name)
    if len(names) == 1:
        return write_checkpoint_explorer(config, options, log)
    configs = [replace(config, model_name=name, output_dir=str(Path(config.output_dir) / model_folder_name(name)))
               for name in names]
    for one in configs:
        compared_revisions(one.output_dir)
    paths, corpus = [], None
    for one in configs:
        data, record, corpus = checkpoint_explorer(one, options, corpus, log)
        paths += _write(one.output_dir, data, record)
    return paths + write_explorer_overview([one.output_dir for one in configs], config.output_dir)


# -- several models ------------------------------------------------------------------------------
def write_explorer_overview(model_dirs, output_dir, title: str = "") -> list:
    """For several models (seeds) whose explorers are written: their agreement aggregated (mean, min–max
    band) in {output_dir}/association_agreement.json and its curves, and {output_dir}/explorer.html
    linking to each model's page beside the aggregate table."""
    output_dir = Path(output_dir).resolve()
    model_dirs = [Path(d).resolve() for d in model_dirs]
    if output_dir in model_dirs:
        raise UserError(f"the overview of several models goes beside their folders, not into one of them "
                        f"({output_dir})")
    names = [str(d.relative_to(output_dir)) if d.is_relative_to(output_dir) else str(d) for d in model_dirs]
    if len(set(names)) < len(names):
        raise UserError(f"a model folder is named twice: {', '.join(names)}")
    records = {name: read_agreement(folder) for name, folder in zip(names, model_dirs)}
    for folder in model_dirs:
        if not (folder / EXPLORER_FILE).is_file():
            raise UserError(f"{folder / EXPLORER_FILE} not found: write each model's explorer first")
    aggregated = aggregate_agreement(records)
    paths = write_agreement(output_dir, aggregated)
    # a folder below the overview is linked relatively (the pages move together), any other by its file URI
    hrefs = [f"{name}/{EXPLORER_FILE}" if folder.is_relative_to(output_dir) else (folder / EXPLORER_FILE).as_uri()
             for name, folder in zip(names, model_dirs)]
    data = {"title": title or output_dir.name, "models": [{"name": n, "href": h} for n, h in zip(names, hrefs)],
            "agreement": aggregated, "curves": _png_data_uri(output_dir / f"{CURVES_STEM}.png")}
    page = page_html(__package__, INDEX_FILE, data, f"Association explorer — {data['title']}")
    return [write_page(output_dir / EXPLORER_FILE, page)] + paths


# -- the settings of an existing comparison ----------------------------------------------------------
CONFIG_FILE = "pythia_config.json"   # pythia.py's settings, written at its end


def comparison_settings(output_dir, settings: dict) -> ComparisonConfig:
    """The comparison's settings for the folder: those saved in {output_dir}/pythia_config.json, except
    the ones given on the command line (`settings["_explicit"]`, common.config.override)."""
    from common.io import read_json

    path = Path(output_dir) / CONFIG_FILE
    explicit = set(settings.get("_explicit", ()))
    if path.is_file():
        saved = read_json(path, "comparison settings")
        settings = dict(settings, **{key: value for key, value in saved.items() if key not in explicit})
    elif "model_name" not in explicit:
        raise UserError(f"{path} not found (pythia.py writes it at its end): pass the comparison's settings — "
                        f"--model_name, --dataset, --n_examples, --max_seq_len, --top_tokens, --cache_dir as it ran")
    return ComparisonConfig.from_settings(dict(settings, output_dir=str(output_dir)))
