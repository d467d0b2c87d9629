"""The result files of the checkpoint comparisons (docs/theory.md §6, §12, §15) and their heatmaps: written by
common/checkpoints/suite.py, read by the plot scripts (and the explorer), which import this module without the
comparison engine.

What the files hold: each value is an rsa (docs/theory.md §4) — the cosine of the two sides' token × token
covariance matrices (row-centred, theory side row-normalised) — stored under the release's key
`cosine_similarity`; it is not a cosine of the raw matrices.

Layout of one model's results (the release's, revisions named by their family's convention):
  {output_dir}/revision_{revision}/matrix_theoretical/attention_comparison_summary.json   (attention)
  {output_dir}/revision_{revision}/matrix_theoretical/cosine_similarity_summary_mids.json (no-MLP)
  {output_dir}/revision_{revision}/matrix_theoretical/cosine_similarity_summary.json      (embedding)
      each {"layer_0": {"cosine_similarity": …}, …}
  {output_dir}/revision_{revision}/matrix_theoretical/provenance.json
      {"weights_sha256": …, "settings": {…}}: what the results were computed from (a rerun with the same
      weights and settings skips the revision)
  {output_dir}/revision_{revision}/layer_{L}/per_head_results.json
      {"head_0": {"cosine_similarity": …, "head_idx": 0}, …}, with its provenance.json beside it
  {output_dir}/per_head_layer_{L}.json        every revision's per-head results of layer L
  {output_dir}/integrity/{revision}.json      {"weights_sha256": …, "tensors": {name: sha256}, "buffers": […]}
  {output_dir}/revisions.json                 per revision: weights_sha256, and when it applies duplicate_of,
                                              identical_to, shares_tensors_with ({revision: [tensor names]}),
                                              reference (common/checkpoints/integrity.py)
Each revision's result folder is written under a temporary name and renamed: complete or absent.
Several models (seeds): each model's results as above under {output_dir}/{model}/, and the aggregate
beside them (common/checkpoints/aggregate.py).
"""
import re
from pathlib import Path

from common.checkpoints.integrity import column_label
from common.checkpoints.revisions import parse_revision, sort_revisions
from common.io import UserError, atomic_directory, read_json, write_json
from common.theory.weight_kinds import MODEL_SIMILARITIES

KINDS = tuple(s.name for s in MODEL_SIMILARITIES)
SUMMARY_FILES = {s.name: s.summary_file for s in MODEL_SIMILARITIES}
TITLES = {s.name: s.title for s in MODEL_SIMILARITIES}
RSA_MEANS = "rsa = cosine of the two sides' token × token covariances; files: cosine_similarity"
REVISIONS_FILE = "revisions.json"
PROVENANCE_FILE = "provenance.json"
INTEGRITY_FOLDER = "integrity"
LAYER_FOLDER = "matrix_theoretical"


def layer_folder(output_dir, revision: str) -> Path:
    return Path(output_dir) / f"revision_{revision}" / LAYER_FOLDER


def head_folder(output_dir, revision: str, layer: int) -> Path:
    return Path(output_dir) / f"revision_{revision}" / f"layer_{layer}"


# ---------------------------------------------------------------------------------------------
# writing
def write_layer_results(output_dir, revision: str, results: list, provenance: dict) -> None:
    """One revision's three summaries from [{attention, no_mlp, embedding} per layer], and what they came from."""
    with atomic_directory(layer_folder(output_dir, revision)) as folder:
        for kind, name in SUMMARY_FILES.items():
            write_json(folder / name, {f"layer_{l}": {"cosine_similarity": r[kind]} for l, r in enumerate(results)})
        write_json(folder / PROVENANCE_FILE, provenance)


def write_head_results(output_dir, revision: str, layer: int, values: list, provenance: dict) -> None:
    with atomic_directory(head_folder(output_dir, revision, layer)) as folder:
        write_json(folder / "per_head_results.json",
                   {f"head_{h}": {"cosine_similarity": v, "head_idx": h} for h, v in enumerate(values)})
        write_json(folder / PROVENANCE_FILE, provenance)


def results_match(folder: Path, provenance: dict) -> bool:
    """The folder holds complete results computed from these weights with these settings."""
    path = folder / PROVENANCE_FILE
    return path.is_file() and read_json(path, "provenance") == provenance


def remove_stale_temporaries(output_dir) -> list:
    """Remove what a killed run left under temporary names (common/io.py writes `.{name}.{random}.tmp` and
    renames it into place): a resumed run then ends with exactly an uninterrupted run's files."""
    import shutil

    output_dir = Path(output_dir)
    folders = [output_dir, output_dir / INTEGRITY_FOLDER] + sorted(output_dir.glob("revision_*"))
    stale = [p for folder in folders if folder.is_dir() for p in folder.iterdir()
             if p.name.startswith(".") and p.name.endswith(".tmp")]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return stale


def write_head_summary(output_dir, layer: int) -> Path:
    """{output_dir}/per_head_layer_{L}.json: every revision's per-head results of the layer, from their files."""
    by_revision = read_head_results(output_dir)[layer]
    path = Path(output_dir) / f"per_head_layer_{layer}.json"
    write_json(path, {revision: {f"head_{h}": {"cosine_similarity": v, "head_idx": h} for h, v in enumerate(values)}
                      for revision, values in by_revision.items()})
    return path


def write_tensor_hashes(output_dir, revision: str, hashes: dict, buffers=(), weights_sha256: str = "") -> None:
    write_json(Path(output_dir) / INTEGRITY_FOLDER / f"{revision}.json",
               {"weights_sha256": weights_sha256, "tensors": hashes, "buffers": list(buffers)})


def read_tensor_hashes(output_dir) -> dict:
    """{revision: {"weights_sha256", "tensors", "buffers"}} of every revision hashed into this folder."""
    folder = Path(output_dir) / INTEGRITY_FOLDER
    if not folder.is_dir():
        return {}
    return {path.stem: read_json(path, "tensor hashes") for path in sorted(folder.glob("*.json"))}


def write_revision_record(output_dir, record: dict) -> Path:
    path = Path(output_dir) / REVISIONS_FILE
    write_json(path, record)
    return path


def read_revision_record(output_dir) -> dict:
    """{revision: {"weights_sha256", …}} from revisions.json ({} when absent)."""
    path = Path(output_dir) / REVISIONS_FILE
    return read_json(path, "revision record") if path.is_file() else {}


def model_folder_name(name: str) -> str:
    """A model's results folder among several: the last component of its name (hub name or path), less a
    revision template's `{revision}` and the word before it (`multiberts-seed_0-step_{revision}` →
    `multiberts-seed_0`)."""
    last = Path(str(name).rstrip("/")).name
    return re.sub(r"[-_.]?[A-Za-z]*[-_.]?\{revision\}", "", last) or last


# ---------------------------------------------------------------------------------------------
# reading
def model_result_dirs(results_dir) -> list:
    """The folders holding one model's results: `results_dir` itself, or (several models) its sub-folders
    that hold revision_* folders."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results folder not found: {results_dir}")
    holds = lambda folder: any(p.is_dir() and p.name.startswith("revision_") for p in folder.iterdir())
    if holds(results_dir):
        return [results_dir]
    return sorted(p for p in results_dir.iterdir() if p.is_dir() and holds(p)) or [results_dir]


def _revision_folders(results_dir):
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results folder not found: {results_dir}")
    folders = {p.name[len("revision_"):]: p for p in results_dir.iterdir()
               if p.is_dir() and p.name.startswith("revision_") and parse_revision(p.name[len("revision_"):])}
    return {revision: folders[revision] for revision in sort_revisions(folders)}


def read_layer_summaries(folder: Path) -> list:
    """[{attention, no_mlp, embedding} per layer] of one revision's matrix_theoretical folder."""
    summaries = {kind: read_json(folder / name, "summary") for kind, name in SUMMARY_FILES.items()}
    layers = len(summaries["attention"])
    return [{kind: summaries[kind][f"layer_{l}"]["cosine_similarity"] for kind in KINDS} for l in range(layers)]


def read_head_values(folder: Path) -> list:
    heads = read_json(folder / "per_head_results.json", "per-head results")
    return [heads[f"head_{h}"]["cosine_similarity"] for h in range(len(heads))]


def read_layer_results(results_dir) -> dict:
    """{kind: {revision: [value per layer]}} from pythia.py's output, revisions by step number."""
    results = {kind: {} for kind in KINDS}
    for revision, folder in _revision_folders(results_dir).items():
        if not (folder / LAYER_FOLDER).is_dir():
            continue
        for layer in read_layer_summaries(folder / LAYER_FOLDER):
            for kind in KINDS:
                results[kind].setdefault(revision, []).append(layer[kind])
    if not results["attention"]:
        raise UserError(f"no pythia.py results under {results_dir} (revision_*/matrix_theoretical/)")
    return results


def read_head_results(results_dir) -> dict:
    """{layer: {revision: [value per head]}} from pythia_per_head.py's output, revisions by step number."""
    results = {}
    for revision, folder in _revision_folders(results_dir).items():
        for layer_folder_ in sorted(folder.glob("layer_*")):
            if re.fullmatch(r"layer_\d+", layer_folder_.name):
                layer = int(layer_folder_.name[len("layer_"):])
                results.setdefault(layer, {})[revision] = read_head_values(layer_folder_)
    if not results:
        raise UserError(f"no pythia_per_head.py results under {results_dir} (revision_*/layer_*/)")
    return dict(sorted(results.items()))


# ---------------------------------------------------------------------------------------------
# heatmaps
def _matrix(by_revision: dict, record: dict):
    """[rows × revisions] array and the column labels (a revision repeating or sharing another one's
    weights says which, common/checkpoints/integrity.py)."""
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

    panels = []
    for layer, by_revision in results.items():
        values, labels = _matrix(by_revision, record or {})
        panels.append((f"layer {layer}", values, [str(h) for h in range(values.shape[0])], labels))
    return heatmap_grid(panels, stem, xlabel="revision", ylabel="head",
                        title=f"per-head attention: one head's own scores $q_h k_h^\\top$ vs $\\bar Q$ ({RSA_MEANS})")


def plot_layer_results(results_dir, stem=None) -> list:
    """{results_dir}/cosine_similarity_heatmaps (or `stem`) from pythia.py's results."""
    return plot_layer_heatmaps(read_layer_results(results_dir), stem or Path(results_dir) / "cosine_similarity_heatmaps",
                               read_revision_record(results_dir))


def plot_head_results(results_dir, layer=None) -> list:
    """per_head_layer_{L} for every layer found (or only `layer`), and per_head_grid over all of them when
    there are several (with one layer the grid would repeat that layer's figure)."""
    record = read_revision_record(results_dir)
    heads = read_head_results(results_dir)
    if layer is not None:
        if layer not in heads:
            raise UserError(f"no per-head results of layer {layer} under {results_dir} (it has layers "
                            f"{', '.join(map(str, heads))})")
        return plot_head_heatmaps({layer: heads[layer]}, Path(results_dir) / f"per_head_layer_{layer}", record)
    paths = []
    for found, by_revision in heads.items():
        paths += plot_head_heatmaps({found: by_revision}, Path(results_dir) / f"per_head_layer_{found}", record)
    if len(heads) > 1:
        paths += plot_head_heatmaps(heads, Path(results_dir) / "per_head_grid", record)
    return paths
