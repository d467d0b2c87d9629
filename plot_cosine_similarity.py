"""Layer × revision heatmaps of pythia.py's three similarities (attention, no-MLP, embedding), side
by side, revisions ordered by step number; PNG and PDF.  Single process, CPU only.

    python plot_cosine_similarity.py --results_dir=out/pythia
"""
from common.comparison import plot_layer_heatmaps, read_layer_results
from common.config import override
from common.io import exit_on_user_error

results_dir = "out/pythia"   # pythia.py's --output_dir
output = ""                  # figure path without suffix; default {results_dir}/cosine_similarity_heatmaps

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        paths = plot_layer_heatmaps(read_layer_results(results_dir),
                                    output or f"{results_dir}/cosine_similarity_heatmaps")
        print("wrote", ", ".join(map(str, paths)))
