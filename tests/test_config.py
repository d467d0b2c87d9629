import pytest

from common.config import override
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
