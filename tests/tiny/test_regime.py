"""The end of the early regime (docs/theory.md §10): the predicted ratio, the crossing, and tiny_regime.py
end to end and on bad input."""
import json

import pytest
import torch

from common.theory.leading_terms import continuous_coefficients, next_order_matrices, theory_matrices
from common.tiny.regime import first_crossing, predicted_ratio_curves
from common.theory.statistics import CorpusStatistics, compute_statistics
from conftest import run_script


def test_predicted_ratio_is_the_norm_of_the_next_terms(markov):
    x, y = markov(10, 8, 15, seed=2)
    stats = compute_statistics(x, y, 15, keep=CorpusStatistics.TENSOR_FIELDS + ("context_input",))
    taus = [0.5, 4.0, 30.0]
    curves = predicted_ratio_curves(stats, 1, taus)
    assert set(curves) == {"W_O", "V"}
    lead = {"W_O": "tau", "V": "tau2"}
    for kind, terms in next_order_matrices(stats, 1).items():
        for tau, ratio in zip(taus, curves[kind]):
            c = continuous_coefficients(tau)
            direct = sum(c[name] * m for name, m in terms).norm() / (c[lead[kind]] * theory_matrices(stats)[kind].norm())
            assert ratio == pytest.approx(float(direct), rel=1e-9)
    assert curves["W_O"][0] < curves["W_O"][-1]          # the next terms grow with τ


def test_first_crossing():
    assert first_crossing([1, 2, 4], [0.01, 0.05, 0.2], 0.1) == pytest.approx(2 * 2 ** (1 / 3))
    assert first_crossing([1, 2], [0.01, 0.05], 0.1) is None
    assert first_crossing([1, 2], [0.5, 0.6], 0.1) == 1.0
    assert first_crossing([1, 2, 3], [None, 0.05, 0.2], 0.1) == pytest.approx(2 * 1.5 ** (1 / 3))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from common.corpus.tokenize import tokenize_natural, write_token_folder
    from conftest import tiny_stories
    import datasets
    folder = tmp_path_factory.mktemp("regime") / "natural"
    write_token_folder(folder, *tokenize_natural(datasets.Dataset.from_dict({"text": tiny_stories(64)}),
                                                 vocab_size=3000))
    return folder


TINY = ["--seq_len=12", "--batch_size=8", "--n_layers=2", "--progress=False", "--tau_max=12"]


def test_regime_script_writes_the_four_outputs(data_dir, tmp_path):
    out = tmp_path / "regime"
    result = run_script("tiny_regime.py", f"--data_dir={data_dir}", f"--out_dir={out}", "--lrs=1.0,4.0",
                        "--threshold=0.05", *TINY)
    assert "predicted τ*" in result.stdout
    summary = json.loads((out / "regime.json").read_text())
    assert summary["threshold"] == 0.05 and set(summary) == {"threshold", "W_O", "V", "W", "P"}
    for kind in ("W_O", "V", "W", "P"):
        assert set(summary[kind]["measured_tau"]) == {"1.0", "4.0"}
        for tau in summary[kind]["measured_tau"].values():
            assert tau is None or 0 < tau <= 12
    assert summary["W_O"]["predicted_tau"] > 0 and summary["V"]["predicted_tau"] is None   # V: 2 layers
    for name in ("regime.png", "regime.pdf", "regime.md"):
        assert (out / name).stat().st_size > 0
    assert "| W_O |" in (out / "regime.md").read_text()
    logs = json.loads((out / "runs" / "lr_4" / "training_logs.json").read_text())
    assert [e["step"] for e in logs] == [1, 2, 3] and "W_O_path_rel_err" in logs[-1]


@pytest.mark.parametrize("bad,message", [("--lrs=-1.0", "--lrs"), ("--lrs=", "--lrs"), ("--threshold=1.5", "--threshold"),
                                         ("--seq_len=5000", "seq_len")])
def test_regime_bad_input(data_dir, tmp_path, bad, message):
    out = tmp_path / "regime"
    result = run_script("tiny_regime.py", f"--data_dir={data_dir}", f"--out_dir={out}", *TINY, bad, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr[-500:]
    assert not out.exists() and list(tmp_path.iterdir()) == []
