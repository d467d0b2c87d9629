"""The figures docs/results.md quotes are the ones the deterministic demos print.

docs/results_quoted.md holds one table row per quoted figure: its name, the value as quoted, the demo that
makes it and where it is read.  The fast tests check that table against docs/results.md (every value it
lists is quoted there, in the section it names) and that every figure has a reader here; the slow test
(`make test-slow`) reruns the demos with the Makefile's commands and compares each figure, printed at
the quoted precision, with the quoted value.  A change that moves a figure fails here until both
documents quote the new value.

    .venv/bin/python -m pytest -q -m slow tests/scripts/test_quoted_figures.py      # minutes: every demo
    .venv/bin/python tests/scripts/test_quoted_figures.py OUT                       # run the demos into OUT, print the table
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "results_quoted.md"
RESULTS = ROOT / "docs" / "results.md"

# the Makefile's demo targets, as commands run from the repository root with {out} the output folder
DEMOS = {
    "demo": [["demo.py", "--out_dir={out}/demo"]],
    "demo-regime": [["tiny_tokenize_natural.py", "--data=synthetic", "--n_stories=3000", "--out_dir={out}/regime/data"],
                    ["tiny_regime.py", "--data_dir={out}/regime/data", "--out_dir={out}/regime/regime"]],
    "demo-topics": [["topic_structure.py", "--out_dir={out}/topics/structure"],
                    ["train_neox_checkpoints.py", "--dataset=lda", "--out_dir={out}/topics/checkpoints"],
                    ["topic_embeddings.py", "--model_name={out}/topics/checkpoints", "--out_dir={out}/topics/embeddings"]],
    "demo-pythia": [["train_neox_checkpoints.py", "--out_dir={out}/pythia/checkpoints", "--max_steps=2000"],
                    ["pythia.py", "--model_name={out}/pythia/checkpoints", "--revisions=all", "--dataset=synthetic",
                     "--n_examples=4000", "--max_seq_len=64", "--output_dir={out}/pythia/results",
                     "--cache_dir={out}/pythia/cache"]],
}


# -- the table ---------------------------------------------------------------------------------------
def quoted_rows(path: Path = TABLE) -> list:
    """[{figure, quoted, demo, section, read}] of the table in docs/results_quoted.md (the rows between the
    `<!-- quoted figures -->` marker and the first line that is not a table row)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "<!-- quoted figures -->")
    header = [cell.strip() for cell in lines[start + 1].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 3:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        rows.append(dict(zip(header, cells)))
    return rows


def formatted_like(value: float, quoted: str) -> str:
    """`value` written the way `quoted` is: the same decimals, or the same significant digits in
    scientific notation; a sign when the quoted value has one; − and - alike."""
    quoted = quoted.replace("−", "-")
    sign = "+" if quoted.startswith(("+", "-")) else ""
    mantissa = quoted.lstrip("+-")
    if "e" in mantissa:
        digits = len(mantissa.split("e")[0].split(".")[1]) if "." in mantissa else 0
        return f"{value:{sign}.{digits}e}"
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return f"{value:{sign}.{digits}f}"


# -- where each figure is read -------------------------------------------------------------------------
def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _demo_log(out: Path) -> list:
    return _json(out / "demo" / "run" / "training_logs.json")


def _at_tau(logs: list, tau: float) -> dict:
    return min(logs, key=lambda entry: abs(entry["step"] * entry["lr"] - tau))


def _layers(entry: dict, kind_key: str) -> list:
    return [entry[key] for key in sorted(entry) if re.fullmatch(rf"layer_\d+_{kind_key}", key)]


def _demo_row(out: Path, tau: float, column: str) -> float:
    entry = _at_tau(_demo_log(out), tau)
    return {"tau": entry["step"] * entry["lr"], "cos_W_O": entry["W_O_B_bar"],
            "worst_cos_W": min(_layers(entry, "W_Q_bar")), "rel_err_W_O": entry["W_O_B_bar_rel_err"],
            "worst_rel_err_V": max(_layers(entry, "V_B_bar_Phi_bar_rel_err")),
            "worst_rel_err_W": max(_layers(entry, "W_Q_bar_rel_err"))}[column]


def _causal(out: Path) -> dict:
    return _json(out / "demo" / "run" / "causal.json")


def _regime(out: Path) -> dict:
    return _json(out / "regime" / "regime" / "regime.json")


def _topics(out: Path) -> dict:
    return _json(out / "topics" / "structure" / "topic_structure.json")


READERS = {}


def reader(name):
    def register(function):
        READERS[name] = function
        return function
    return register


for _tau in (4.5, 16.7, 29.2, 41.4):
    for _column in ("tau", "cos_W_O", "worst_cos_W", "rel_err_W_O", "worst_rel_err_V", "worst_rel_err_W"):
        READERS[f"demo.tau{_tau}.{_column}"] = (lambda t, c: lambda out: _demo_row(out, t, c))(_tau, _column)
for _layer in range(3):
    for _kind, _key in (("V", "V_B_bar_Phi_bar"), ("W", "W_Q_bar"), ("P", "P_p_bar")):
        READERS[f"demo.final.cos_{_kind}{_layer}"] = (lambda k: lambda out: _demo_log(out)[-1][k])(f"layer_{_layer}_{_key}")
READERS["demo.final.cos_W_O"] = lambda out: _demo_log(out)[-1]["W_O_B_bar"]
READERS["demo.final.tau"] = lambda out: _demo_log(out)[-1]["step"] * _demo_log(out)[-1]["lr"]
READERS["demo.final.steps"] = lambda out: _demo_log(out)[-1]["step"]


def run_demos(out: Path, names=tuple(DEMOS)) -> None:
    """Run the named demos into `out` with the Makefile's commands (the Python of this process)."""
    for name in names:
        for command in DEMOS[name]:
            args = [arg.format(out=out) for arg in command]
            subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    run_demos(target, sys.argv[2:] or tuple(DEMOS))
