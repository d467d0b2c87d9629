"""Layer × revision heatmaps of pythia.py's three similarities (attention, no-MLP, embedding), side
by side, revisions ordered by step number, a revision that repeats an earlier one's weights labelled
`step1 (= step0)`; PNG and PDF.  Each value is an rsa: the cosine of the two sides' token × token
covariance matrices (the files' `cosine_similarity`).  Single process, CPU only.

    python plot_cosine_similarity.py --results_dir=out/pythia
"""
from common.config import override
from common.io import exit_on_user_error
from common.checkpoints.results import plot_layer_results

results_dir = "out/pythia"   # pythia.py's --output_dir
output = ""                  # figure path without suffix; default {results_dir}/cosine_similarity_heatmaps

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        print("wrote", ", ".join(map(str, plot_layer_results(results_dir, output or None))))
