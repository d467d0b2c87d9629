"""Masked-LM checkpoints end to end (docs/theory.md §17, docs/pipelines.md §15): train_neox_checkpoints.py
--architecture=bert writes MultiBERTs-style repository folders for two seeds; pythia.py with a `{revision}`
template expands the seeds, lists and orders the revisions, compares them with the masked statistics,
hashes them, aggregates the seeds and writes the fill-in explorer; a rerun skips every revision; the embedding
measure runs over a template of BERT checkpoints trained on LDA."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from common.corpus.synthetic import generate_stories
from conftest import ROOT, run_script as run

TRAIN = ["--architecture=bert", "--n_documents=150", "--vocab_size=300", "--max_seq_len=16", "--hidden_size=16",
         "--n_layers=2", "--n_heads=2", "--batch_size=4", "--max_steps=4"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(generate_stories(150, seed=3)), encoding="utf-8")
    trained = run("train_neox_checkpoints.py", f"--dataset={corpus}", *TRAIN, "--seeds=1,2", f"--out_dir={root / 'ckpt'}")
    # a revision that repeats another one's weights (as Pythia's step0 and step1 do): seed 1 only
    shutil.copytree(root / "ckpt" / "seed1-step_2", root / "ckpt" / "seed1-step_3")
    common = [f"--model_name={root / 'ckpt'}/seed{{1..2}}-step_{{revision}}", f"--dataset={corpus}",
              f"--cache_dir={root / 'cache'}", "--max_seq_len=16", "--n_examples=120", f"--output_dir={root / 'out'}"]
    first = run("pythia.py", "--revisions=all", *common)
    again = run("pythia.py", "--revisions=all", *common)
    return {"root": root, "trained": trained, "first": first, "again": again, "common": common[:-1]}


def test_trainer_writes_repository_style_folders_per_seed(suite):
    ckpt = suite["root"] / "ckpt"
    for seed in (1, 2):
        for step in (0, 1, 2, 4):
            folder = ckpt / f"seed{seed}-step_{step}"
            assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
            assert json.loads((folder / "training_state.json").read_text())["seed"] == seed
        assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
        assert (ckpt / f"seed{seed}-training_log.json").is_file()
    assert "[MASK]" in (ckpt / "seed1-step_0" / "tokenizer.json").read_text()
    assert f"revisions in {ckpt}/seed2-step_{{revision}}" in suite["trained"].stdout


def test_the_template_expands_seeds_orders_revisions_and_aggregates(suite):
    out, log = suite["root"] / "out", suite["first"].stdout
    assert "seed1-step_{revision}: 5 revision(s): 0, 1, 2, 3, 4" in log
    assert "seed2-step_{revision}: 4 revision(s): 0, 1, 2, 4" in log
    assert "the masked statistics (in expectation over the corruption)" in log
    assert "integrity: 3 holds the same weights as 2" in log
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert list(aggregate["revisions"]) == ["0", "1", "2", "3", "4"]
    assert aggregate["missing"] == {"3": [f"{suite['root'] / 'ckpt'}/seed2-step_{{revision}}"]}
    assert aggregate["revisions"]["4"]["layer_1"]["attention"]["n"] == 2
    for seed in ("seed1", "seed2"):
        record = json.loads((out / seed / "revisions.json").read_text())
        assert set(record) >= {"0", "1", "2", "4"}
        assert (out / seed / "revision_4" / "matrix_theoretical").is_dir()
        agreement = json.loads((out / seed / "association_agreement.json").read_text())
        assert agreement["objective"] == "masked" and list(agreement["revisions"])[0] == "0"
        assert 0 <= agreement["unigram"]["next_token_overlap"] <= 1
        page = (out / seed / "explorer.html").read_text()
        assert "Fill-in — what a MASK beside a is filled with" in page and "Φ̄ₘᵀ" in page and "unigram" in page
    assert json.loads((out / "association_agreement.json").read_text())["objective"] == "masked"
    assert "fill-in overlap" not in log   # the agreement lines are pythia_explore.py's


def test_a_rerun_skips_every_revision(suite):
    log = suite["again"].stdout
    assert log.count("skipped, its results exist for the same weights and settings") == 9


def test_topic_embeddings_of_masked_checkpoints_on_lda(tmp_path):
    run("train_neox_checkpoints.py", *TRAIN, "--dataset=lda", "--n_documents=60", "--vocab_size=200",
        f"--out_dir={tmp_path / 'lda'}")
    result = run("topic_embeddings.py", f"--model_name={tmp_path / 'lda'}/seed0-step_{{revision}}",
                 f"--out_dir={tmp_path / 'emb'}")
    record = json.loads((tmp_path / "emb" / "topic_embeddings.json").read_text())
    assert [r["revision"] for r in record["revisions"]] == ["0", "1", "2", "4"]
    assert record["words"] == 100 and "same topic" in result.stdout


def test_two_processes_write_the_files_of_one(suite, tmp_path):
    out = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "pythia.py", "--revisions=all", f"--output_dir={out}", *suite["common"]], cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[rank 1] [seed1] 1: layer 0" in done.stdout + done.stderr             # dealt out round robin
    files = lambda root: {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                          if p.is_file() and p.name != "pythia_config.json" and "revision_" in str(p)}
    assert files(out) and files(out) == files(suite["root"] / "out")


def test_the_fill_in_page_renders_in_a_browser(suite, tmp_path):
    from conftest import browse

    page = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>',
                                (suite["root"] / "out" / "seed1" / "explorer.html").read_text(), re.S).group(1))
    token = page["vocabulary"][page["strongest"][0][0]] if page["strongest"] else page["default_token"]
    dom = browse(suite["root"] / "out" / "seed1" / "explorer.html", f"token={token}&revision=4", tmp_path)
    assert "Fill-in — what a MASK beside a is filled with" in dom and "model: p(b at [MASK]" in dom
    assert "unigram predictor" in dom and "most probable fill-in of a MASK beside it" in dom


def test_same_corpus_settings_and_seed_give_the_same_bytes(suite, tmp_path):
    # the WordPiece vocabulary is counted, not trained by tokenizers' (process-dependent) trainers
    corpus = suite["root"] / "corpus.txt"
    run("train_neox_checkpoints.py", f"--dataset={corpus}", *TRAIN, "--seeds=1", f"--out_dir={tmp_path}")
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        for step in (0, 4):
            assert (tmp_path / f"seed1-step_{step}" / name).read_bytes() == \
                (suite["root"] / "ckpt" / f"seed1-step_{step}" / name).read_bytes(), (name, step)
