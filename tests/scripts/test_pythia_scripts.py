"""End to end: train tiny Pythia-style checkpoints, run both comparison scripts and both plots on a small
local corpus, reuse the statistics cache, resume after SIGKILL, share the work over two processes, run
offline from a Hugging Face cache, aggregate several seeds, flag revisions that are not what their names
say, and refuse bad input with one line; the same comparison on local folders of GPT-2, Llama
(grouped-query, trained by train_neox_checkpoints.py), OLMo v1, OLMo-2 (QK-norm) and Qwen2 (biases) revisions."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from common.checkpoints.aggregate import interval
from common.checkpoints.architectures import BY_NAME
from common.checkpoints.comparison import ComparisonConfig
from common.checkpoints.results import plot_head_results, plot_layer_results, read_layer_results
from common.checkpoints.suite import run_comparison
from common.corpus.synthetic import generate_stories
from common.io import UserError
from conftest import ROOT, run_script as run
from conftest import tiny_model, write_hub_cache

TINY = ["--max_seq_len=16", "--n_examples=120"]
TRAIN = ["--n_documents=150", "--vocab_size=300", "--max_seq_len=16", "--hidden_size=16", "--n_layers=2",
         "--n_heads=2", "--batch_size=4"]


def environment(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)


def tree(folder, leave_out=("pythia_config.json",)):
    """{relative path: bytes} of every file under `folder` (pythia_config.json names the output folder)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in leave_out}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pythia")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(generate_stories(150, seed=3)), encoding="utf-8")
    trained = run("train_neox_checkpoints.py", f"--dataset={corpus}", *TRAIN, "--max_steps=4",
                  f"--out_dir={root / 'ckpt'}")
    common = [f"--model_name={root / 'ckpt'}", f"--dataset={corpus}", f"--cache_dir={root / 'cache'}", *TINY]
    first = run("pythia.py", "--revisions=all", f"--output_dir={root / 'layers'}", *common)
    heads = [run("pythia_per_head.py", "--steps=step4,step1,step2", f"--target_layer={layer}",
                 f"--output_dir={root / 'out'}", *common) for layer in (0, 1)]   # --steps: the release's name
    run("pythia.py", "--revisions=step0..step4", f"--output_dir={root / 'out'}", *common)
    plots = [run("plot_cosine_similarity.py", f"--results_dir={root / 'out'}"),
             run("plot_per_head_similarity.py", f"--results_dir={root / 'out'}")]
    return {"root": root, "corpus": corpus, "common": common, "trained": trained, "first": first,
            "heads": heads, "plots": plots}


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


def test_layer_comparison_outputs_and_labelled_lines(pipeline):
    layers = pipeline["root"] / "layers"
    for step in ("step0", "step1", "step2", "step4"):
        folder = layers / f"revision_{step}" / "matrix_theoretical"
        for name in ("attention_comparison_summary.json", "cosine_similarity_summary_mids.json",
                     "cosine_similarity_summary.json"):
            summary = json.loads((folder / name).read_text())
            assert list(summary) == ["layer_0", "layer_1"]
            assert all(-1 <= v["cosine_similarity"] <= 1 for v in summary.values())
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["weights_sha256"] == json.loads((layers / "revisions.json").read_text())[step]["weights_sha256"]
        assert set(json.loads((layers / "integrity" / f"{step}.json").read_text())["tensors"]) >= {
            "gpt_neox.layers.0.attention.query_key_value.weight", "gpt_neox.embed_in.weight"}
    # every number on a console line says what it is
    output = pipeline["first"].stdout + pipeline["first"].stderr
    step4 = json.loads((layers / "revision_step4" / "matrix_theoretical" / "attention_comparison_summary.json")
                       .read_text())
    assert (f"step4: layer 0: attention {step4['layer_0']['cosine_similarity']:.3f}, no-MLP " in output
            and " | layer 1: attention " in output)
    assert "integrity:" not in output                              # trained revisions: nothing shared
    # the later runs (another output folder, same tokenizer + corpus + settings) reuse the statistics
    # the first run computes them (its explorer page then reads them back, once)
    assert output.count("using the cache") == 1
    assert all("using the cache" in run.stderr + run.stdout for run in pipeline["heads"])
    assert len(list((pipeline["root"] / "cache").glob("statistics_*.safetensors"))) == 1
    assert tree(pipeline["root"] / "out" / "revision_step4" / "matrix_theoretical") == \
        tree(layers / "revision_step4" / "matrix_theoretical")


def test_per_head_outputs_and_figures(pipeline):
    out = pipeline["root"] / "out"
    for step in ("step1", "step2", "step4"):
        for layer in (0, 1):
            heads = json.loads((out / f"revision_{step}" / f"layer_{layer}" / "per_head_results.json").read_text())
            assert heads["head_1"]["head_idx"] == 1 and len(heads) == 2
            assert all(-1 <= h["cosine_similarity"] <= 1 for h in heads.values())
    combined = json.loads((out / "per_head_layer_1.json").read_text())
    assert list(combined) == ["step1", "step2", "step4"]
    assert "step4: layer 1: head 0 " in pipeline["heads"][1].stdout + pipeline["heads"][1].stderr
    for stem in ("cosine_similarity_heatmaps", "per_head_layer_0", "per_head_layer_1", "per_head_grid"):
        for suffix in (".png", ".pdf"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000


def test_sigkill_in_the_middle_of_a_revision_then_rerun(pipeline, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "pythia.py", "--revisions=all", f"--output_dir={out}", *pipeline["common"]]
    process = subprocess.Popen(command, cwd=ROOT, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith("step0: layer 0:"):      # step0 is written; the process is loading step1
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    finished = sorted(p.parent.name[len("revision_"):] for p in out.glob("revision_*/matrix_theoretical"))
    assert "step0" in finished and "step4" not in finished
    again = run(*command[1:])
    output = again.stdout + again.stderr
    skipped = sorted(r for r in ("step0", "step1", "step2", "step4") if f"{r}: skipped, its results exist" in output)
    computed = sorted(r for r in ("step0", "step1", "step2", "step4") if f"{r}: layer 0: attention" in output)
    assert skipped == finished and computed == sorted({"step0", "step1", "step2", "step4"} - set(finished))
    assert tree(out) == tree(pipeline["root"] / "layers")          # the uninterrupted run's files, nothing more
    forced = run(*command[1:], "--recompute=True")
    assert "skipped" not in forced.stdout + forced.stderr and tree(out) == tree(pipeline["root"] / "layers")


def test_two_processes_write_the_files_of_one(pipeline, tmp_path):
    out = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "pythia.py", "--revisions=all", f"--output_dir={out}", *pipeline["common"]],
                          cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "[rank 0] step0: layer 0" in output and "[rank 1] step1: layer 0" in output   # dealt out round robin
    assert tree(out) == tree(pipeline["root"] / "layers")


def test_offline_from_a_hugging_face_cache(pipeline, tmp_path):
    ckpt = pipeline["root"] / "ckpt"
    write_hub_cache(tmp_path / "hub", "org/name", {r: ckpt / r for r in ("step0", "step1", "step4")})
    common = [f"--dataset={pipeline['corpus']}", f"--cache_dir={pipeline['root'] / 'cache'}", *TINY]
    env = environment(HF_HUB_CACHE=str(tmp_path / "hub"))
    done = subprocess.run([sys.executable, "pythia.py", "--model_name=org/name", "--revisions=step0,step4",
                           f"--output_dir={tmp_path / 'out'}", *common],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for revision in ("step0", "step4"):          # the same weights as the local folder's: the same results
        assert tree(tmp_path / "out" / f"revision_{revision}") == tree(pipeline["root"] / "layers" / f"revision_{revision}")
    for revisions, message in (("step0,step2", "revision 'step2' of 'org/name' is not in the Hugging Face cache"),
                               ("step0..step8,re:^main$", "'re:^main$' matches no revision of the Hugging Face cache")):
        failed = subprocess.run([sys.executable, "pythia.py", "--model_name=org/name", f"--revisions={revisions}",
                                 f"--output_dir={tmp_path / 'bad'}", *common],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        lines = failed.stderr.strip().splitlines()
        assert failed.returncode != 0 and len(lines) == 1 and message in lines[0], failed.stderr
        assert not (tmp_path / "bad").exists()


def test_several_seeds_statistics_once_and_an_aggregate(pipeline, tmp_path):
    seeds = tmp_path / "seeds"
    run("train_neox_checkpoints.py", f"--dataset={pipeline['corpus']}", *TRAIN, "--max_steps=2", "--seeds=1,2,3",
        f"--out_dir={seeds}")
    assert sorted(p.name for p in seeds.iterdir()) == ["seed1", "seed2", "seed3"]
    shutil.rmtree(seeds / "seed3" / "step1")                        # a seed missing a checkpoint
    done = run("pythia.py", f"--model_name={seeds}/seed{{1..3}}", "--revisions=all", f"--output_dir={tmp_path / 'out'}",
               f"--dataset={pipeline['corpus']}", f"--cache_dir={tmp_path / 'cache'}", *TINY)
    output = done.stdout + done.stderr
    assert output.count("statistics: computing") == 1 and "[seed2] step2: layer 0: attention" in output
    aggregate = json.loads((tmp_path / "out" / "aggregate.json").read_text())
    models = [f"{seeds}/seed{s}" for s in (1, 2, 3)]
    assert aggregate["models"] == models and aggregate["missing"] == {"step1": [models[2]]}
    per_model = [read_layer_results(tmp_path / "out" / f"seed{s}") for s in (1, 2, 3)]
    for revision in ("step0", "step1", "step2"):
        having = [m for m in per_model if revision in m["attention"]]
        for layer in (0, 1):
            for kind in ("attention", "no_mlp", "embedding"):
                cell = aggregate["revisions"][revision][f"layer_{layer}"][kind]
                assert cell == interval([m[kind][revision][layer] for m in having])
    assert aggregate["revisions"]["step1"]["layer_0"]["attention"]["n"] == 2
    # seeds differ in initialisation, not in corpus or tokenizer
    assert (seeds / "seed1" / "step0" / "tokenizer.json").read_bytes() == (seeds / "seed2" / "step0" / "tokenizer.json").read_bytes()
    assert per_model[0]["embedding"]["step0"] != per_model[1]["embedding"]["step0"]
    for stem in ("aggregate_heatmaps", "aggregate_curves"):
        assert (tmp_path / "out" / f"{stem}.png").stat().st_size > 1000


BAD = {
    "unknown revision name": (["pythia.py", "--revisions=main"], "unknown revision 'main'"),
    "revision missing from the folder": (["pythia.py", "--revisions=step0,step8"], "revision 'step8' not found"),
    "suggests all": (["pythia_per_head.py", "--revisions=step8"], "--revisions=all reads every one"),
    "a pattern matching nothing": (["pythia.py", "--revisions=re:^checkpoint"], "matches no revision of"),
    "a brace range expanding to nothing": (["pythia.py", "--revisions=all", "--model_name=out/s{3..1}"],
                                           "expands to nothing"),
    "no such integrity reference": (["pythia.py", "--revisions=all", "--integrity_reference=main"],
                                    "--integrity_reference='main' is not a revision of"),
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
               check=False)   # the default hub model, offline and not cached: refused at once
    assert done.returncode != 0 and "hub cannot be reached (offline)" in done.stderr.strip().splitlines()[-1]
    done = run("pythia.py", f"--model_name={tmp_path / 'nothing'}", f"--output_dir={tmp_path / 'out'}", check=False)
    assert done.returncode != 0 and "checkpoint folder not found" in done.stderr
    assert not (tmp_path / "out").exists()


def test_benchmarks_at_tiny_sizes_gpu_one_without_datasets():
    # the GPU machine has no `datasets`: the GPU benchmark must run with its import blocked
    code = ("import sys, runpy; sys.modules['datasets'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks/gpu_pythia_bench.py"), "--device=cpu",
                           "--architecture=olmo2", "--n_layers=2", "--d_model=16", "--n_heads=2", "--n_kv_heads=1",
                           "--intermediate_size=32", "--vocab_size=60", "--n_documents=20", "--seq_len=8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| total |" in done.stdout and "similarities (2 layers × 3)" in done.stdout
    done = run("benchmarks/pythia_bench.py", "--n_tokens=80", "--d_model=8", "--stats_vocab=300",
               "--stats_documents=10", "--seq_len=8", "--dense_vocab=100")
    assert "ratio" in done.stdout and "at V = 300: pass 1 scatter" in done.stdout


# ---------------------------------------------------------------------------------------------
# integrity, other families
def _revision_folder(root, family, tokenizer, kv_heads=0):
    """Three revisions of a tiny random model of `family`, named by its convention, each different."""
    architecture = BY_NAME[family]
    model = tiny_model(family, seed=4, layers=2, d=16, heads=4, kv_heads=kv_heads, vocab=len(tokenizer)).float()
    names = [architecture.revision_name(step, step * 10 ** 9) for step in (0, 1, 2)]
    for name in names:
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


def test_revisions_that_are_not_what_their_names_say(corpus_and_tokenizer):
    from safetensors.torch import load_file, save_file

    root, corpus, tokenizer = corpus_and_tokenizer
    root = root / "integrity"
    names = _revision_folder(root / "ckpt", "gpt2", tokenizer)                    # checkpoint-0, -1, -2
    ckpt = root / "ckpt"
    shutil.copytree(ckpt / "checkpoint-2", ckpt / "main")                        # the final weights (reference)
    shutil.copytree(ckpt / "checkpoint-2", ckpt / "checkpoint-3")                # a copy of an earlier one
    shutil.copytree(ckpt / "checkpoint-0", ckpt / "checkpoint-5")                # a later copy of checkpoint-0
    # checkpoint-4: checkpoint-0's weights with one tensor swapped in from checkpoint-2 (a wrong shard)
    shutil.copytree(ckpt / "checkpoint-0", ckpt / "checkpoint-4")
    tensors = load_file(ckpt / "checkpoint-4" / "model.safetensors")
    swapped = "transformer.h.1.mlp.c_fc.weight"
    tensors[swapped] = load_file(ckpt / "checkpoint-2" / "model.safetensors")[swapped]
    save_file(tensors, ckpt / "checkpoint-4" / "model.safetensors", metadata={"format": "pt"})
    messages = []
    run_comparison(_config(ckpt, corpus, root, integrity_reference="main"), log=messages.append)
    record = json.loads((root / "out" / "revisions.json").read_text())
    assert list(record) == ["checkpoint-0", "checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-4",
                            "checkpoint-5", "main"]
    assert record["checkpoint-0"]["identical_to"] == ["checkpoint-5"]            # a later copy of it
    assert record["checkpoint-5"]["duplicate_of"] == "checkpoint-0"
    assert record["checkpoint-2"]["identical_to"] == ["checkpoint-3", "main"]    # the reference too
    assert record["checkpoint-3"]["duplicate_of"] == "checkpoint-2"
    assert record["main"]["reference"] and "duplicate_of" not in record["main"]
    others = sorted(n for n in tensors if n != swapped)
    hashed = json.loads((root / "out" / "integrity" / "checkpoint-4.json").read_text())["tensors"]
    assert sorted(hashed) == sorted(tensors) and len(others) > 20
    assert record["checkpoint-4"]["shares_tensors_with"] == {
        "checkpoint-0": others, "checkpoint-2": [swapped], "checkpoint-3": [swapped], "checkpoint-5": others,
        "main": [swapped]}
    assert len(record["checkpoint-1"]) == 1                                      # nothing repeated or shared
    suspicious = [m for m in messages if m.startswith("integrity: ")]
    assert [m.split()[1] for m in suspicious] == ["checkpoint-0", "checkpoint-2", "checkpoint-3", "checkpoint-4",
                                                  "checkpoint-5", "the"]
    assert f"shares 1 tensor with checkpoint-2 ({swapped})" in suspicious[3]
    assert not (root / "out" / "revision_main").exists()                        # hashed, not compared
    from common.checkpoints.integrity import column_label

    assert column_label("checkpoint-3", record).startswith("checkpoint-3 (= checkpoint-2) (shares 1 tensor with")
    assert column_label("checkpoint-0", record).startswith("checkpoint-0 (= checkpoint-5)")
    assert column_label("checkpoint-4", record) == f"checkpoint-4 (shares {len(others)} tensors with checkpoint-0)"
    assert all(p.stat().st_size > 1000 for p in plot_layer_results(root / "out"))


@pytest.mark.parametrize("family", ["gpt2", "olmo", "olmo2", "qwen2"])
def test_family_end_to_end(family, corpus_and_tokenizer):
    root, corpus, tokenizer = corpus_and_tokenizer
    root = root / family
    names = _revision_folder(root / "ckpt", family, tokenizer, kv_heads=0 if family == "gpt2" else 2)
    messages = []
    layers = run_comparison(_config(root / "ckpt", corpus, root), log=messages.append).results[str(root / "ckpt")]
    assert list(layers) == names
    for name in names:
        for file in ("attention_comparison_summary.json", "cosine_similarity_summary.json"):
            summary = json.loads((root / "out" / f"revision_{name}" / "matrix_theoretical" / file).read_text())
            assert list(summary) == ["layer_0", "layer_1"]
            assert all(-1 <= v["cosine_similarity"] <= 1 for v in summary.values())
    assert layers[names[1]] != layers[names[0]]
    heads = run_comparison(_config(root / "ckpt", corpus, root, target_layer=1), heads=True, log=messages.append)
    assert [len(v) for v in heads.results[str(root / "ckpt")].values()] == [4, 4, 4]
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
    heads = run_comparison(_config(ckpt, corpus, root / "llama_out", target_layer=0), heads=True,
                           log=lambda m: None).results[str(ckpt)]
    assert list(heads) == ["step-0", "step-1", "step-2"] and all(len(v) == 4 for v in heads.values())
    assert all(-1 <= v <= 1 for values in heads.values() for v in values)
    record = json.loads((root / "llama_out" / "out" / "revisions.json").read_text())
    assert not any(len(e) > 1 for e in record.values())                    # trained: nothing repeated or shared


def test_bad_families_folders_and_models(corpus_and_tokenizer, tmp_path):
    root, corpus, tokenizer = corpus_and_tokenizer
    from transformers import T5Config

    T5Config(vocab_size=len(tokenizer), d_model=16, num_layers=1, num_heads=4,
             d_ff=32).save_pretrained(tmp_path / "t5" / "step0")   # (BERT is supported: docs/theory.md §17)
    names = _revision_folder(tmp_path / "vocab", "gpt2", tokenizer)
    changed = json.loads((tmp_path / "vocab" / names[2] / "config.json").read_text())
    changed["vocab_size"] = len(tokenizer) + 1
    (tmp_path / "vocab" / names[2] / "config.json").write_text(json.dumps(changed))
    (tmp_path / "unnamed").mkdir()
    shutil.copytree(tmp_path / "vocab" / names[0], tmp_path / "unnamed" / "latest")
    for seed in ("seed1", "seed2"):
        _revision_folder(tmp_path / "seeds" / seed, "gpt2", tokenizer)
    shutil.rmtree(tmp_path / "seeds" / "seed2" / names[1])
    from common.corpus.tokenize import causal_lm_tokenizer

    other = causal_lm_tokenizer(generate_stories(50, seed=9), 60)
    for name in names:
        shutil.copytree(tmp_path / "seeds" / "seed1" / name, tmp_path / "other_tokenizer" / "seed3" / name)
        other.save_pretrained(tmp_path / "other_tokenizer" / "seed3" / name)
    cases = {
        "t5": ({}, "'t5' model; supported families"),
        "vocab": ({}, f"revisions disagree: {names[2]} has vocab_size={len(tokenizer) + 1}"),
        "unnamed": ({}, "unknown revision 'latest'"),
        # an explicitly named revision that one seed lacks
        "seeds": ({"model_name": f"{tmp_path / 'seeds'}/seed{{1..2}}", "revisions": ",".join(names)},
                  f"revision '{names[1]}' not found in {tmp_path / 'seeds' / 'seed2'}"),
        "other_tokenizer": ({"model_name": f"{tmp_path / 'seeds' / 'seed1'},{tmp_path / 'other_tokenizer' / 'seed3'}"},
                            "the models' tokenizers differ"),
    }
    for case, (overrides, message) in cases.items():
        out = tmp_path / f"out_{case}"
        with pytest.raises(UserError, match=message):
            run_comparison(_config(tmp_path / case, corpus, tmp_path, output_dir=str(out), **overrides),
                           log=lambda m: None)
        assert not out.exists()
