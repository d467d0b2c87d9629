import pytest
import torch

from common.device import configure_numerics, resolve_device, setup_processes
from common.io import UserError
from conftest import run_script


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    for typo in ("cpuu", "gpu", "cuda:x", ""):
        with pytest.raises(UserError, match="unknown --device"):
            resolve_device(typo)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no GPU is visible"):
            resolve_device("cuda")
    processes = setup_processes("cpu")
    assert (processes.rank, processes.world, processes.main) == (0, 1, True)


def test_deterministic_numerics_switch():
    try:
        configure_numerics(True)
        assert torch.are_deterministic_algorithms_enabled()
        configure_numerics(False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        configure_numerics(True)


def test_a_device_typo_is_one_line(tmp_path):
    result = run_script("tiny_causal.py", f"--out_dir={tmp_path}", "--device=cpuu", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: unknown --device='cpuu'; use auto, cpu, cuda or cuda:N"]
