import re
import sys
from pathlib import Path

import pytest

from common.config import override
from conftest import run_script
from common.io import UserError


def test_overrides_keep_types():
    config = {"lr": 0.005, "epochs": 100, "name": "natural", "compile": False, "sizes": [256], "__doc__": "x"}
    values = override(config, ["--lr=1e-3", "--epochs", "2", "--name=bpe", "--compile=True", "--sizes=1,2"])
    assert config["lr"] == 1e-3 and isinstance(config["epochs"], int) and config["epochs"] == 2
    assert config["name"] == "bpe" and config["compile"] is True and config["sizes"] == [1, 2]
    assert values["lr"] == 1e-3 and "__doc__" not in values
    override(config, ["--epochs=3.0", "--sizes=step0,step1"])
    assert config["epochs"] == 3 and config["sizes"] == ["step0", "step1"]


@pytest.mark.parametrize("argv,match", [(["--nope=1"], "unknown option"), (["--epochs=abc"], "expected a whole number"),
                                        (["--flag=2"], "True or False"), (["positional"], "unexpected"),
                                        (["--epochs"], "needs a value")])
def test_bad_overrides(argv, match):
    with pytest.raises(UserError, match=match):
        override({"epochs": 1, "flag": False}, argv)


def test_help_shows_each_hyperparameter_comment(tmp_path):
    script = tmp_path / "script.py"
    script.write_text('"""Doc line."""\nlr = 0.1            # learning rate\nsteps = 3           # optimiser steps,\n'
                      '                    # continued here\nname = "x"\n', encoding="utf-8")
    config = {"__doc__": "Doc line.", "__file__": str(script), "lr": 0.1, "steps": 3, "name": "x"}
    with pytest.raises(SystemExit) as exit_info:
        override(config, ["--help"])
    assert exit_info.value.code == 0
    from common.config import help_text
    text = help_text(config, {"lr", "steps", "name"})
    assert text.startswith("Doc line.")
    assert "--lr=0.1" in text and "learning rate" in text and "optimiser steps, continued here" in text
    assert text.index("--lr=") < text.index("--steps=") < text.index("--name='x'")   # the script's order


def test_explicit_settings_are_recorded():
    config = {"epochs": 1, "lr": 0.5}
    values = override(config, ["--lr=0.1"])
    assert values["_explicit"] == ["lr"]


def test_a_typo_gets_the_closest_name():
    with pytest.raises(UserError, match="unknown option --epoch; did you mean --epochs"):
        override({"epochs": 1, "lr": 0.1}, ["--epoch=3"])


def test_a_setting_whose_default_is_none_is_checked_by_its_annotation():
    config = {"top_tokens": None, "__annotations__": {"top_tokens": int | None}}
    with pytest.raises(UserError, match="--top_tokens: expected a whole number"):
        override(config, ["--top_tokens=abc"])
    override(config, ["--top_tokens=2000"])
    assert config["top_tokens"] == 2000
    override(config, ["--top_tokens=None"])
    assert config["top_tokens"] is None


def test_long_defaults_keep_the_comments_in_one_column(tmp_path):
    script = tmp_path / "script.py"
    script.write_text('revisions = ["step%d" % i for i in range(40)]   # which revisions\nlr = 0.1   # rate\n')
    from common.config import HELP_COLUMN, help_text
    config = {"__file__": str(script), "revisions": [f"step{i}" for i in range(40)], "lr": 0.1}
    lines = help_text(config, {"revisions", "lr"}).splitlines()
    for comment in ("which revisions", "rate"):
        line = next(line for line in lines if line.endswith(comment))
        assert line.index(comment) == HELP_COLUMN + 4


def test_comments_are_read_by_the_parser_not_by_pattern(tmp_path):
    """Assignments over several lines, annotated ones, and a comment-only line that belongs to nobody."""
    from common.config import hyperparameter_comments
    script = tmp_path / "script.py"
    script.write_text('# header comment\nsizes = [1,\n         2]   # two sizes\ntop: int | None = None   # or all\n'
                      '        # the rest of it\n\nx = 1\n')
    assert hyperparameter_comments(script) == {"sizes": "two sizes", "top": "or all the rest of it", "x": ""}


ROOT = Path(__file__).resolve().parents[1]


def test_a_script_inherits_every_setting_and_comment_of_another():
    """tiny_self_attn_bpe.py shares the natural script's settings (no star import) and --help lists every
    one with the natural script's comment, or its own where it sets one."""
    from common.config import hyperparameter_comments, inherit, script_settings
    natural, bpe = script_settings(ROOT / "tiny_self_attn_natural.py"), script_settings(ROOT / "tiny_self_attn_bpe.py")
    assert set(natural) == set(bpe) and bpe["batch_size"] == 128 and natural["batch_size"] == 512
    assert {k for k in natural if natural[k] != bpe[k]} == {"data_dir", "out_dir", "batch_size", "grad_accum", "epochs",
                                                            "max_steps_per_epoch", "log_every", "save_every"}
    result = run_script("tiny_self_attn_bpe.py", "--help")
    comments = hyperparameter_comments(ROOT / "tiny_self_attn_natural.py")
    for key, comment in comments.items():
        if comment and key not in hyperparameter_comments(ROOT / "tiny_self_attn_bpe.py"):
            assert f"--{key}=" in result.stdout and comment in result.stdout, key
    config = {"__file__": str(ROOT / "tiny_tokenize_bpe.py")}
    inherit(config, "tiny_tokenize_natural.py")
    assert config["vocab_size"] == 3000 and config["__inherits__"].endswith("tiny_tokenize_natural.py")
    part = {"__file__": str(ROOT / "topic_series.py")}            # a part of a block: only the names asked for
    inherit(part, "pythia.py", names=("top_tokens", "dataset"))
    assert {k for k in part if not k.startswith("_")} == {"top_tokens", "dataset"}
    assert part["__annotations__"] == {"top_tokens": int | None}
    with pytest.raises(UserError, match="pythia.py has no setting nope"):
        inherit({"__file__": str(ROOT / "topic_series.py")}, "pythia.py", names=("nope",))


def settings_classes():
    """(script, settings class, names it takes, fields of no script) of every settings class."""
    from common.checkpoints.comparison import ComparisonConfig
    from common.checkpoints.explorer import ExplorerConfig
    from common.checkpoints.topic_embeddings import TopicEmbeddingsConfig
    from common.corpus.lda import LDAParameters
    from common.corpus.tokenize import TokenizerConfig
    from common.tiny.regime import RegimeConfig
    from common.tiny.topic_ablation import TopicAblationConfig
    from common.tiny.topic_series import TopicSeriesConfig
    from common.tiny.topic_structure import TopicStructureConfig
    from common.tiny.training import TrainConfig
    every = None
    lda = ("n_topics", "words_per_topic", "alpha", "min_length", "max_length", "n_documents", "overlap")
    return [("tiny_self_attn_natural.py", TrainConfig, every, ()), ("topic_structure.py", TopicStructureConfig, every, ()),
            ("topic_structure.py", LDAParameters, lda, ()), ("topic_embeddings.py", TopicEmbeddingsConfig, every, ()),
            ("tiny_tokenize_natural.py", TokenizerConfig, every, ()), ("pythia.py", ComparisonConfig, every, ("target_layer",)),
            ("tiny_regime.py", RegimeConfig, every, ()), ("topic_series.py", TopicSeriesConfig, every, ()),
            ("topic_ablation.py", TopicAblationConfig, every, ()),
            ("pythia_explore.py", ExplorerConfig, ("top", "k", "max_mb", "min_count", "view"), ())]


@pytest.mark.parametrize("script, settings_class, names, own", settings_classes(),
                         ids=lambda v: getattr(v, "__name__", None) if isinstance(v, type) else None)
def test_every_settings_class_is_its_scripts_block(script, settings_class, names, own):
    """The fields are the block's settings, in its order, with its defaults and types, and the class repeats
    none of them (the block is their one home); a field of no script is the class's own."""
    from dataclasses import MISSING, fields

    from common.config import script_block
    block, annotations = script_block(ROOT / script)
    expected = list(names or block)
    assert [f.name for f in fields(settings_class)] == expected + list(own)
    for field in fields(settings_class):
        if field.name in own:
            continue
        default = field.default if field.default is not MISSING else field.default_factory()
        assert default == block[field.name] and type(default) is type(block[field.name]), field.name
        assert field.type == annotations.get(field.name, type(block[field.name])), field.name
    source = Path(sys.modules[settings_class.__module__].__file__).read_text(encoding="utf-8")
    body = source[source.index(f"class {settings_class.__name__}("):]
    body = body[:body.index("\n\n\n")]
    repeated = [name for name in expected if re.search(rf"^    {name}\s*:", body, re.M)]
    assert not repeated, f"{settings_class.__name__} repeats {script}'s {repeated}"


def write_script(folder, text):
    path = folder / "block.py"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_settings_class_takes_its_fields_from_the_block_when_first_used(tmp_path):
    """A setting added to the block is a field, with the block's default and type (its annotation where it
    has one); keyword arguments replace defaults, list defaults are not shared, `names` takes a part of the
    block, `frozen` refuses changes, an unknown keyword is a TypeError, and copies round-trip."""
    import copy
    from dataclasses import FrozenInstanceError, asdict, fields, replace
    from typing import Optional

    from common.config import Settings
    script = write_script(tmp_path, 'lr = 0.1   # rate\nsizes = [1, 2]\ntop: int | None = None\nname = "x"\n')

    class Run(Settings, script=str(script)):
        extra: Optional[int] = None          # a field of no script

    script.write_text(script.read_text() + "steps = 3\n")   # read on first use, not at definition
    assert [(f.name, f.type) for f in fields(Run)] == [("lr", float), ("sizes", list), ("top", int | None),
                                                        ("name", str), ("steps", int), ("extra", Optional[int])]
    run, other = Run(lr=0.5, steps=7), Run()
    assert (run.lr, run.steps, run.top, other.lr, other.extra) == (0.5, 7, None, 0.1, None)
    run.sizes.append(3)
    assert other.sizes == [1, 2] and Run().sizes == [1, 2]
    assert Run.from_settings({"lr": 2.0, "unrelated": 1}) == Run(lr=2.0)
    assert copy.deepcopy(run) == run
    assert asdict(replace(run, name="y"))["name"] == "y"
    with pytest.raises(TypeError, match="nope"):
        Run(nope=1)

    class Part(Settings, script=str(script), names=("name", "lr"), frozen=True):
        pass

    part = Part.__new__(Part)   # as unpickling makes an instance: the class is built then too
    assert [f.name for f in fields(part)] == ["name", "lr"] and Part(lr=1.0) == replace(Part(), lr=1.0)
    part = Part(lr=1.0)
    with pytest.raises(FrozenInstanceError):
        part.lr = 2.0

    class Wrong(Settings, script=str(script), names=("lr", "missing")):
        pass

    with pytest.raises(UserError, match="has no setting missing"):
        Wrong()
