"""End to end: train tiny Pythia-style checkpoints, run both comparison scripts and both plots on a
small local corpus, reuse the statistics cache, and refuse bad input with one line; the same comparison
on local folders of GPT-2, Llama (grouped-query, trained by train_neox_checkpoints.py) and OLMo revisions,
with a repeated revision flagged."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from common.checkpoints.architectures import BY_NAME
from common.checkpoints.comparison import ComparisonConfig, run_head_comparison, run_layer_comparison
from common.io import UserError
from common.checkpoints.results import plot_head_results, plot_layer_results
from common.corpus.synthetic import generate_stories
from conftest import ROOT, run_script as run
from conftest import tiny_model

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
                *common)   # --steps: the release's name of --revisions
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
    "suggests all": (["pythia_per_head.py", "--revisions=step8"], "--revisions=all reads every one"),
    "no document of T+1 tokens": (["pythia.py", "--revisions=step0", "--max_seq_len=5000"], "no document among"),
    "top_tokens above the vocabulary": (["pythia.py", "--revisions=step0", "--top_tokens=100000"], "--top_tokens=100000"),
    "layer out of range": (["pythia_per_head.py", "--revisions=step1", "--target_layer=2"],
                           "--target_layer=2 is out of range"),
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
               check=False)   # the default hub model, offline: refused at once
    assert done.returncode != 0 and "hub cannot be reached (offline)" in done.stderr.strip().splitlines()[-1]
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


# ---------------------------------------------------------------------------------------------
# other families
def _revision_folder(root, family, tokenizer, duplicate=True):
    """Three revisions of a tiny random model of `family`, named by its convention; the second repeats the
    first one's weights (as Pythia's step0 and step1 do)."""
    architecture = BY_NAME[family]
    model = tiny_model(family, seed=4, layers=2, d=16, heads=4, vocab=len(tokenizer)).float()
    names = [architecture.revision_name(step, step * 10 ** 9) for step in (0, 1, 2)]
    for index, name in enumerate(names):
        if index == 2 or (index == 1 and not duplicate):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return names


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory):
    from common.corpus.tokenize import causal_lm_tokenizer

    root = tmp_path_factory.mktemp("families")
    stories = generate_stories(120, seed=5)
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(stories), encoding="utf-8")
    tokenizer = causal_lm_tokenizer(stories, 60)   # the tiny models' vocabulary
    return root, corpus, tokenizer


def _config(folder, corpus, root, **overrides):
    return ComparisonConfig(**dict(dict(model_name=str(folder), revisions=["all"], dataset=str(corpus),
                                        n_examples=120, max_seq_len=16, device="cpu",
                                        output_dir=str(root / "out"), cache_dir=str(root / "cache")), **overrides))


@pytest.mark.parametrize("family", ["gpt2", "olmo"])
def test_family_end_to_end_with_a_repeated_revision(family, corpus_and_tokenizer):
    root, corpus, tokenizer = corpus_and_tokenizer
    root = root / family
    names = _revision_folder(root / "ckpt", family, tokenizer)
    messages = []
    layers = run_layer_comparison(_config(root / "ckpt", corpus, root), log=messages.append)
    assert list(layers) == names
    for name in names:
        for file in ("attention_comparison_summary.json", "cosine_similarity_summary.json"):
            summary = json.loads((root / "out" / f"revision_{name}" / "matrix_theoretical" / file).read_text())
            assert list(summary) == ["layer_0", "layer_1"]
            assert all(-1 <= v["cosine_similarity"] <= 1 for v in summary.values())
    assert layers[names[1]] == layers[names[0]] and layers[names[2]] != layers[names[0]]
    record = json.loads((root / "out" / "revisions.json").read_text())
    assert record[names[1]]["duplicate_of"] == names[0] and record[names[1]]["weights_sha256"] == \
        record[names[0]]["weights_sha256"]
    assert "duplicate_of" not in record[names[0]] and "duplicate_of" not in record[names[2]]
    assert any(m.startswith(f"{names[1]} holds the same weights as {names[0]}") for m in messages)
    heads = run_head_comparison(_config(root / "ckpt", corpus, root, target_layer=1), log=messages.append)
    assert [len(v) for v in heads.values()] == [4, 4, 4]
    assert sum("using the cache" in m for m in messages) == 1      # the per-head run reused the statistics
    for path in plot_layer_results(root / "out") + plot_head_results(root / "out"):
        assert path.stat().st_size > 1000


def test_llama_with_grouped_query_attention_trained_and_compared(corpus_and_tokenizer):
    root, corpus, _ = corpus_and_tokenizer
    ckpt = root / "llama"
    run("train_neox_checkpoints.py", "--architecture=llama", "--n_kv_heads=2", "--n_heads=4", f"--dataset={corpus}",
        "--n_documents=120", "--vocab_size=200", "--max_seq_len=16", "--hidden_size=16", "--n_layers=2",
        "--batch_size=4", "--max_steps=2", f"--out_dir={ckpt}")
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == ["step-0", "step-1", "step-2"]
    config = json.loads((ckpt / "step-2" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_key_value_heads"] == 2
    heads = run_head_comparison(_config(ckpt, corpus, root / "llama_out", target_layer=0), log=lambda m: None)
    assert list(heads) == ["step-0", "step-1", "step-2"] and all(len(v) == 4 for v in heads.values())
    assert all(-1 <= v <= 1 for values in heads.values() for v in values)
    record = json.loads((root / "llama_out" / "out" / "revisions.json").read_text())
    assert not any("duplicate_of" in e for e in record.values())           # trained: every revision differs


def test_bad_families_and_folders(corpus_and_tokenizer, tmp_path):
    root, corpus, tokenizer = corpus_and_tokenizer
    from transformers import BertConfig, Olmo2Config

    cases = {}
    for name, config in (("olmo2", Olmo2Config(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                               num_attention_heads=4, intermediate_size=32, eos_token_id=0)),
                         ("bert", BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=4, intermediate_size=32))):
        config.save_pretrained(tmp_path / name / "stage1-step0-tokens0B")
        cases[name] = tmp_path / name
    names = _revision_folder(tmp_path / "vocab", "gpt2", tokenizer, duplicate=False)
    changed = json.loads((tmp_path / "vocab" / names[2] / "config.json").read_text())
    changed["vocab_size"] = len(tokenizer) + 1
    (tmp_path / "vocab" / names[2] / "config.json").write_text(json.dumps(changed))
    (tmp_path / "unnamed").mkdir()
    shutil.copytree(tmp_path / "vocab" / names[0], tmp_path / "unnamed" / "latest")
    expected = {"olmo2": "is an OLMo-2 model", "bert": "'bert' model; supported families",
                "vocab": f"revisions disagree: {names[2]} has vocab_size={len(tokenizer) + 1}", "unnamed": "unknown revision 'latest'"}
    for case, message in expected.items():
        out = tmp_path / f"out_{case}"
        with pytest.raises(UserError, match=message):
            run_layer_comparison(_config(tmp_path / case, corpus, tmp_path, output_dir=str(out)), log=lambda m: None)
        assert not out.exists()
    done = run("pythia.py", f"--model_name={tmp_path / 'olmo2'}", "--revisions=all", f"--dataset={corpus}",
               f"--output_dir={tmp_path / 'out'}", check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "OLMo-2" in lines[0] and "supported families" in lines[0]
    assert not (tmp_path / "out").exists()
