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


SCRIPTS = sorted(p.name for p in Path(__file__).resolve().parents[1].glob("*.py"))


def test_every_script_answers_help_without_side_effects(tmp_path):
    """`--help` prints the docstring and the hyperparameters and touches nothing (demo.py used to
    delete out/demo and rerun the demo)."""
    root = Path(__file__).resolve().parents[1]
    before = {p for p in root.rglob("*") if "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}
    for name in SCRIPTS:
        result = run_script(name, "--help", timeout=120)
        assert "hyperparameters (override with --name=value)" in result.stdout, name
        assert result.stdout.lstrip().split("\n")[0], name          # the docstring comes first
    after = {p for p in root.rglob("*") if "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}
    assert after == before
