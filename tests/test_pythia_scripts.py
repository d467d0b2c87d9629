"""End to end: train tiny Pythia-style checkpoints, run both comparison scripts and both plots on a
small local corpus, reuse the statistics cache, and refuse bad input with one line."""
import json
import subprocess
import sys

import pytest

from common.synthetic import generate_stories
from tests.conftest import ROOT, run_script as run

TINY = ["--max_seq_len=16", "--n_examples=120"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pythia")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(generate_stories(150, seed=3)), encoding="utf-8")
    trained = run("train_neox_checkpoints.py", f"--dataset={corpus}", "--n_documents=150", "--vocab_size=300",
                  "--max_seq_len=16", "--hidden_size=16", "--n_layers=2", "--n_heads=2", "--batch_size=4",
                  "--max_steps=4", f"--out_dir={root / 'ckpt'}")
    common = [f"--model_name={root / 'ckpt'}", f"--dataset={corpus}", f"--cache_dir={root / 'cache'}", *TINY]
    first = run("pythia.py", "--revisions=all", f"--output_dir={root / 'out'}", *common)
    second = run("pythia.py", "--revisions=step0,step4", f"--output_dir={root / 'again'}", *common)
    heads = run("pythia_per_head.py", "--steps=step4,step1,step2", "--target_layer=1", f"--output_dir={root / 'out'}",
                *common)
    plots = [run("plot_cosine_similarity.py", f"--results_dir={root / 'out'}"),
             run("plot_per_head_similarity.py", f"--results_dir={root / 'out'}")]
    return {"root": root, "corpus": corpus, "common": common, "trained": trained, "first": first,
            "second": second, "heads": heads, "plots": plots}


def test_trainer_writes_the_revision_layout(pipeline):
    ckpt = pipeline["root"] / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == ["step0", "step1", "step2", "step4"]
    for step in ("step0", "step4"):
        names = {p.name for p in (ckpt / step).iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "training_state.json"} <= names
    config = json.loads((ckpt / "step4" / "config.json").read_text())
    assert config["use_parallel_residual"] and config["rope_parameters"]["partial_rotary_factor"] == 0.25
    assert [e["step"] for e in json.loads((ckpt / "training_log.json").read_text())] == [1, 2, 4]
    assert not list(ckpt.glob(".*tmp"))


def test_layer_comparison_outputs(pipeline):
    out = pipeline["root"] / "out"
    for step in ("step0", "step1", "step2", "step4"):
        folder = out / f"revision_{step}" / "matrix_theoretical"
        for name in ("attention_comparison_summary.json", "cosine_similarity_summary_mids.json",
                     "cosine_similarity_summary.json"):
            summary = json.loads((folder / name).read_text())
            assert list(summary) == ["layer_0", "layer_1"]
            assert all(-1 <= v["cosine_similarity"] <= 1 for v in summary.values())
    # the second run (another output folder, same tokenizer + corpus + settings) reuses the statistics
    assert "using the cache" not in pipeline["first"].stderr + pipeline["first"].stdout
    assert "using the cache" in pipeline["second"].stderr + pipeline["second"].stdout
    assert "using the cache" in pipeline["heads"].stderr + pipeline["heads"].stdout
    assert len(list((pipeline["root"] / "cache").glob("*.safetensors"))) == 1
    again = json.loads((pipeline["root"] / "again" / "revision_step4" / "matrix_theoretical" /
                        "cosine_similarity_summary.json").read_text())
    assert again == json.loads((out / "revision_step4" / "matrix_theoretical" /
                                "cosine_similarity_summary.json").read_text())


def test_per_head_outputs_and_figures(pipeline):
    out = pipeline["root"] / "out"
    for step in ("step1", "step2", "step4"):
        heads = json.loads((out / f"revision_{step}" / "layer_1" / "per_head_results.json").read_text())
        assert heads["head_1"]["head_idx"] == 1 and len(heads) == 2
        assert all(-1 <= h["cosine_similarity"] <= 1 for h in heads.values())
    combined = json.loads((out / "per_head_layer_1.json").read_text())
    assert list(combined) == ["step1", "step2", "step4"]
    for stem in ("cosine_similarity_heatmaps", "per_head_layer_1", "per_head_grid"):
        for suffix in (".png", ".pdf"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000


BAD = {
    "unknown revision name": (["pythia.py", "--revisions=main"], "unknown revision 'main'"),
    "revision missing from the folder": (["pythia.py", "--revisions=step0,step8"], "revision 'step8' not found"),
    "no document of T+1 tokens": (["pythia.py", "--revisions=step0", "--max_seq_len=5000"], "no document among"),
    "top_tokens above the vocabulary": (["pythia.py", "--revisions=step0", "--top_tokens=100000"], "--top_tokens=100000"),
    "layer out of range": (["pythia_per_head.py", "--steps=step1", "--target_layer=2"], "--target_layer=2 is out of range"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_no_outputs(pipeline, case, tmp_path):
    (script, *args), message = BAD[case]
    # later options win, so the case's own options come after the shared ones
    done = run(script, *pipeline["common"], *args, f"--output_dir={tmp_path / 'out'}", check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and lines and message in lines[-1] and lines[-1].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_failed_download_and_bad_folder(tmp_path):
    done = run("pythia.py", "--revisions=step0", f"--output_dir={tmp_path / 'out'}", "--dataset=synthetic",
               check=False)   # the default hub model, offline
    assert done.returncode != 0 and done.stderr.strip().splitlines()[-1].startswith("error: could not load")
    done = run("pythia.py", f"--model_name={tmp_path / 'nothing'}", f"--output_dir={tmp_path / 'out'}", check=False)
    assert done.returncode != 0 and "checkpoint folder not found" in done.stderr
    assert not (tmp_path / "out").exists()


def test_benchmarks_at_tiny_sizes_gpu_one_without_datasets():
    # the GPU machine has no `datasets`: the GPU benchmark must run with its import blocked
    code = ("import sys, runpy; sys.modules['datasets'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks/gpu_pythia_bench.py"), "--device=cpu",
                           "--n_layers=2", "--d_model=16", "--n_heads=2", "--intermediate_size=32",
                           "--vocab_size=60", "--n_documents=20", "--seq_len=8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| total |" in done.stdout and "similarities (2 layers × 3)" in done.stdout
    done = run("benchmarks/pythia_bench.py", "--n_tokens=80", "--d_model=8", "--stats_vocab=300",
               "--stats_documents=10", "--seq_len=8", "--dense_vocab=100")
    assert "ratio" in done.stdout and "at V = 300: pass 1 scatter" in done.stdout
