import os
import shutil
import subprocess
import sys

import pytest
import torch

from common.checkpoints.loading import CheckpointSource, expand_model_names
from common.io import UserError
from conftest import ROOT, tiny_model, write_hub_cache


def test_local_revisions(tmp_path):
    for name in ("step0", "step16", "notes", "main"):
        (tmp_path / name).mkdir()
    for name in ("step0", "step16", "main"):
        (tmp_path / name / "config.json").write_text("{}")
    local = CheckpointSource(str(tmp_path))
    # `all` and patterns read the revisions of a known naming (`main`, e.g. an integrity reference, is left out)
    assert local.resolve(["all"]) == ["step0", "step16"] and local.resolve("step16,step0") == ["step0", "step16"]
    assert local.resolve("step1..step100") == ["step16"] and local.resolve("re:6$") == ["step16"]
    assert local.check_reference("main") == "main"
    with pytest.raises(UserError, match="--integrity_reference='latest' is not a revision of"):
        local.check_reference("latest")
    with pytest.raises(UserError, match="'step8' not found.*--revisions=all reads every one"):
        local.resolve(["step0", "step8"])
    with pytest.raises(UserError, match="could not load"):
        local.load_config("step0")   # an empty config is no model
    for name in ("step0", "step16"):
        (tmp_path / name / "config.json").unlink()
    with pytest.raises(UserError, match="unknown revision 'main'"):   # only folders of no known naming
        CheckpointSource(str(tmp_path)).resolve(["all"])


def test_model_names_expand_from_lists_and_brace_ranges():
    assert expand_model_names("EleutherAI/pythia-160m-seed{1..3}") == [
        "EleutherAI/pythia-160m-seed1", "EleutherAI/pythia-160m-seed2", "EleutherAI/pythia-160m-seed3"]
    assert expand_model_names("out/a, out/s{8..9}/ckpt") == ["out/a", "out/s8/ckpt", "out/s9/ckpt"]
    assert expand_model_names("org/x-seed{1..2}-{0..1}") == ["org/x-seed1-0", "org/x-seed1-1", "org/x-seed2-0",
                                                            "org/x-seed2-1"]
    for bad, message in (("org/x-seed{3..1}", "expands to nothing"), (" , ", "empty"),
                         ("a,a", "names a model twice")):
        with pytest.raises(UserError, match=message):
            expand_model_names(bad)


def test_offline_hub_name_runs_from_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folders = {}
    for name in ("step0", "step4", "step8"):
        folders[name] = tmp_path / "saved" / name
        tiny_model("neox").save_pretrained(folders[name])
    (folders["step0"] / "tokenizer.json").write_text("{}")
    (folders["step8"] / "model.safetensors").unlink()                  # a download that stopped half-way
    write_hub_cache(tmp_path / "hub", "org/name", folders)
    source = CheckpointSource("org/name")
    assert source.local is None and source.offline
    assert source.available() == ["step0", "step4", "step8"]
    assert source.resolve("step0,step4") == ["step0", "step4"] and source.resolve("step0..step4") == ["step0", "step4"]
    for requested, message in (("step0,step2", "revision 'step2' of 'org/name' is not in the Hugging Face cache "
                                               "and the hub cannot be reached \\(offline\\); download it"),
                               ("step8", "is in the Hugging Face cache without the weights"),
                               ("step4", "without the tokenizer")):
        with pytest.raises(UserError, match=message) as error:
            source.resolve(requested)
        assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="'org/other' is not a local path, has no revision in the Hugging Face cache"):
        CheckpointSource("org/other").resolve("step0")


def test_folder_not_found(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="checkpoint folder not found"):
        CheckpointSource(str(tmp_path / "missing"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="checkpoint folder not found: out/neox_chekpoints"):
        CheckpointSource("out/neox_chekpoints")                 # a mistyped folder, not a hub name
    assert CheckpointSource("EleutherAI/pythia-1.4b-deduped").local is None


def test_hub_revisions(monkeypatch):
    import common.hub

    monkeypatch.setattr(common.hub, "hub_offline", lambda: False)   # online: names are checked when loaded
    hub = CheckpointSource("EleutherAI/pythia-1.4b-deduped")
    assert hub.resolve("step4,step1".split(",")) == ["step1", "step4"]
    with pytest.raises(UserError, match="unknown revision 'step3'"):
        hub.resolve(["step3"])
    # ranges and patterns are resolved against the repository's branches (listed once)
    listed = []
    monkeypatch.setattr(common.hub, "hub_revisions", lambda name: listed.append(name) or ["main", "step0", "step1",
                                                                                           "step4", "step1000"])
    assert hub.resolve(["all"]) == ["step0", "step1", "step4", "step1000"]
    assert hub.resolve("step1..step512") == ["step1", "step4"] and listed == ["EleutherAI/pythia-1.4b-deduped"]
    assert hub.check_reference("main") == "main"
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


# -- revisions that are repositories (MultiBERTs) and pickled weights (docs/theory.md §17) -------------------
def _bert_folder(folder, seed=0, pickled=False):
    """A tiny BERT revision saved as MultiBERTs ships one: config.json, the weights (pytorch_model.bin when
    `pickled`, a plain torch.save of the state dict) and a WordPiece vocabulary."""
    from common.checkpoints.architectures import BY_NAME
    from conftest import tiny_bert

    model = tiny_bert(seed=seed).float()
    model.save_pretrained(folder)
    if pickled:
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    BY_NAME["bert"].training_tokenizer(["the cat sat on the mat", "a dog ran"], 40).save_pretrained(folder)
    return model


def test_a_revision_template_lists_orders_and_loads_repository_style_folders(tmp_path):
    for name in ("seed1-step_0", "seed1-step_16", "seed1-step_4", "seed10-step_2", "seed2-step_0"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "seed1-step_8").mkdir()                     # no config.json: not a revision
    names = expand_model_names(f"{tmp_path}/seed{{1..2}}-step_{{revision}}")
    assert names == [f"{tmp_path}/seed1-step_{{revision}}", f"{tmp_path}/seed2-step_{{revision}}"]
    source = CheckpointSource(names[0])
    assert source.template and source.local == tmp_path
    assert source.resolve("all") == ["0", "4", "16"]          # by step; seed10's folder is another template's
    assert source.resolve("16,0") == ["0", "16"] and source.resolve("1..10") == ["4"]
    assert source.repository("16") == (f"{tmp_path}/seed1-step_16", "main")
    with pytest.raises(UserError, match="'8' not found"):
        source.resolve("8")
    from common.checkpoints.results import model_folder_name

    assert model_folder_name(names[0]) == "seed1"
    assert model_folder_name("google/multiberts-seed_3-step_{revision}") == "multiberts-seed_3"
    for bad in (f"{tmp_path}/{{revision}}/x", f"{tmp_path}/a{{revision}}b{{revision}}"):
        with pytest.raises(UserError, match="placeholder goes once into the last component"):
            CheckpointSource(bad)
    with pytest.raises(UserError, match="checkpoint folder not found"):
        CheckpointSource(f"{tmp_path}/missing/seed1-step_{{revision}}")


def test_offline_hub_repositories_one_per_revision(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = {}
    for k, step in enumerate(("0k", "20k", "100k")):
        folder = tmp_path / "saved" / step
        models[step] = _bert_folder(folder, seed=k, pickled=True)
        write_hub_cache(tmp_path / "hub", f"google/multiberts-seed_0-step_{step}", {"main": folder})
    write_hub_cache(tmp_path / "hub", "google/multiberts-seed_1-step_0k", {"main": tmp_path / "saved" / "0k"})
    source = CheckpointSource("google/multiberts-seed_0-step_{revision}")
    assert source.local is None and source.offline
    assert source.resolve("all") == ["0k", "20k", "100k"] and source.resolve("0k..40k") == ["0k", "20k"]
    with pytest.raises(UserError, match="revision '40k' of 'google/multiberts-seed_0-step_\\{revision\\}' is not in "
                                        "the Hugging Face cache.*hf download google/multiberts-seed_0-step_40k"):
        source.resolve("0k,40k")
    model = source.load_model("20k")          # pickled weights, read with weights_only=True
    assert type(model).__name__ == "BertForMaskedLM" and not model.training
    for name, tensor in models["20k"].state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert source.load_tokenizer("0k").mask_token == "[MASK]"


class RunsCode:
    """A pickle that runs a shell command when unpickled (what a malicious pytorch_model.bin does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "checkpoints" / "seed0-step_0"
    model = _bert_folder(folder, pickled=True)
    marker = tmp_path / "pwned"
    state = dict(model.state_dict(), payload=RunsCode(marker))
    torch.save(state, folder / "pytorch_model.bin")
    source = CheckpointSource(f"{tmp_path}/checkpoints/seed0-step_{{revision}}")
    with pytest.raises(UserError, match="refused to load pytorch_model.bin of .*only weights_only loading is "
                                        "allowed") as error:
        source.load_model("0")
    assert "\n" not in str(error.value) and not marker.exists()
    # the same weights without the payload load, and equal the model saved
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    loaded = source.load_model("0")
    assert all(torch.equal(loaded.state_dict()[n], t) for n, t in model.state_dict().items())
    # sharded pickles (pytorch_model.bin.index.json) are read shard by shard, each with weights_only=True
    names = sorted(model.state_dict())
    half = len(names) // 2
    for shard, part in (("pytorch_model-00001-of-00002.bin", names[:half]),
                        ("pytorch_model-00002-of-00002.bin", names[half:])):
        torch.save({n: model.state_dict()[n] for n in part}, folder / shard)
    (folder / "pytorch_model.bin").unlink()
    (folder / "pytorch_model.bin.index.json").write_text(__import__("json").dumps({"weight_map": {
        n: "pytorch_model-00001-of-00002.bin" if n in names[:half] else "pytorch_model-00002-of-00002.bin"
        for n in names}}))
    torch.save({names[-1]: RunsCode(marker)}, folder / "pytorch_model-00002-of-00002.bin")
    with pytest.raises(UserError, match="refused to load pytorch_model-00002-of-00002.bin"):
        source.load_model("0")
    assert not marker.exists()
