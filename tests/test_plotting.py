"""common/plotting.py: figures as PNG and PDF, atomically; training curves from our log or the release's."""
import json

import pytest

from common.plotting import heatmap_grid, save_figure, training_curves
from conftest import run_script


def _is_png_and_pdf(stem):
    return (stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
            and stem.with_suffix(".pdf").read_bytes()[:4] == b"%PDF")


def test_training_curves_from_our_log(tmp_path):
    logs = [{"epoch": e / 4, "step": e, "loss": 6 - e / 10, "W_O_B_bar": 0.9, "W_O_B_bar_rel_err": 0.01 * e,
             "layer_0_W_Q_bar": 0.5, "layer_0_W_Q_bar_rel_err": None if e == 1 else 0.1,
             "layer_0_V_B_bar_Phi_bar": 0.8, "layer_0_P_p_bar": 0.7} for e in range(1, 6)]
    paths = training_curves(logs, tmp_path / "curves", title="t")
    assert [p.name for p in paths] == ["curves.png", "curves.pdf"] and _is_png_and_pdf(tmp_path / "curves")
    with pytest.raises(ValueError, match="no cosine keys"):
        training_curves([{"epoch": 0, "loss": 1.0}], tmp_path / "none")
    assert not (tmp_path / "none.png").exists()


def test_plot_script_reads_a_release_format_log(tmp_path):
    logs = [{"epoch": e, "W_O_B_bar": 0.9 + e / 100, "layer_0_W_Q_bar": 0.5, "layer_1_W_Q_bar": 0.7,
             "layer_0_V_B_bar_Phi_bar": 0.8} for e in range(0, 10, 2)]
    (tmp_path / "release.json").write_text(json.dumps(logs))
    run_script("tiny_plot_logs.py", f"--log={tmp_path / 'release.json'}", f"--out={tmp_path / 'fig'}")
    assert _is_png_and_pdf(tmp_path / "fig")
    (tmp_path / "empty.json").write_text("[]")
    bad = run_script("tiny_plot_logs.py", f"--log={tmp_path / 'empty.json'}", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and len(bad.stderr.splitlines()) == 1


def test_heatmap_grid_and_save_figure(tmp_path):
    import matplotlib.pyplot as plt
    panels = [("a", [[0.1, 0.2], [0.3, 0.4]], ["0", "1"], ["step0", "step1"]),
              ("b", [[0.5, 0.6], [0.7, 0.8]], ["0", "1"], ["step0", "step1"])]
    heatmap_grid(panels, tmp_path / "grid", xlabel="revision", ylabel="layer", title="rsa")
    assert _is_png_and_pdf(tmp_path / "grid")
    fig = plt.figure()
    save_figure(fig, tmp_path / "plain")
    assert _is_png_and_pdf(tmp_path / "plain") and sorted(p.name for p in tmp_path.iterdir() if p.stem == "plain") \
        == ["plain.pdf", "plain.png"]


def test_cosine_axis_is_fitted_to_the_data_and_legends_sit_off_the_curves():
    """Cosines within a few hundredths of 1 fill the panel (not its top tenth), and no legend covers
    an axes' plotting area."""
    from common.plotting import fitted_limits, training_curves_figure
    logs = [{"epoch": e / 4, "step": e, "W_O_B_bar": 0.99 - e / 1000, "W_O_B_bar_rel_err": 0.01 * e,
             "layer_0_W_Q_bar": 0.95 + e / 1000, "layer_1_W_Q_bar": 0.97, "layer_0_W_Q_bar_rel_err": 0.1,
             "layer_0_V_B_bar_Phi_bar": 0.93, "layer_0_P_p_bar": 0.96, "W_O_path": 0.999} for e in range(1, 9)]
    fig = training_curves_figure(logs, "t")
    cosines = [v for e in logs for k, v in e.items() if k in ("W_O_B_bar", "layer_0_W_Q_bar", "layer_1_W_Q_bar",
                                                              "layer_0_V_B_bar_Phi_bar", "layer_0_P_p_bar", "W_O_path")]
    low, high = fig.axes[0].get_ylim()
    assert low <= min(cosines) and high >= max(cosines) and high <= 1.0 + 1e-3
    assert (max(cosines) - min(cosines)) / (high - low) > 0.8          # the data fill the axis
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert fitted_limits([0.5, 0.5]) == pytest.approx((0.495, 0.505))
    assert fitted_limits([float("nan")]) == (0.0, 1.0)
    import matplotlib.pyplot as plt
    plt.close(fig)
