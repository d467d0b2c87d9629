"""The end of the early regime (docs/theory.md §10, §14): the series' predicted curves, the crossing, the
radius and the suggested run, and tiny_regime.py end to end and on bad input."""
import json
import shlex

import torch

import pytest

from common.theory.model import AttentionOnlyTransformer
from common.theory.series import gradient_flow_series, remainder_ratio
from common.tiny.regime import (RegimeConfig, end_of_early_regime, first_crossing, predicted_curves, suggestion,
                                worst_layer)
from conftest import ROOT, run_script


def test_predicted_curves_are_the_series_remainders_worst_layer_first(markov):
    x, y = markov(10, 8, 15, seed=2)
    series = gradient_flow_series(AttentionOnlyTransformer(15, 8, 2), x, y, 6)
    taus = [0.5, 4.0, 30.0]
    curves = predicted_curves(series, taus)
    assert set(curves) == {"W_O", "V", "W", "P"} and set(curves["W"]) == {0, 1} and set(curves["W_O"]) == {None}
    assert curves["V"][1] == remainder_ratio(series, "layers.1.V", taus)
    assert worst_layer(curves["W"]) == [max(a, b) for a, b in zip(curves["W"][0], curves["W"][1])]
    assert curves["W_O"][None][0] < curves["W_O"][None][-1]          # the remainder grows with τ


def test_first_crossing():
    assert first_crossing([1, 2, 4], [0.01, 0.05, 0.2], 0.1) == pytest.approx(2 * 2 ** (1 / 3))
    assert first_crossing([1, 2], [0.01, 0.05], 0.1) is None
    assert first_crossing([1, 2], [0.5, 0.6], 0.1) == 1.0
    assert first_crossing([1, 2, 3], [None, 0.05, 0.2], 0.1) == pytest.approx(2 * 1.5 ** (1 / 3))


def test_suggestion_reaches_the_fraction_of_the_earliest_end():
    summary = {"W_O": {"predicted_tau": 30.0}, "V": {"predicted_tau": 18.0}, "W": {"predicted_tau": 16.04},
               "P": {"predicted_tau": None}}
    assert end_of_early_regime(summary) == ("W", 16.04)
    hint = suggestion(summary, RegimeConfig(data_dir="data/x", suggest_fraction=0.5, suggest_steps=40))
    assert (hint["tau"], hint["lr"], hint["steps"], hint["kind"]) == (8.02, 0.2, 41, "W")   # η to 3 digits
    assert "--lr=0.2 --tau=8.02" in hint["command"] and "--data_dir=data/x" in hint["command"]
    past = suggestion(summary, RegimeConfig(suggest_fraction=2.0, suggest_steps=100))
    assert past["tau"] == 32.1 and past["steps"] == 100
    assert suggestion({k: {"predicted_tau": None} for k in ("W_O", "V", "W", "P")}, RegimeConfig()) is None


def test_settings_defaults_equal_the_scripts_block():
    from dataclasses import fields

    from common.config import script_settings
    block = script_settings(ROOT / "tiny_regime.py")
    from dataclasses import MISSING
    assert {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(RegimeConfig)} == block
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from conftest import natural_token_folder
    return natural_token_folder(tmp_path_factory.mktemp("tiny"))


TINY = ["--seq_len=12", "--batch_size=8", "--n_layers=2", "--progress=False", "--tau_max=12", "--series_sequences=24"]


@pytest.fixture(scope="module")
def regime(data_dir, tmp_path_factory):
    """(stdout, output folder) of one tiny_regime.py run."""
    out = tmp_path_factory.mktemp("regime_run") / "regime"
    result = run_script("tiny_regime.py", f"--data_dir={data_dir}", f"--out_dir={out}", "--lrs=1.0,4.0",
                        "--threshold=0.05", *TINY)
    return result.stdout, out


def test_regime_script_writes_the_four_outputs(regime):
    stdout, out = regime
    assert "predicted τ*" in stdout and "radius of convergence" in stdout
    summary = json.loads((out / "regime.json").read_text())
    assert summary["threshold"] == 0.05
    assert set(summary) == {"threshold", "variant", "W_O", "V", "W", "P", "radius", "series", "suggestion"}
    assert summary["variant"] == "residual"
    assert summary["series"] == {"order": 6, "sequences": 24, "of": 64}
    for kind in ("W_O", "V", "W", "P"):
        row = summary[kind]
        assert set(row["measured_tau"]) == {"1.0", "4.0"}
        for tau in row["measured_tau"].values():
            assert tau is None or 0 < tau <= 12
        assert len(row["predicted_tau_layers"]) == (1 if kind == "W_O" else 2)
        assert row["predicted_tau"] == pytest.approx(min(t for t in row["predicted_tau_layers"] if t), rel=0.01)
        names = ["W_O"] if kind == "W_O" else [f"layers.{l}.{kind}" for l in range(2)]
        assert sorted(row["coefficient_norms"]) == names and all(len(v) == 6 for v in row["coefficient_norms"].values())
        assert set(row["radius"]) == {"ratio", "root", "domb_sykes"}
    assert summary["radius"]["root"] > 0
    for name in ("regime.png", "regime.pdf", "regime.md"):
        assert (out / name).stat().st_size > 0
    markdown = (out / "regime.md").read_text()
    assert "| W |" in markdown and summary["suggestion"]["command"] in markdown
    logs = json.loads((out / "runs" / "lr_4" / "training_logs.json").read_text())
    assert [e["step"] for e in logs] == [1, 2, 3] and "W_O_path_rel_err" in logs[-1]


@pytest.mark.slow   # a second training process (about 20 s)
def test_suggested_run_works_as_printed(regime, tmp_path):
    # the last line printed is a command to paste; here it runs cut to one step, in a scratch folder
    stdout, out = regime
    summary = json.loads((out / "regime.json").read_text())
    command = shlex.split(stdout.strip().splitlines()[-1])
    assert command[:2] == ["python", "tiny_self_attn_natural.py"] and command == shlex.split(summary["suggestion"]["command"])
    run = tmp_path / "suggested"
    run_script(command[1], *command[2:], "--max_steps=1", "--progress=False", "--report_top=0", f"--out_dir={run}")
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == summary["suggestion"]["lr"] and config["tau"] == summary["suggestion"]["tau"]


@pytest.mark.parametrize("bad,message", [("--lrs=-1.0", "--lrs"), ("--lrs=", "--lrs"), ("--threshold=1.5", "--threshold"),
                                         ("--seq_len=5000", "seq_len"), ("--order=4", "--order must be at least 5"),
                                         ("--init_std=0.01", "zero initialisation"),
                                         ("--data_dir=EMPTY", "EMPTY")])
def test_regime_bad_input(data_dir, tmp_path, bad, message):
    out = tmp_path / "regime"
    if bad == "--data_dir=EMPTY":                       # a data folder without sequences
        bad = f"--data_dir={tmp_path / 'EMPTY'}"
        (tmp_path / "EMPTY").mkdir()
    result = run_script("tiny_regime.py", f"--data_dir={data_dir}", f"--out_dir={out}", *TINY, bad, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr[-500:]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] in ([], ["EMPTY"])


def test_series_batch_stacks_fixed_corruption_draws():
    from common.tiny.regime import series_batch
    from common.tiny.training import TrainConfig
    sequences = torch.randint(0, 9, (5, 7), generator=torch.Generator().manual_seed(0))
    x, y, selected = series_batch(sequences, TrainConfig(objective="causal", seq_len=6), 9, 3, 0)
    assert torch.equal(x, sequences[:, :-1]) and torch.equal(y, sequences[:, 1:]) and selected is None
    run = TrainConfig(objective="masked", seq_len=6)
    x, y, selected = series_batch(sequences, run, 9, 3, 0)
    assert x.shape == y.shape == selected.shape == (15, 6) and torch.equal(y, sequences[:, :-1].repeat(3, 1))
    assert torch.equal(x[~selected], y[~selected]) and bool((x[selected] <= 9).all())     # MASK is id 9
    assert not torch.equal(selected[:5], selected[5:10])                                  # distinct draws
    again = series_batch(sequences, run, 9, 2, 0)
    assert torch.equal(again[0], x[:10]) and torch.equal(again[2], selected[:10])         # draw d: seed + d


def test_masked_regime_end_to_end(data_dir, tmp_path):
    """--objective=masked: the series of the masked model (attention over all positions, stacked draws) and
    path-exact runs of the masked trainer; the identity variant has no W_O and V, W, P lead at τ, τ², τ²."""
    out = tmp_path / "masked"
    run_script("tiny_regime.py", f"--data_dir={data_dir}", f"--out_dir={out}", "--lrs=2.0", "--threshold=0.05",
               "--objective=masked", "--series_draws=2", "--seq_len=12", "--batch_size=8", "--n_layers=1",
               "--progress=False", "--tau_max=8", "--series_sequences=12")
    summary = json.loads((out / "regime.json").read_text())
    assert summary["variant"] == "residual" and summary["series"] == {"order": 6, "sequences": 12, "of": 64, "draws": 2}
    logs = json.loads((out / "runs" / "lr_2" / "training_logs.json").read_text())
    assert [e["step"] for e in logs] == [1, 2, 3, 4] and "layer_0_W_path_rel_err" in logs[-1]
    assert all(t is None or 0 < t <= 8 for kind in ("W_O", "V", "W", "P") for t in summary[kind]["measured_tau"].values())
    assert summary["suggestion"] is None or "--objective=masked" in summary["suggestion"]["command"]
    identity = tmp_path / "identity"
    run_script("tiny_regime.py", f"--data_dir={data_dir}", f"--out_dir={identity}", "--lrs=2.0", "--objective=masked",
               "--residual=False", "--output=identity", "--series_draws=1", "--seq_len=12", "--batch_size=8",
               "--n_layers=1", "--progress=False", "--tau_max=8", "--series_sequences=12")
    summary = json.loads((identity / "regime.json").read_text())
    assert summary["variant"] == "identity" and summary["W_O"]["predicted_tau"] is None
    assert sorted(summary["W"]["coefficient_norms"]) == ["layers.0.W"]
    norms = summary["V"]["coefficient_norms"]["layers.0.V"]
    assert norms[0] > 0 and summary["W"]["coefficient_norms"]["layers.0.W"][0] == 0      # V at τ, W from τ²


def test_regime_figure_legend_names_both_tau_star_lines(tmp_path, monkeypatch):
    """The figure's legend names every line it draws: the measured τ* of each η (dotted), the predicted τ*
    (dashed), the threshold — one legend for all panels, though the predicted τ* is drawn in one only."""
    import common.plotting
    from common.theory.weight_kinds import WEIGHT_KINDS
    from common.tiny.regime import regime_figure
    kept = {}
    real_save = common.plotting.save_figure
    monkeypatch.setattr(common.plotting, "save_figure", lambda fig, stem: kept.setdefault("fig", fig) and real_save(fig, stem))
    taus = [1.0, 2.0, 4.0, 8.0]
    names = [kind.name for kind in WEIGHT_KINDS]
    summary = {"threshold": 0.1, "radius": {"ratio": None}}
    summary.update({name: {"measured_tau": {"0.5": 3.0}, "predicted_tau": 5.0 if i == len(names) - 1 else None}
                    for i, name in enumerate(names)})
    curves = {name: {0: [0.01, 0.05, 0.2, 0.8]} for name in names}
    measured = {0.5: {name: ([1.0, 2.0, 4.0], [0.02, 0.06, 0.3]) for name in names}}
    paths = regime_figure(summary, curves, taus, measured, tmp_path / "regime")
    assert all(p.exists() for p in paths)
    labels = [t.get_text() for t in kept["fig"].axes[0].get_legend().get_texts()]
    assert {"measured τ*, η = 0.5", "predicted τ*", "threshold 0.1", "measured, η = 0.5"} <= set(labels)
    assert len(labels) == len(set(labels))
