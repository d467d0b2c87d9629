"""The result files of the checkpoint comparisons (docs/theory.md §6, §12) and their heatmaps: written by
common/checkpoints/comparison.py, read by the plot scripts, which import this module without the comparison engine.

What the files hold: each value is an rsa (docs/theory.md §4) — the cosine of the two sides' token × token
covariance matrices (row-centred, theory side row-normalised) — stored under the release's key
`cosine_similarity`; it is not a cosine of the raw matrices.

Layout (the release's, revisions named by their family's convention):
  {output_dir}/revision_{revision}/matrix_theoretical/attention_comparison_summary.json   (attention)
  {output_dir}/revision_{revision}/matrix_theoretical/cosine_similarity_summary_mids.json (no-MLP)
  {output_dir}/revision_{revision}/matrix_theoretical/cosine_similarity_summary.json      (embedding)
      each {"layer_0": {"cosine_similarity": …}, …}
  {output_dir}/revision_{revision}/layer_{L}/per_head_results.json
      {"head_0": {"cosine_similarity": …, "head_idx": 0}, …}
  {output_dir}/per_head_layer_{L}.json        every revision's per-head results of layer L
  {output_dir}/revisions.json                 {"step1": {"weights_sha256": …, "duplicate_of": "step0"}, …}
Each revision's folder is written under a temporary name and renamed: complete or absent.
"""
import re
from pathlib import Path

from common.io import UserError, atomic_directory, read_json, write_json
from common.checkpoints.revisions import column_label, mark_duplicates, parse_revision, sort_revisions
from common.theory.weight_kinds import MODEL_SIMILARITIES

KINDS = tuple(s.name for s in MODEL_SIMILARITIES)
SUMMARY_FILES = {s.name: s.summary_file for s in MODEL_SIMILARITIES}
TITLES = {s.name: s.title for s in MODEL_SIMILARITIES}
RSA_MEANS = "rsa = cosine of the two sides' token × token covariances; files: cosine_similarity"
REVISIONS_FILE = "revisions.json"


# ---------------------------------------------------------------------------------------------
# writing
def write_layer_results(output_dir, revision: str, results: list) -> None:
    """One revision's three summaries from [{attention, no_mlp, embedding} per layer]."""
    with atomic_directory(Path(output_dir) / f"revision_{revision}" / "matrix_theoretical") as folder:
        for kind, name in SUMMARY_FILES.items():
            write_json(folder / name, {f"layer_{l}": {"cosine_similarity": r[kind]} for l, r in enumerate(results)})


def write_head_results(output_dir, revision: str, layer: int, values: list) -> None:
    with atomic_directory(Path(output_dir) / f"revision_{revision}" / f"layer_{layer}") as folder:
        write_json(folder / "per_head_results.json",
                   {f"head_{h}": {"cosine_similarity": v, "head_idx": h} for h, v in enumerate(values)})


def write_head_summary(output_dir, layer: int) -> Path:
    """{output_dir}/per_head_layer_{L}.json: every revision's per-head results of the layer, from their files."""
    by_revision = read_head_results(output_dir)[layer]
    path = Path(output_dir) / f"per_head_layer_{layer}.json"
    write_json(path, {revision: {f"head_{h}": {"cosine_similarity": v, "head_idx": h} for h, v in enumerate(values)}
                      for revision, values in by_revision.items()})
    return path


def read_revision_record(output_dir) -> dict:
    """{revision: {"weights_sha256", "duplicate_of"?}} from revisions.json ({} when absent)."""
    path = Path(output_dir) / REVISIONS_FILE
    return read_json(path, "revision record") if path.is_file() else {}


def record_revision_hash(output_dir, revision: str, digest: str) -> dict:
    """Add (or replace) one revision's weight hash in revisions.json, re-marking duplicates; returns its entry."""
    record = read_revision_record(output_dir)
    record[revision] = {"weights_sha256": digest}
    record = mark_duplicates(record)
    write_json(Path(output_dir) / REVISIONS_FILE, record)
    return record[revision]


# ---------------------------------------------------------------------------------------------
# reading
def _revision_folders(results_dir):
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results folder not found: {results_dir}")
    folders = {p.name[len("revision_"):]: p for p in results_dir.iterdir()
               if p.is_dir() and p.name.startswith("revision_") and parse_revision(p.name[len("revision_"):])}
    return {revision: folders[revision] for revision in sort_revisions(folders)}


def read_layer_results(results_dir) -> dict:
    """{kind: {revision: [value per layer]}} from pythia.py's output, revisions by step number."""
    results = {kind: {} for kind in KINDS}
    for revision, folder in _revision_folders(results_dir).items():
        if not (folder / "matrix_theoretical").is_dir():
            continue
        for kind, name in SUMMARY_FILES.items():
            summary = read_json(folder / "matrix_theoretical" / name, "summary")
            results[kind][revision] = [summary[f"layer_{l}"]["cosine_similarity"] for l in range(len(summary))]
    if not results["attention"]:
        raise UserError(f"no pythia.py results under {results_dir} (revision_*/matrix_theoretical/)")
    return results


def read_head_results(results_dir) -> dict:
    """{layer: {revision: [value per head]}} from pythia_per_head.py's output, revisions by step number."""
    results = {}
    for revision, folder in _revision_folders(results_dir).items():
        for layer_folder in sorted(folder.glob("layer_*")):
            if not re.fullmatch(r"layer_\d+", layer_folder.name):
                continue
            heads = read_json(layer_folder / "per_head_results.json", "per-head results")
            layer = int(layer_folder.name[len("layer_"):])
            results.setdefault(layer, {})[revision] = [heads[f"head_{h}"]["cosine_similarity"]
                                                       for h in range(len(heads))]
    if not results:
        raise UserError(f"no pythia_per_head.py results under {results_dir} (revision_*/layer_*/)")
    return dict(sorted(results.items()))


# ---------------------------------------------------------------------------------------------
# heatmaps
def _matrix(by_revision: dict, record: dict):
    """[rows × revisions] array and the column labels (a repeated revision says which one it repeats)."""
    import numpy as np

    revisions = list(by_revision)
    values = np.array([by_revision[r] for r in revisions], dtype=float).T
    return values, [column_label(r, record) for r in revisions]


def plot_layer_heatmaps(results: dict, stem, record=None):
    """Three layer × revision heatmaps side by side (titles from common.theory.weight_kinds.MODEL_SIMILARITIES)."""
    from common.plotting import heatmap_grid

    panels = []
    for kind in KINDS:
        values, labels = _matrix(results[kind], record or {})
        panels.append((TITLES[kind], values, [str(l) for l in range(values.shape[0])], labels))
    return heatmap_grid(panels, stem, ncols=3, xlabel="revision", ylabel="layer",
                        title=f"rsa with the leading-term matrices ({RSA_MEANS})")


def plot_head_heatmaps(results: dict, stem, record=None):
    """One head × revision heatmap per layer of `results` ({layer: {revision: [per head]}}), in a grid."""
    from common.plotting import heatmap_grid

    attention = TITLES["attention"]
    panels = []
    for layer, by_revision in results.items():
        values, labels = _matrix(by_revision, record or {})
        panels.append((f"layer {layer}", values, [str(h) for h in range(values.shape[0])], labels))
    return heatmap_grid(panels, stem, xlabel="revision", ylabel="head",
                        title=f"per-head {attention}, one head's $W_Q^h W_K^{{h\\top}}$ ({RSA_MEANS})")


def plot_layer_results(results_dir, stem=None) -> list:
    """{results_dir}/cosine_similarity_heatmaps (or `stem`) from pythia.py's results."""
    return plot_layer_heatmaps(read_layer_results(results_dir), stem or Path(results_dir) / "cosine_similarity_heatmaps",
                               read_revision_record(results_dir))


def plot_head_results(results_dir, layer=None) -> list:
    """per_head_layer_{L} for every layer found (or only `layer`), and per_head_grid over all of them."""
    record = read_revision_record(results_dir)
    heads = read_head_results(results_dir)
    if layer is not None:
        return plot_head_heatmaps({layer: heads[layer]}, Path(results_dir) / f"per_head_layer_{layer}", record)
    paths = []
    for found, by_revision in heads.items():
        paths += plot_head_heatmaps({found: by_revision}, Path(results_dir) / f"per_head_layer_{found}", record)
    return paths + plot_head_heatmaps(heads, Path(results_dir) / "per_head_grid", record)
