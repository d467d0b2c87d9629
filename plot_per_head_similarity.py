"""Head × revision heatmaps of pythia_per_head.py's results: one figure per layer found and a grid
over the layers; revisions ordered by step number, a revision that repeats an earlier one's weights
labelled `step1 (= step0)`; PNG and PDF.  Each value is an rsa: the cosine of the two sides' token ×
token covariance matrices (the files' `cosine_similarity`).  Single process, CPU only.

    python plot_per_head_similarity.py --results_dir=out/pythia
"""
from common.config import override
from common.io import exit_on_user_error
from common.checkpoints.results import plot_head_results

results_dir = "out/pythia"   # pythia_per_head.py's --output_dir

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        print("wrote", ", ".join(map(str, plot_head_results(results_dir))))
