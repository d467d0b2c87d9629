"""Every script answers --help with its docstring and hyperparameters, and does nothing else."""
from pathlib import Path

from conftest import ROOT, run_script


SCRIPTS = sorted(p.name for p in ROOT.glob("*.py"))


def test_every_script_answers_help_without_side_effects(tmp_path):
    """`--help` prints the docstring and the hyperparameters and touches nothing (demo.py used to
    delete out/demo and rerun the demo)."""
    root = ROOT
    before = {p for p in root.rglob("*") if "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}
    for name in SCRIPTS:
        result = run_script(name, "--help", timeout=120)
        assert "hyperparameters (override with --name=value)" in result.stdout, name
        assert result.stdout.lstrip().split("\n")[0], name          # the docstring comes first
    after = {p for p in root.rglob("*") if "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}
    assert after == before
