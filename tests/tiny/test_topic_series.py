"""The topic contrast of W against the Taylor series of training (common/tiny/topic_series.py,
docs/theory.md §11, §14): the contrast coefficients against a brute-force loop over token pairs, the
turns of the partial sums and of the trained contrast, topic_series.py end to end and on bad input."""
import json

import pytest

from common.theory.model import AttentionOnlyTransformer
from common.theory.series import gradient_flow_series
from common.tiny.topic_series import TopicSeriesConfig, first_negative, partial_sums
from common.tiny.training import TrainConfig, load_training_data
from conftest import ROOT, run_script

TINY = ["--n_topics=3", "--words_per_topic=4", "--min_length=18", "--max_length=24", "--n_documents=64",
        "--heldout_documents=8", "--seq_len=16", "--batch_size=16", "--epochs=2", "--lr=2.0", "--log_every=0.5",
        "--progress=False"]
# a trained run's W contrast per log point (step, contrast of layers 0, 1, 2): positive, then the last
# two layers turn negative between steps 3 and 4
LOG = [(1, (1e-9, 2e-9, 3e-9)), (2, (4e-9, 5e-9, 6e-9)), (3, (2e-9, 1e-9, 3e-9)), (4, (1e-9, -3e-9, -1e-9))]


@pytest.fixture(scope="module")
def structure(tmp_path_factory):
    """The folder a topic_structure.py run leaves (its data/ with topics.json and a topic_structure.json
    with the trained W's binned means at each log point), written here without training."""
    import datasets

    from common.corpus.lda import TABLE_FILE, LDAParameters, generate_lda
    from common.corpus.tokenize import tokenize_natural, write_token_folder
    from common.io import write_json
    out = tmp_path_factory.mktemp("topics") / "structure"
    corpus = generate_lda(LDAParameters(n_topics=3, words_per_topic=4, min_length=18, max_length=24,
                                        n_documents=40), seed=1)
    stories, vocabulary, frequencies, summary = tokenize_natural(
        datasets.Dataset.from_dict({"text": corpus.documents}), 3000)
    write_token_folder(out / "data", stories, vocabulary, frequencies, summary, extra_files={TABLE_FILE: corpus.table})
    trained = [dict({"step": step}, **{f"W_layer_{l}": {"same_token": 0.0, "same_topic": c, "different_topic": 0.0}
                                       for l, c in enumerate(contrasts)}) for step, contrasts in LOG]
    write_json(out / "topic_structure.json", {"settings": {"lr": 2.0, "seq_len": 16, "n_layers": 3},
                                              "trained": trained})
    return out


def brute_force_contrast(matrix, vocabulary, table):
    same, different = [], []
    for a, first in enumerate(vocabulary):
        for b, second in enumerate(vocabulary):
            if a != b and table[first] and table[second]:
                (same if set(table[first]) & set(table[second]) else different).append(float(matrix[a, b]))
    return sum(same) / len(same) - sum(different) / len(different)


def test_first_negative_and_partial_sums():
    assert first_negative([1, 2, 3, 4], [None, 1.0, 0.5, -0.5]) == pytest.approx(3.5)
    assert first_negative([1, 2, 3], [-1.0, -2.0, -3.0]) is None           # never positive before
    assert first_negative([1, 2], [1.0, 2.0]) is None
    assert partial_sums([0.0, 1.0, -2.0], [1.0, 2.0], 3) == [1.0 - 2.0, 4.0 - 16.0]
    assert partial_sums([0.0, 1.0, -2.0], [2.0], 2) == [4.0]


def test_topic_series_end_to_end(structure, tmp_path):
    out = tmp_path / "series"
    printed = run_script("topic_series.py", f"--structure_dir={structure}", "--order=6", "--progress=False",
                         f"--out_dir={out}").stdout
    assert "W layer 1: trained contrast turns negative at τ ≈ 6.5" in printed
    result = json.loads((out / "topic_series.json").read_text())
    assert (out / "topic_series.png").stat().st_size > 0 and (out / "topic_series.pdf").stat().st_size > 0
    assert (result["order"], result["sequences"], result["lr"]) == (6, result["of"], 2.0)
    # the contrast coefficients: the series of the same sequences, binned by a loop over token pairs
    tokens, vocabulary = load_training_data(TrainConfig(data_dir=str(structure / "data"), seq_len=16))[:2]
    table = json.loads((structure / "data" / "topics.json").read_text())
    series = gradient_flow_series(AttentionOnlyTransformer(len(vocabulary), 16, 3), tokens[:, :-1].long(),
                                  tokens[:, 1:].long(), 6)
    assert set(result["layers"]) == {"0", "1", "2"}
    for layer, row in result["layers"].items():
        expected = [brute_force_contrast(c[f"layers.{layer}.W"], vocabulary, table) for c in series]
        assert row["contrast_coefficients"] == pytest.approx(expected, rel=1e-9, abs=1e-300)
        assert row["contrast_coefficients"][3] > 0                     # the leading term Q̄/8 favours same topic
        assert set(row["partial_sum_turn"]) == {"4", "5", "6"} and row["partial_sum_turn"]["4"] is None
        for K, turn in row["partial_sum_turn"].items():
            if turn is not None:      # the partial sum changes sign there
                values = partial_sums(row["contrast_coefficients"], [turn * 0.99, turn * 1.01], int(K))
                assert values[0] > 0 > values[1], (layer, K)
    assert result["layers"]["0"]["trained_turn"] is None
    assert result["layers"]["1"]["trained_turn"] == pytest.approx(2.0 * (3 + 1 / 4))     # τ = ηs, η = 2
    assert result["layers"]["2"]["trained_turn"] == pytest.approx(2.0 * (3 + 3 / 4))


@pytest.mark.slow   # a real topic_structure.py run first (about 30 s)
def test_topic_series_after_a_real_topic_structure_run(tmp_path):
    structure = tmp_path / "topics"
    run_script("topic_structure.py", *TINY, f"--out_dir={structure}")
    run_script("topic_series.py", f"--structure_dir={structure}", "--order=5", "--progress=False",
               f"--out_dir={tmp_path / 'series'}")
    result = json.loads((tmp_path / "series" / "topic_series.json").read_text())
    trained = json.loads((structure / "topic_structure.json").read_text())["trained"]
    for layer, row in result["layers"].items():
        contrasts = [e[f"W_layer_{layer}"]["same_topic"] - e[f"W_layer_{layer}"]["different_topic"] for e in trained]
        assert row["trained_turn"] == first_negative([2.0 * e["step"] for e in trained], contrasts)
        assert row["contrast_coefficients"][3] > 0


@pytest.mark.parametrize("args,message", [(["--order=4"], "--order must be at least 5"),
                                          (["--structure_dir=MISSING"], "no topic_structure.py run"),
                                          (["--series_chunk=0"], "--series_chunk")])
def test_topic_series_bad_input(structure, tmp_path, args, message):
    args = [a.replace("MISSING", str(tmp_path / "missing")) for a in args]
    out = tmp_path / "series"
    result = run_script("topic_series.py", f"--structure_dir={structure}", *args, f"--out_dir={out}", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr[-500:]
    assert list(tmp_path.iterdir()) == []


def test_settings_defaults_equal_the_scripts_block():
    from dataclasses import fields

    from common.config import script_settings
    assert {f.name: f.default for f in fields(TopicSeriesConfig)} == script_settings(ROOT / "topic_series.py")
