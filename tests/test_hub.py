import time

import pytest

from common import hub
from common.io import UserError


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
