"""Layer × revision heatmaps of pythia.py's three similarities (attention, no-MLP, embedding), side
by side, revisions ordered by step number, a revision that repeats another one's weights labelled
`step1 (= step0)` and one sharing some tensors with another `(shares 12 tensors with step143000)`; PNG
and PDF.  Each value is an rsa: the cosine of the two sides' token × token covariance matrices (the
files' `cosine_similarity`).  A results folder of several models (seeds) gets each model's heatmaps
and the aggregate's two figures again (mean and interval width; curves with a band).  Single process,
CPU only.

    python plot_cosine_similarity.py --results_dir=out/pythia
"""
from pathlib import Path

from common.checkpoints.aggregate import plot_aggregate_results
from common.checkpoints.results import model_result_dirs, plot_layer_results
from common.config import override
from common.io import exit_on_user_error

results_dir = "out/pythia"   # pythia.py's --output_dir
output = ""                  # figure path without suffix (one model); default {results_dir}/cosine_similarity_heatmaps

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        folders = model_result_dirs(results_dir)
        paths = [p for folder in folders for p in plot_layer_results(folder, (output or None) if len(folders) == 1
                                                                     else None)]
        if (Path(results_dir) / "aggregate.json").is_file():
            paths += plot_aggregate_results(results_dir)
        print("wrote", ", ".join(map(str, paths)))
