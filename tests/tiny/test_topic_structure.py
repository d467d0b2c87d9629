"""The topic-structure pipeline (common/tiny/topic_structure.py): every bad input refused before anything is
generated or written; the settings object equals the script's block."""
import pytest

from common.io import UserError
from common.tiny.topic_structure import TopicStructureConfig, _corpus


@pytest.mark.parametrize("args, message", [
    (["--words_per_topic=0"], "more topics"),
    (["--alpha=0"], "alpha"),
    (["--min_length=30", "--max_length=20"], "empty"),
    (["--seq_len=64"], "shorter than one sequence"),
    (["--data=corpus.txt"], "needs --topics"),
])
def test_bad_input_is_refused_before_anything_is_written(args, message, tmp_path):
    config = {"n_topics": 3, "words_per_topic": 4, "alpha": 0.1, "min_length": 18, "max_length": 24,
              "n_documents": 10, "overlap": 0, "data": "lda", "topics": "", "heldout_documents": 2, "seq_len": 16,
              "seed": 0}
    for arg in args:
        key, value = arg[2:].split("=")
        config[key] = type(config[key])(value)
    with pytest.raises(UserError, match=message):
        _corpus(TopicStructureConfig.from_settings(config))


def test_preset_fills_what_the_command_line_does_not_give():
    from common.tiny.topic_structure import PRESETS, apply_preset
    settings = {"preset": "li2023", "lr": 4.0, "n_layers": 3, "seq_len": 32, "n_documents": 500,
                "_explicit": ["preset", "seq_len", "n_documents"]}
    applied = apply_preset(settings)
    assert applied["lr"] == 0.01 and applied["n_layers"] == 1 and applied["optimizer"] == "adam"
    assert applied["seq_len"] == 32 and applied["n_documents"] == 500           # given on the command line
    assert all(applied[k] == v for k, v in PRESETS["li2023"].items() if k not in settings["_explicit"])
    assert apply_preset({"preset": "", "lr": 4.0}) == {"preset": "", "lr": 4.0}
    with pytest.raises(UserError, match="--preset must be one of li2023"):
        apply_preset({"preset": "bert"})
