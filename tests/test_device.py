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


def test_subnormal_floats_are_flushed_on_the_cpu():
    """float32's subnormal range (below 1.2e-38), where a CPU computes many times slower: configure_numerics
    flushes it to zero by default (docs/benchmarks.md §5), and leaves it when asked."""
    tiny, small = torch.tensor([1e-30]), torch.tensor([1e-10])
    try:
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU cannot flush subnormal floats")
        configure_numerics(True, flush_denormal=False)
        assert float(tiny * small) == pytest.approx(1e-40, rel=1e-2)      # a subnormal float32
        configure_numerics(True)
        assert float(tiny * small) == 0.0
        assert float(torch.tensor([1e-20]) * small) == pytest.approx(1e-30)   # normal numbers are untouched
    finally:
        torch.set_flush_denormal(False)   # torch's own start state
