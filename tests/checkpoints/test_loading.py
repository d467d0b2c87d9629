import os
import shutil
import subprocess
import sys

import pytest
import torch

from common.checkpoints.loading import CheckpointSource, weights_sha256
from common.io import UserError
from conftest import ROOT
from conftest import tiny_model


def test_local_revisions(tmp_path):
    for name in ("step0", "step16", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "step0" / "config.json").write_text("{}")
    (tmp_path / "step16" / "config.json").write_text("{}")
    local = CheckpointSource(str(tmp_path))
    assert local.resolve(["all"]) == ["step0", "step16"] and local.resolve("step16,step0") == ["step0", "step16"]
    with pytest.raises(UserError, match="'step8' not found.*--revisions=all reads every one"):
        local.resolve(["step0", "step8"])
    with pytest.raises(UserError, match="could not load"):
        local.load_config("step0")   # an empty config is no model
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="unknown revision 'main'"):   # a revision folder of no known naming
        local.resolve(["all"])


def test_folder_not_found(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="checkpoint folder not found"):
        CheckpointSource(str(tmp_path / "missing"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="checkpoint folder not found: out/neox_chekpoints"):
        CheckpointSource("out/neox_chekpoints")                 # a mistyped folder, not a hub name
    assert CheckpointSource("EleutherAI/pythia-1.4b-deduped").local is None


def test_hub_revisions():
    hub = CheckpointSource("EleutherAI/pythia-1.4b-deduped")
    assert hub.resolve("step4,step1".split(",")) == ["step1", "step4"]
    with pytest.raises(UserError, match="unknown revision 'step3'"):
        hub.resolve(["step3"])
    with pytest.raises(UserError, match="needs a local"):
        hub.resolve(["all"])
    gpt2 = CheckpointSource("stanford-crfm/alias-gpt2-small-x21")     # no Pythia schedule to check
    assert gpt2.resolve(["checkpoint-100", "checkpoint-10"]) == ["checkpoint-10", "checkpoint-100"]


def test_revisions_must_agree(tmp_path):
    model = tiny_model("gpt2")
    for name in ("checkpoint-0", "checkpoint-10"):
        model.save_pretrained(tmp_path / name)
    source = CheckpointSource(str(tmp_path))
    assert source.check_revisions(["checkpoint-0", "checkpoint-10"]).model_type == "gpt2"
    tiny_model("gpt2", layers=3).save_pretrained(tmp_path / "checkpoint-20")
    with pytest.raises(UserError, match="revisions disagree: checkpoint-20 has num_hidden_layers=3 but checkpoint-0"):
        source.check_revisions(source.resolve(["all"]))
    shutil.rmtree(tmp_path / "checkpoint-20")
    tiny_model("llama").save_pretrained(tmp_path / "checkpoint-20")
    with pytest.raises(UserError, match="checkpoint-20 has model_type=llama"):
        source.check_revisions(source.resolve(["all"]))


def test_weights_hash_sees_every_tensor():
    model = tiny_model("llama")
    digest = weights_sha256(model)
    assert digest == weights_sha256(tiny_model("llama")) and len(digest) == 64    # same seed, same weights
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] += 1e-6
    assert weights_sha256(model) != digest
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] -= 1e-6
    assert weights_sha256(model.float()) != digest           # the dtype as loaded is part of the weights


def test_hub_name_offline_fails_at_once():
    code = ("from common.checkpoints.loading import CheckpointSource\n"
            "from common.io import exit_on_user_error\n"
            "with exit_on_user_error():\n"
            "    CheckpointSource('EleutherAI/pythia-14m').load_config('step0')\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "hub cannot be reached (offline)" in lines[0] and "local folder" in lines[0]
