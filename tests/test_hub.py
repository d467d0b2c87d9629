import time

import pytest

from common import hub
from common.io import UserError
from conftest import write_hub_cache


def test_offline_variables_fail_at_once(monkeypatch):
    for variable in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    with pytest.raises(UserError, match="'org/model' is not a local path .*offline.*pass a folder"):
        hub.require_hub("org/model", "pass a folder")


def test_unreachable_host_is_detected_quickly(monkeypatch):
    for variable in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    # an unreachable hub is detected in one attempt, not after retries
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")   # a name that never resolves
    hub._reachable.cache_clear()
    start = time.time()
    assert hub.hub_offline(timeout=0.5)
    assert time.time() - start < 3
    assert hub.hub_offline(timeout=0.5)          # remembered: no second wait
    hub._reachable.cache_clear()


def test_cached_revisions_are_the_refs_whose_snapshot_exists(tmp_path, monkeypatch):
    from huggingface_hub import constants, try_to_load_from_cache

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert hub.hub_cache_dir() == cache and hub.cached_revisions("org/name") == {}
    for name, text in (("step0", "a"), ("step4", "b"), ("main", "b")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
        (tmp_path / name / "model.safetensors").write_bytes(text.encode() * 3)
    commits = write_hub_cache(cache, "org/name", {r: tmp_path / r for r in ("step0", "step4", "main")})
    found = hub.cached_revisions("org/name")
    assert sorted(found) == ["main", "step0", "step4"]
    assert found["step4"] == cache / "models--org--name" / "snapshots" / commits["step4"]
    # the layout is the one huggingface_hub itself reads: its own lookup finds the same file
    assert try_to_load_from_cache("org/name", "config.json", revision="step4") == str(found["step4"] / "config.json")
    assert (found["step4"] / "config.json").read_text() == "b"
    assert (found["main"] / "model.safetensors").resolve() == (found["step4"] / "model.safetensors").resolve()
    # a ref whose snapshot is gone is not a cached revision
    (cache / "models--org--name" / "refs" / "step8").write_text("0" * 40)
    assert "step8" not in hub.cached_revisions("org/name")
    assert hub.cached_snapshot("org/name", "step0") == found["step0"] and hub.cached_snapshot("org/name", "x") is None
