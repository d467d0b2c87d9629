"""Head × revision heatmaps of pythia_per_head.py's results: one figure per layer found and, when there are
several layers, a grid over them; revisions ordered by step number, a revision that repeats another one's
weights labelled `step1 (= step0)`, one sharing some tensors with another `(shares 12 tensors with …)`;
PNG and PDF.  Each value is an rsa: the cosine of the two sides' token × token covariance matrices (the
files' `cosine_similarity`).  A results folder of several models gets each model's figures.  Single
process, CPU only.

    python plot_per_head_similarity.py --results_dir=out/pythia
"""
from common.checkpoints.results import model_result_dirs, plot_head_results
from common.config import override
from common.io import exit_on_user_error

results_dir = "out/pythia"   # pythia_per_head.py's --output_dir

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        print("wrote", ", ".join(str(p) for folder in model_result_dirs(results_dir) for p in plot_head_results(folder)))
