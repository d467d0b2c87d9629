"""Head × revision heatmaps of pythia_per_head.py's results: one figure per layer found and a grid
over the layers; revisions ordered by step number; PNG and PDF.  Single process, CPU only.

    python plot_per_head_similarity.py --results_dir=out/pythia
"""
from common.comparison import plot_head_heatmaps, read_head_results
from common.config import override
from common.io import exit_on_user_error

results_dir = "out/pythia"   # pythia_per_head.py's --output_dir

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        results = read_head_results(results_dir)
        paths = []
        for layer, by_revision in results.items():
            paths += plot_head_heatmaps({layer: by_revision}, f"{results_dir}/per_head_layer_{layer}")
        paths += plot_head_heatmaps(results, f"{results_dir}/per_head_grid")
        print("wrote", ", ".join(map(str, paths)))
