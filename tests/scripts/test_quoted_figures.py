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
                     "--cache_dir={out}/pythia/cache"],
                    *[["pythia_per_head.py", "--model_name={out}/pythia/checkpoints", "--revisions=all",
                       f"--target_layer={layer}", "--dataset=synthetic", "--n_examples=4000", "--max_seq_len=64",
                       "--output_dir={out}/pythia/results", "--cache_dir={out}/pythia/cache"] for layer in (0, 1)],
                    # and the comparison with the projections' biases docs/results.md §4 quotes beside it
                    ["pythia.py", "--model_name={out}/pythia/checkpoints", "--revisions=all", "--dataset=synthetic",
                     "--n_examples=4000", "--max_seq_len=64", "--output_dir={out}/pythia/results_bias",
                     "--cache_dir={out}/pythia/cache", "--attention_bias=True"]],
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
        significand, exponent = f"{value:{sign}.{digits}e}".split("e")
        return f"{significand}e{int(exponent)}"                 # e-5, as quoted, not e-05
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


def _causal_change(out: Path, weight: str) -> float:
    return next(row["loss_change"] for row in _causal(out)["rows"] if row["weight"] == weight)


def _regime(out: Path) -> dict:
    return _json(out / "regime" / "regime" / "regime.json")


def _topics(out: Path) -> dict:
    return _json(out / "topics" / "structure" / "topic_structure.json")


PYTHIA_FILES = {"attention": "attention_comparison_summary.json", "no_mlp": "cosine_similarity_summary_mids.json",
                "embedding": "cosine_similarity_summary.json"}


def _pythia(out: Path, measure: str, layer: int, revision: str, results: str = "results") -> float:
    path = out / "pythia" / results / f"revision_{revision}" / "matrix_theoretical" / PYTHIA_FILES[measure]
    return _json(path)[f"layer_{layer}"]["cosine_similarity"]


def _pythia_steps(out: Path) -> list:
    return sorted(int(p.name.split("step")[1]) for p in (out / "pythia" / "results").glob("revision_step*"))


def _pythia_range(out: Path, measures, layer: int, low: int, high: int, pick) -> float:
    return pick(_pythia(out, m, layer, f"step{s}") for m in measures for s in _pythia_steps(out) if low <= s <= high)


def _last_attention(entry: dict) -> str:
    return max((key for key in entry if key.startswith("attention_layer_")), key=lambda k: int(k.rsplit("_", 1)[1]))


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
READERS["demo.causal.W_O"] = lambda out: _causal_change(out, "W_O_B_bar")
READERS["demo.causal.V.min"] = lambda out: min(_causal_change(out, f"layer_{l}_V_B_bar_Phi_bar") for l in range(3))
READERS["demo.causal.V.max"] = lambda out: max(_causal_change(out, f"layer_{l}_V_B_bar_Phi_bar") for l in range(3))
READERS["demo.attention.entropy.min"] = lambda out: min(a["entropy_of_uniform"] for a in _causal(out)["attention"])
for _field, _symbol in (("bigram", "B"), ("attention_map", "Q")):
    for _bin in ("same_topic", "different_topic"):
        READERS[f"topics.theory.{_symbol}.{_bin}"] = (lambda f, b: lambda out: _topics(out)["theory"][f][b])(_field, _bin)
    del _bin
for _bin in ("same_topic", "different_topic"):
    READERS[f"topics.trained.W_O_cosine.{_bin}"] = (lambda b: lambda out: _topics(out)["trained"][-1]["W_O_cosine"][b])(_bin)
    READERS[f"topics.trained.attention_layer0.{_bin}"] = (
        lambda b: lambda out: _topics(out)["trained"][-1]["attention_layer_0"][b])(_bin)
    READERS[f"topics.trained.attention_last.{_bin}"] = (
        lambda b: lambda out: _topics(out)["trained"][-1][_last_attention(_topics(out)["trained"][-1])][b])(_bin)
    READERS[f"topics.leading.attention_last.{_bin}"] = (
        lambda b: lambda out: _topics(out)["leading_terms"][-1][_last_attention(_topics(out)["leading_terms"][-1])][b])(_bin)
    READERS[f"topics.embeddings.step1000.{_bin}"] = (
        lambda b: lambda out: next(r for r in _json(out / "topics" / "embeddings" / "topic_embeddings.json")["revisions"]
                                   if r["revision"] == "step1000")["cosine"][b])(_bin)
for _kind in ("W_O", "V", "W", "P"):
    for _lr in ("0.3", "1.0", "3.0"):
        READERS[f"regime.{_kind}.measured.lr{_lr}"] = (lambda k, l: lambda out: _regime(out)[k]["measured_tau"][l])(_kind, _lr)
    READERS[f"regime.{_kind}.predicted"] = (lambda k: lambda out: _regime(out)[k]["predicted_tau"])(_kind)
    READERS[f"regime.{_kind}.measured.min"] = (lambda k: lambda out: min(_regime(out)[k]["measured_tau"].values()))(_kind)
    READERS[f"regime.{_kind}.measured.max"] = (lambda k: lambda out: max(_regime(out)[k]["measured_tau"].values()))(_kind)
for _measure in ("no_mlp", "embedding"):
    READERS[f"pythia.{_measure}.layer1.peak"] = (lambda m: lambda out: _pythia_range(out, [m], 1, 0, 10 ** 9, max))(_measure)
READERS["pythia.late.layer1.min"] = lambda out: _pythia_range(out, ["no_mlp", "embedding"], 1, 256, 2000, min)
READERS["pythia.late.layer1.max"] = lambda out: _pythia_range(out, ["no_mlp", "embedding"], 1, 256, 2000, max)
for _measure in PYTHIA_FILES:
    for _layer in (0, 1):
        for _step in (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000):
            READERS[f"pythia.{_measure}.layer{_layer}.step{_step}"] = (
                lambda m, l, s: lambda out: _pythia(out, m, l, f"step{s}"))(_measure, _layer, _step)
for _layer in (0, 1):
    for _head in range(4):
        for _step in (64, 128, 512, 1000, 2000):
            READERS[f"pythia.head.layer{_layer}.head{_head}.step{_step}"] = (
                lambda l, h, s: lambda out: _json(out / "pythia" / "results" / f"revision_step{s}" / f"layer_{l}"
                                                  / "per_head_results.json")[f"head_{h}"]["cosine_similarity"])(
                _layer, _head, _step)
    for _step in (0, 8, 64, 512, 1000, 2000):
        READERS[f"pythia_bias.attention.layer{_layer}.step{_step}"] = (
            lambda l, s: lambda out: _pythia(out, "attention", l, f"step{s}", "results_bias"))(_layer, _step)
READERS["demo.attention.spread.min"] = lambda out: min(a["logit_spread"] for a in _causal(out)["attention"])
READERS["demo.vocab_size"] = lambda out: _json(out / "demo" / "data" / "summary.json")["vocab_size"]
READERS["demo.attention.spread.max"] = lambda out: max(a["logit_spread"] for a in _causal(out)["attention"])
READERS["demo.final.tau"] = lambda out: _demo_log(out)[-1]["step"] * _demo_log(out)[-1]["lr"]
READERS["demo.final.steps"] = lambda out: _demo_log(out)[-1]["step"]


# -- the checks --------------------------------------------------------------------------------------
def results_section(number: str) -> str:
    """The text of section `number` of docs/results.md (from its `## N.` heading to the next `## `)."""
    text = RESULTS.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(number)}\.(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/results.md has no section {number}"
    return match.group(1)


def quoted_in(value: str, text: str) -> bool:
    """`value` stands in `text` as a number of its own (not part of a longer one); − and - alike."""
    text, value = text.replace("−", "-"), value.replace("−", "-")
    return re.search(rf"(?<![\d.]){re.escape(value.lstrip('+'))}(?![\d])", text) is not None


def test_every_quoted_figure_has_a_reader_a_demo_and_a_number():
    rows = quoted_rows()
    assert len(rows) >= 40 and len({row["figure"] for row in rows}) == len(rows)
    for row in rows:
        assert row["figure"] in READERS, f"no reader for {row['figure']}"
        assert row["demo"] in DEMOS, row
        float(row["quoted"].replace("−", "-"))
        assert formatted_like(float(row["quoted"].replace("−", "-")), row["quoted"]) == row["quoted"].replace("−", "-")


def test_docs_results_quotes_each_figure_where_the_table_says():
    missing = [f"§{row['section']} {row['figure']} = {row['quoted']}" for row in quoted_rows()
               if not quoted_in(row["quoted"], results_section(row["section"]))]
    assert not missing, "docs/results.md does not quote: " + "; ".join(missing)


def test_formatted_like_keeps_the_quoted_precision():
    assert formatted_like(0.96912, "0.97") == "0.97" and formatted_like(1.1957, "1.20") == "1.20"
    assert formatted_like(4.2613e-13, "+4.34e-13") == "+4.26e-13" and formatted_like(-0.0644, "−0.066") == "-0.064"
    assert formatted_like(-4.9875e-5, "−5.00e-5") == "-4.99e-5"
    assert formatted_like(712.0, "712") == "712" and formatted_like(16.650000000000002, "16.7") == "16.7"
    assert quoted_in("0.97", "W_O 0.97; V 0.93") and not quoted_in("0.97", "0.975") and not quoted_in("0.9", "10.9")
    assert quoted_in("−0.066", "against -0.066 at") and quoted_in("+4.50e-4", "B̄ +4.50e-4 /")


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    run_demos(out, sorted({row["demo"] for row in quoted_rows()}))
    return out


@pytest.mark.slow
def test_the_demos_print_the_quoted_figures(demo_outputs):
    wrong = []
    for row in quoted_rows():
        value = formatted_like(float(READERS[row["figure"]](demo_outputs)), row["quoted"])
        if value != row["quoted"].replace("−", "-"):
            wrong.append(f"{row['figure']}: quoted {row['quoted']}, the demo prints {value}")
    assert not wrong, "; ".join(wrong)


def run_demos(out: Path, names=tuple(DEMOS)) -> None:
    """Run the named demos into `out` with the Makefile's commands (the Python of this process)."""
    for name in names:
        for command in DEMOS[name]:
            args = [arg.format(out=out) for arg in command]
            subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if sys.argv[2:] != ["--read"]:
        run_demos(target, sys.argv[2:] or tuple(DEMOS))
    for row in quoted_rows():   # each figure as the demos print it, beside the quoted value
        try:
            value = formatted_like(float(READERS[row["figure"]](target)), row["quoted"])
        except (OSError, KeyError, StopIteration) as error:
            value = f"not read ({error.__class__.__name__})"
        print(f"{row['figure']:<40} quoted {row['quoted']:>10}   printed {value}")
