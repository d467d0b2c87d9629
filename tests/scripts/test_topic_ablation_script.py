"""topic_ablation.py as a user runs it (docs/results.md §3): a small grid end to end, and bad input."""
import json

from conftest import run_script

TINY = ["--n_topics=3", "--words_per_topic=4", "--min_length=18", "--max_length=24", "--n_documents=64",
        "--heldout_documents=8", "--seq_len=16", "--batch_size=16", "--steps=4", "--log_points=2", "--lr=2.0",
        "--probe_sequences=4", "--stats_sequences=16"]


def test_topic_ablation_end_to_end(tmp_path):
    out = tmp_path / "ablation"
    printed = run_script("topic_ablation.py", *TINY, "--depths=1,3", "--objectives=masked", "--attentions=all",
                         "--residuals=False", f"--out_dir={out}").stdout
    result = json.loads((out / "topic_ablation.json").read_text())
    grid = result["cells"]
    assert [(c["n_layers"], c["residual"]) for c in grid] == [(1, False), (3, False)]
    for cell in grid:
        assert [e["step"] for e in cell["log"]] == [2, 4]
        assert len(cell["verdicts"]) == cell["n_layers"] and cell["uniform_ratio"] == 1.0   # all positions
        entry = cell["log"][-1]
        assert set(entry[f"attention_layer_{cell['n_layers'] - 1}"]) == {"same_token", "same_topic", "different_topic"}
        assert set(entry["query_topic_layer_0"]) == {"all_positions", "loss_positions", "gradient_weighted"}
        # layer 0 reads the one-hot input: MASK carries no topic, a clean word all of its own
        assert 0 <= entry["query_topic_layer_0"]["loss_positions"] < 0.5 < entry["query_topic_layer_0"]["all_positions"]
    markdown = (out / "topic_ablation.md").read_text()
    assert markdown.count("| masked | all |") == 1 + 3 and markdown in printed
    assert (out / "topic_ablation.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((out / "runs" / "masked_all_L3_nores" / "config.json").read_text())
    assert config["init_std"] == 0.1 and config["output"] == "identity" and config["residual"] is False


def test_topic_ablation_bad_input(tmp_path):
    out = tmp_path / "ablation"
    result = run_script("topic_ablation.py", *TINY, "--residuals=maybe", f"--out_dir={out}", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "--residuals" in lines[0] and not out.exists()
