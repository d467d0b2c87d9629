"""The Tiny Stories scripts as a user runs them: outputs on good input, one `error:` line, a non-zero
exit and no partial output on bad input (docs/theory.md §5, §8)."""
import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import tiny_stories, write_txt
from conftest import ROOT, run_script as run

TRAIN = ["--seq_len=16", "--batch_size=8", "--epochs=2", "--lr=0.5", "--log_every=0.5", "--save_every=1",
         "--progress=False", "--device=cpu", "--report_top=3", "--report_tokens=3", "--report_words=bird"]


def files_under(path: Path) -> list:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """tokenize (natural, from a .txt) → train → plot → causal, once for the module."""
    tmp = tmp_path_factory.mktemp("scripts")
    corpus = write_txt(tmp / "stories.txt", tiny_stories(96))
    data, out = tmp / "natural", tmp / "run"
    summary = run("tiny_tokenize_natural.py", f"--data={corpus}", f"--out_dir={data}").stdout
    training = run("tiny_self_attn_natural.py", f"--data_dir={data}", f"--out_dir={out}", *TRAIN).stdout
    plot = run("tiny_plot_logs.py", f"--log={out / 'training_logs.json'}").stdout
    causal = run("tiny_causal.py", f"--out_dir={out}", "--progress=False").stdout
    return {"tmp": tmp, "corpus": corpus, "data": data, "out": out, "summary": summary, "training": training,
            "plot": plot, "causal": causal}


def test_pipeline_outputs(pipeline):
    data, out = pipeline["data"], pipeline["out"]
    assert "stories kept   96 of 96" in pipeline["summary"]
    assert {"stories", "vocabulary.json", "token_frequencies.json", "summary.json"} <= set(files_under(data))
    assert "final loss" in pipeline["training"] and "association report" in pipeline["training"]
    for name in ("training_curves.png", "training_curves.pdf", "associations.md", "causal.json", "config.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "training_curves.pdf").read_bytes()[:4] == b"%PDF"
    assert "`flew`" in (out / "associations.md").read_text()


def test_causal_output(pipeline):
    result = json.loads((pipeline["out"] / "causal.json").read_text())
    rows = {row["weight"]: row for row in result["rows"]}
    assert set(rows) == {"W_O_B_bar"} | {f"layer_{l}_{k}" for l in range(3)
                                         for k in ("W_Q_bar", "V_B_bar_Phi_bar", "P_p_bar")}
    assert result["step"] == 24 and result["sequences"] == 96
    # W_O is almost all B̄ early on: removing that direction undoes most of what training gained
    assert rows["W_O_B_bar"]["removed_fraction"] > 0.5 and rows["W_O_B_bar"]["loss_change"] > 0.01
    for row in rows.values():
        assert row["loss"] == pytest.approx(result["baseline_loss"] + row["loss_change"])
    assert "baseline loss" in pipeline["causal"] and "W_O_B_bar" in pipeline["causal"]


def test_bpe_scripts(tmp_path):
    corpus = write_txt(tmp_path / "stories.txt", tiny_stories(64))
    data = tmp_path / "bpe"
    summary = run("tiny_tokenize_bpe.py", f"--data={corpus}", f"--out_dir={data}", "--vocab_size=80").stdout
    assert "bpe tokenizer" in summary and (data / "tokenizer.json").exists()
    run("tiny_self_attn_bpe.py", f"--data_dir={data}", f"--out_dir={tmp_path / 'run'}", "--seq_len=16",
        "--batch_size=4", "--grad_accum=2", "--epochs=2", "--max_steps_per_epoch=3", "--log_every=0.5",
        "--progress=False", "--device=cpu", "--report_top=0")
    logs = json.loads((tmp_path / "run" / "training_logs.json").read_text())
    assert [e["step"] for e in logs] == [2, 3, 5, 6] and logs[-1]["epoch"] == 2.0    # 3 steps per epoch


def check_error(result, message, where: Path, before: list):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert files_under(where) == before, "partial output left behind"


@pytest.mark.parametrize("case", ["missing", "not_utf8", "empty", "all_filtered"])
def test_tokenizer_bad_input(tmp_path, case):
    corpus = tmp_path / "stories.txt"
    content = {"missing": None, "not_utf8": b"The cat sat.\n\nCaf\xe9 au lait.\n", "empty": b"\n \n\n",
               "all_filtered": "The cat sat on the mat.\n\nA dog ran.\n".encode()}[case]
    if content is not None:
        corpus.write_bytes(content)
    script = "tiny_tokenize_bpe.py" if case == "empty" else "tiny_tokenize_natural.py"
    extra = ["--vocab_size=2"] if case == "all_filtered" else []
    message = {"missing": "data not found", "not_utf8": "is not UTF-8", "empty": "corpus is empty",
               "all_filtered": "no story has all its tokens"}[case]
    before = files_under(tmp_path)
    result = run(script, f"--data={corpus}", f"--out_dir={tmp_path / 'out'}", *extra, check=False)
    check_error(result, message, tmp_path, before)


def test_trainer_bad_input(pipeline, tmp_path):
    data, out = pipeline["data"], tmp_path / "run"
    result = run("tiny_self_attn_natural.py", f"--data_dir={data}", f"--out_dir={out}", *TRAIN, "--seq_len=400",
                 check=False)
    check_error(result, "longer than every story", tmp_path, [])
    result = run("tiny_self_attn_natural.py", f"--data_dir={tmp_path / 'nothing'}", f"--out_dir={out}", check=False)
    check_error(result, "data folder not found", tmp_path, [])
    # a vocabulary that does not match the stories
    shutil.copytree(data, tmp_path / "data")
    vocabulary = json.loads((tmp_path / "data" / "vocabulary.json").read_text())
    swapped = {token: len(vocabulary) - 1 - i for token, i in vocabulary.items()}      # same tokens, other ids
    (tmp_path / "data" / "vocabulary.json").write_text(json.dumps(swapped))
    before = files_under(tmp_path)
    result = run("tiny_self_attn_natural.py", f"--data_dir={tmp_path / 'data'}", f"--out_dir={out}", *TRAIN, check=False)
    check_error(result, "does not match the tokenized stories", tmp_path, before)


def test_resume_and_causal_refuse_a_mismatched_run(pipeline, tmp_path):
    shutil.copytree(pipeline["out"], tmp_path / "run")
    before = files_under(tmp_path)
    result = run("tiny_self_attn_natural.py", f"--data_dir={pipeline['data']}", f"--out_dir={tmp_path / 'run'}",
                 *TRAIN, "--seq_len=12", "--resume=True", check=False)
    check_error(result, "comes from another configuration (seq_len 16 there, 12 now)", tmp_path, before)
    # other data: a corpus tokenized from different stories
    other = write_txt(tmp_path / "other.txt", tiny_stories(90, seed=5))
    run("tiny_tokenize_natural.py", f"--data={other}", f"--out_dir={tmp_path / 'other'}")
    before = files_under(tmp_path)
    result = run("tiny_causal.py", f"--out_dir={tmp_path / 'run'}", f"--data_dir={tmp_path / 'other'}",
                 f"--output={tmp_path / 'causal.json'}", check=False)
    check_error(result, "trained on", tmp_path, before)


@pytest.mark.slow
def test_make_demo_runs_and_shows_the_planted_pairs():
    result = run("demo.py")
    assert "final cosines" in result.stdout
    report = (ROOT / "out" / "demo" / "run" / "associations.md").read_text()
    bird = report[report.index("## `bird`"):]
    assert "| B̄ | a → next token | `flew`" in bird and "| W_O | trained, as B̄ | `flew`" in bird


def test_benchmarks_run_at_tiny_sizes_without_datasets():
    """The GPU benchmark must run where `datasets` is absent: block its import."""
    code = ("import sys, runpy; sys.modules['datasets'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = run("-c", code, "benchmarks/gpu_train_bench.py", "--device=cpu", "--natural_vocab=30",
                 "--bpe_vocab=40", "--natural_batch=2", "--bpe_batch=2", "--bpe_accum=2", "--seq_len=8",
                 "--steps=1", "--stats_sequences=4")
    assert "TFLOP/s" in result.stdout and result.stdout.count("natural") == 2 and "BPE" in result.stdout
    assert "statistics (float64) of 4 sequences" in result.stdout
    result = run("benchmarks/train_bench.py", "--vocab_size=30", "--seq_len=8", "--batch_size=2", "--repeats=1")
    assert "speed-up ours/naive" in result.stdout


@pytest.mark.slow   # four fresh processes (about 15 s on an idle machine, a minute under load)
def test_lr_step_benchmark_runs_at_a_tiny_size():
    """benchmarks/lr_step_bench.py: four settings (two learning rates, denormal flushing off and on), each
    timed in a fresh process, the ratios and the comparison of the weights printed."""
    result = run("benchmarks/lr_step_bench.py", "--vocab_size=30", "--seq_len=8", "--batch_size=4", "--steps=2",
                 "--rounds=1", "--n_stories=50")
    lines = result.stdout.splitlines()
    assert [line.split()[:3] for line in lines if "ratio" in line] == [["denormal", "flushing", "off"],
                                                                      ["denormal", "flushing", "on"]]
    assert sum("weights after 2 steps with flushing on and off" in line for line in lines) == 2


def test_the_tokenizers_help_names_every_kind_of_data():
    for script in ("tiny_tokenize_natural.py", "tiny_tokenize_bpe.py"):
        text = run(script, "--help").stdout
        assert "synthetic" in text and "lda" in text, script
