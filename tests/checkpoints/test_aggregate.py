"""The aggregate over seeds: Student's t quantiles against their closed forms, the interval against its
definition, and aggregate.json over result folders of which one lacks a revision."""
import math
import statistics

import pytest

from common.checkpoints.aggregate import (aggregate_layer_results, interval, plot_aggregate_results, t_cdf,
                                          t_quantile, write_aggregate)
from common.checkpoints.results import KINDS, model_result_dirs, write_layer_results

PROVENANCE = {"weights_sha256": "-", "settings": {}}


def test_t_quantiles_equal_their_closed_forms():
    for p in (0.9, 0.975, 0.995):
        # one degree of freedom is Cauchy: t = tan(π(p − ½)); two: t = α √(2 / (1 − α²)), α = 2p − 1
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        alpha = 2 * p - 1
        assert t_quantile(p, 2) == pytest.approx(alpha * math.sqrt(2 / (1 - alpha ** 2)), rel=1e-9)
        # many degrees of freedom: the normal quantile
        assert t_quantile(p, 100000) == pytest.approx(statistics.NormalDist().inv_cdf(p), rel=1e-4)
    assert t_cdf(0.0, 5) == 0.5 and t_cdf(-1.3, 3) == pytest.approx(1 - t_cdf(1.3, 3), abs=1e-15)
    assert t_quantile(0.975, 8) > t_quantile(0.975, 9) > statistics.NormalDist().inv_cdf(0.975)


def test_interval_is_mean_plus_minus_t_times_standard_error():
    values = [0.2, 0.5, 0.35]
    got = interval(values)
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2)) * std / math.sqrt(3)     # t(0.975, 2) in closed form
    assert got["mean"] == pytest.approx(mean) and got["std"] == pytest.approx(std) and got["n"] == 3
    assert got["ci95"] == pytest.approx([mean - half, mean + half], rel=1e-9)
    assert interval([0.4]) == {"mean": 0.4, "std": None, "ci95": None, "n": 1}


def test_aggregate_over_models_marks_a_missing_revision(tmp_path):
    folders = {}
    for seed, offset in ((1, 0.0), (2, 0.1), (3, 0.3)):
        folders[f"org/model-seed{seed}"] = tmp_path / f"model-seed{seed}"
        for revision, base in (("step0", 0.1), ("step4", 0.4), ("step16", 0.6)):
            if seed == 3 and revision == "step4":
                continue                                                # this seed lacks step4
            write_layer_results(folders[f"org/model-seed{seed}"], revision, [
                {"attention": base + offset + l, "no_mlp": base - offset, "embedding": 2 * base * seed}
                for l in range(2)], PROVENANCE)
    aggregate = aggregate_layer_results(folders)
    assert aggregate["models"] == list(folders) and aggregate["missing"] == {"step4": ["org/model-seed3"]}
    assert list(aggregate["revisions"]) == ["step0", "step4", "step16"]
    assert list(aggregate["revisions"]["step16"]) == ["layer_0", "layer_1"]
    cell = aggregate["revisions"]["step16"]["layer_1"]
    assert set(cell) == set(KINDS)
    assert cell["attention"] == interval([0.6 + 0.0 + 1, 0.6 + 0.1 + 1, 0.6 + 0.3 + 1])   # as written above
    assert cell["embedding"] == interval([2 * 0.6 * 1, 2 * 0.6 * 2, 2 * 0.6 * 3])
    assert aggregate["revisions"]["step4"]["layer_0"]["no_mlp"] == interval([0.4 - 0.0, 0.4 - 0.1])
    assert aggregate["revisions"]["step4"]["layer_0"]["no_mlp"]["n"] == 2
    paths = write_aggregate(tmp_path, folders)
    assert [p.name for p in paths] == ["aggregate.json", "aggregate_heatmaps.png", "aggregate_heatmaps.pdf",
                                       "aggregate_curves.png", "aggregate_curves.pdf"]
    assert all(p.stat().st_size > 100 for p in paths)
    # what plot_cosine_similarity.py does with a folder of several models: each model's folder, the aggregate again
    assert model_result_dirs(tmp_path) == sorted(folders.values())
    for path in paths[1:]:
        path.unlink()
    assert plot_aggregate_results(tmp_path) == paths[1:] and all(p.stat().st_size > 100 for p in paths[1:])
