"""The association explorer of a checkpoint comparison (common/checkpoints/explorer.py, pythia_explore.py) on a
`make demo-pythia`-style run made small: Pythia-style checkpoints trained on the synthetic corpus (planted
bird → flew), both comparisons, then the page.  The embedded data against the corpus statistics and the
checkpoints themselves, the agreement file, the page size limit, several models, bad input; and the page
in a real browser — no console error, `#token=bird` shows `flew` among the model's next tokens at the last
revision and not at step0, another revision changes the model's partners and not the statistic's.

Browser tests skip where Chromium is absent and fail instead when CI is set (conftest.chromium)."""
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoints.agreement import AGREEMENT_FILE
from common.checkpoints.comparison import ComparisonConfig
from common.checkpoints.explorer import (EXPLORER_FILE, ExplorerConfig, checkpoint_explorer, comparison_settings,
                                         explorer_page, write_checkpoint_explorer, write_explorers)
from common.io import UserError
from common.page import decode_table
from conftest import ROOT, browse, card, chromium, partner_words, run_script

TRAIN = ["--dataset=synthetic", "--n_documents=1000", "--vocab_size=1000", "--max_seq_len=32", "--hidden_size=32",
         "--n_layers=2", "--n_heads=2", "--batch_size=16", "--max_steps=256", "--learning_rate=1e-2"]
CORPUS = ["--dataset=synthetic", "--n_examples=1000", "--max_seq_len=32"]
REVISIONS = ["step0", "step16", "step256"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Checkpoints step0 … step256, pythia.py on three of them, pythia_per_head.py (layer 1) on two, then
    the explorer of the results folder."""
    root = tmp_path_factory.mktemp("checkpoint_explorer")
    ckpt, out, cache = root / "ckpt", root / "results", root / "cache"
    run_script("train_neox_checkpoints.py", *TRAIN, f"--out_dir={ckpt}")
    common = [f"--model_name={ckpt}", f"--output_dir={out}", f"--cache_dir={cache}", *CORPUS]
    run_script("pythia.py", f"--revisions={','.join(REVISIONS)}", *common)
    run_script("pythia_per_head.py", "--revisions=step16,step256", "--target_layer=1", *common)
    config = ComparisonConfig(model_name=str(ckpt), revisions="all", dataset="synthetic", n_examples=1000,
                              max_seq_len=32, output_dir=str(out), cache_dir=str(cache), device="cpu")
    write_explorers(config, log=lambda *_: None)
    return {"root": root, "ckpt": ckpt, "out": out, "cache": cache, "page": out / EXPLORER_FILE, "config": config}


def embedded(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S).group(1))


@pytest.fixture(scope="module")
def truth(run):
    """The corpus statistics over the page's token set, computed here from the corpus (dense), and the
    last revision's model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from common.checkpoints.token_statistics import map_to_token_set, tokenize_documents
    from common.corpus.text import iter_texts, load_text_dataset
    from common.theory.statistics import compute_statistics

    data = embedded(run["page"])
    token_ids = torch.tensor(data["token_ids"])
    tokenizer = AutoTokenizer.from_pretrained(run["ckpt"] / "step256")
    texts = iter_texts(load_text_dataset("synthetic", n_synthetic=1000), 1000)
    sequences = tokenize_documents(tokenizer, texts, 32).sequences
    mapped = map_to_token_set(sequences, token_ids, len(tokenizer))
    stats = compute_statistics(mapped[:, :-1], mapped[:, 1:], len(token_ids), full_vocab_size=len(tokenizer),
                               keep=("bigram", "attention_map", "input_frequency"))
    models = {r: AutoModelForCausalLM.from_pretrained(run["ckpt"] / r).eval() for r in ("step0", "step256")}
    return {"data": data, "token_ids": token_ids, "stats": stats, "models": models, "tokenizer": tokenizer}


def assert_rows_are_top_k(table, matrix: torch.Tensor, rows, n_columns):
    """Each page row holds k partners whose values are the matrix's at those columns (to the int16 step of
    the row's scale), and no column left out is larger than the smallest one kept."""
    ids, values = decode_table(table, n_columns)
    full = matrix.detach().double()[torch.as_tensor(rows)].numpy()
    step = np.abs(full).max(axis=1, keepdims=True) / 32767 + 1e-12
    assert np.all(np.abs(np.take_along_axis(full, ids, axis=1) - values) <= step)
    left_out = full.copy()
    np.put_along_axis(left_out, ids, -np.inf, axis=1)
    assert np.all(left_out.max(axis=1) <= np.take_along_axis(full, ids, axis=1).min(axis=1) + 1e-12)


def model_next_tokens(model, token_ids):
    with torch.no_grad():
        return model(input_ids=token_ids.view(-1, 1)).logits[:, 0].double().softmax(-1)[:, token_ids]


def test_page_data_are_the_statistics_and_the_models_top_partners(run, truth):
    data, stats, token_ids = truth["data"], truth["stats"], truth["token_ids"]
    K = len(token_ids)
    assert data["rows"] is None and data["notes"] == [] and data["n_tokens"] == K == 1000
    assert data["vocabulary"] == [truth["tokenizer"].decode([i]) for i in token_ids.tolist()]
    assert np.allclose(data["frequency"], stats.input_frequency.numpy(), rtol=1e-5, atol=0)
    rows = torch.arange(K)
    bigram, attention = data["statistics"]
    assert (bigram["field"], attention["field"]) == ("bigram", "attention_map")
    assert_rows_are_top_k(bigram["table"], stats.bigram, rows, K)
    assert_rows_are_top_k(attention["table"], stats.attention_map, rows, K)
    revisions = data["revisions"]
    assert [r["name"] for r in revisions] == REVISIONS
    for revision in revisions:
        assert [a["layer"] for a in revision["attention"]] == [0, 1]
        # the per-head run covered layer 1 at step16 and step256: its two heads there, nowhere else
        assert [(h["layer"], h["head"]) for h in revision["heads"]] == ([] if revision["name"] == "step0"
                                                                        else [(1, 0), (1, 1)])
    for name, model in truth["models"].items():
        saved = next(r for r in revisions if r["name"] == name)
        assert_rows_are_top_k(saved["next_token"], model_next_tokens(model, token_ids), rows, K)
    # attention: the scores of the similarity's own factors (query · key vectors of the layer, head average)
    from common.checkpoints.architectures import architecture_for
    from common.checkpoints.loading import single_token_representations

    model = truth["models"]["step256"]
    representations = single_token_representations(model, token_ids)
    vectors = architecture_for(model.config).query_key_vectors(   # the comparison's default form (no biases)
        model, 1, representations.pre(1), biases=run["config"].attention_bias)
    assert run["config"].attention_bias is False
    queries, keys = vectors.mean()
    assert_rows_are_top_k(revisions[-1]["attention"][1]["table"], queries @ keys.T, rows, K)
    head_q, head_k = vectors.head(1)
    assert_rows_are_top_k(revisions[-1]["heads"][1]["table"], head_q @ head_k.T, rows, K)


def test_agreement_file_and_curves(run, truth):
    record = json.loads((run["out"] / AGREEMENT_FILE).read_text())
    assert record == truth["data"]["agreement"]
    assert record["k"] == 8 and record["min_count"] == 10 and list(record["revisions"]) == REVISIONS
    counted = int((truth["stats"].input_frequency * truth["stats"].n_positions >= 10 - 1e-6).sum())
    assert 0 < record["n_tokens"]["next_token"] <= counted
    for name, entry in record["revisions"].items():
        assert set(entry["attention_overlap"]) == {"layer_0", "layer_1"}
        assert ("attention_head_overlap" in entry) == (name != "step0")
    first, last = record["revisions"]["step0"], record["revisions"]["step256"]
    chance = record["chance"]["next_token_top1"]
    assert first["next_token_top1"] < 5 * chance < last["next_token_top1"] / 10
    assert last["next_token_overlap"] > 5 * first["next_token_overlap"]
    for suffix in (".png", ".pdf"):
        assert (run["out"] / f"association_agreement{suffix}").stat().st_size > 5000


def test_page_is_self_contained_and_the_script_repeats_it(run):
    text = run["page"].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "<link" not in text and "@import" not in text and "fetch(" not in text
    assert len(text.encode()) < 3_000_000
    # the script, on a copy of the folder: the same page, byte for byte, and the agreement printed
    again = run["root"] / "again"
    shutil.copytree(run["out"], again, ignore=shutil.ignore_patterns("explorer.html", "association_*"))
    printed = run_script("pythia_explore.py", f"--output_dir={again}").stdout
    assert (again / EXPLORER_FILE).read_bytes() == text.encode()
    assert (again / AGREEMENT_FILE).read_bytes() == (run["out"] / AGREEMENT_FILE).read_bytes()
    assert "agreement, k = 8" in printed and re.search(r"step256  top-1 0\.\d+", printed)


@pytest.fixture(scope="module")
def cut(run):
    """The page data of the run under a 0.6 MB limit (top 4)."""
    return checkpoint_explorer(run["config"], ExplorerConfig(top=4, max_mb=0.6), log=lambda *_: None)[0]


def test_too_large_a_page_keeps_the_most_frequent_tokens_and_says_so(cut, truth):
    kept, K = set(cut["rows"]), cut["n_tokens"]
    assert 0 < len(kept) < K
    frequency = truth["stats"].input_frequency
    assert min(float(frequency[a]) for a in kept) >= max(float(frequency[a]) for a in range(K) if a not in kept)
    assert f"the {len(kept)} most frequent of the {K} tokens" in cut["notes"][0]
    assert len(explorer_page(cut).encode()) <= 600_000
    # the same rows as the full page's, their first 4 partners (ties in the counts may swap equal partners)
    _, full_values = decode_table(truth["data"]["statistics"][0]["table"], K)
    _, values = decode_table(cut["statistics"][0]["table"], K)
    assert np.array_equal(values, full_values[cut["rows"]][:, :4])


def test_several_models_get_a_page_each_and_the_aggregate(run, tmp_path):
    """Two models (copies of the run: seed1, seed2) laid out as a several-model comparison writes them."""
    ckpts, out = tmp_path / "ckpts", tmp_path / "results"
    for seed in ("seed1", "seed2"):
        shutil.copytree(run["ckpt"], ckpts / seed)
        shutil.copytree(run["out"], out / seed, ignore=shutil.ignore_patterns("explorer.html", "association_*"))
    config = ComparisonConfig(model_name=f"{ckpts}/seed{{1..2}}", revisions="all", dataset="synthetic",
                              n_examples=1000, max_seq_len=32, output_dir=str(out), cache_dir=str(run["cache"]),
                              device="cpu")
    paths = write_explorers(config, log=lambda *_: None)
    assert out / "seed1" / EXPLORER_FILE in paths and out / EXPLORER_FILE in paths
    assert (out / "seed2" / EXPLORER_FILE).read_bytes().replace(b"seed2", b"seed1") == \
        (out / "seed1" / EXPLORER_FILE).read_bytes()
    aggregate = json.loads((out / AGREEMENT_FILE).read_text())
    single = json.loads((run["out"] / AGREEMENT_FILE).read_text())
    assert aggregate["models"] == ["seed1", "seed2"] and list(aggregate["revisions"]) == REVISIONS
    top1 = aggregate["revisions"]["step256"]["next_token_top1"]
    assert top1["n"] == 2 and top1["mean"] == pytest.approx(single["revisions"]["step256"]["next_token_top1"])
    assert top1["min"] == top1["max"] and top1["std"] == pytest.approx(0, abs=1e-15)
    if shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"):
        dom = browse(out / EXPLORER_FILE, "", tmp_path)
        assert 'href="seed1/explorer.html"' in dom and 'href="seed2/explorer.html"' in dom


def test_bad_input_one_line_and_nothing_written(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("pythia_explore.py", f"--output_dir={empty}", f"--model_name={run['ckpt']}", check=False)
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "no comparison results in" in result.stderr and list(empty.iterdir()) == []
    # no pythia_config.json and no --model_name: the comparison's settings are asked for
    bare = tmp_path / "bare"
    shutil.copytree(run["out"], bare, ignore=shutil.ignore_patterns("pythia_config.json", "explorer.html",
                                                                     "association_*"))
    with pytest.raises(UserError, match="pythia_config.json not found .* pass the comparison's settings"):
        comparison_settings(bare, {"_explicit": []})
    config = comparison_settings(bare, dict(vars(run["config"]), _explicit=["model_name"]))
    with pytest.raises(UserError, match="--k=5000 must lie between 1 and the token set's size 1000"):
        write_checkpoint_explorer(config, ExplorerConfig(k=5000), log=lambda *_: None)
    with pytest.raises(UserError, match="--view must be one of"):
        write_checkpoint_explorer(config, ExplorerConfig(view="lift"), log=lambda *_: None)
    assert not (bare / EXPLORER_FILE).exists() and not (bare / AGREEMENT_FILE).exists()


def test_revisions_of_another_vocabulary_are_refused(run, tmp_path):
    """A checkpoint folder whose step256 is another model (another tokenizer, then another vocabulary size)."""
    from transformers import AutoModelForCausalLM

    from common.checkpoints.architectures import BY_NAME
    from common.corpus.synthetic import generate_stories
    from common.corpus.tokenize import causal_lm_tokenizer

    ckpt = tmp_path / "ckpt"
    shutil.copytree(run["ckpt"], ckpt)
    config = replace(run["config"], model_name=str(ckpt))
    for vocab_size, message in ((1000, "the tokenizer of step256 is not that of step0"),
                                (900, "revisions disagree: step256 has vocab_size=900")):
        tokenizer = causal_lm_tokenizer(generate_stories(300, seed=9), vocab_size)
        model_config = BY_NAME["neox"].training_config(len(tokenizer), 32, 2, 2, 0, 32, tokenizer.eos_token_id)
        shutil.rmtree(ckpt / "step256")
        AutoModelForCausalLM.from_config(model_config).save_pretrained(ckpt / "step256")
        tokenizer.save_pretrained(ckpt / "step256")
        with pytest.raises(UserError, match=message):
            checkpoint_explorer(config, log=lambda *_: None)


# -- in a real browser ---------------------------------------------------------------------------


def test_browser_bird_learns_flew_over_the_revisions(browser, run, tmp_path):
    last = browse(run["page"], "token=bird", tmp_path)
    assert 'data-token="bird"' in last and 'data-revision="step256"' in last
    assert "flew" in partner_words(card(last, "bigram")) and "flew" in partner_words(card(last, "next_token"))
    first = browse(run["page"], "token=bird&revision=step0", tmp_path)
    assert 'data-revision="step0"' in first and "flew" not in partner_words(card(first, "next_token"))
    # the revision control moves the model's partners, never the statistic's
    assert card(first, "bigram") == card(last, "bigram") and card(first, "attention_map") == card(last, "attention_map")
    for key in ("next_token", "layer_0", "layer_1"):
        assert partner_words(card(first, key)) != partner_words(card(last, key)), key
    assert 'data-map="layer_1_head_1"' in last and 'data-map="layer_1_head_1"' not in first
    assert "They agree at step256" in last                                      # when bird → flew was learnt
    assert last.count('<tr data-revision="') == 3 and 'class="current"' in last  # the agreement table
    by_index = browse(run["page"], "token=bird&revision=1&view=both", tmp_path)
    assert 'data-revision="step16"' in by_index and 'class="raw"' in by_index and 'class="normalised"' in by_index


def test_browser_says_what_is_missing(browser, run, cut, tmp_path):
    dom = browse(run["page"], "token=xylophonist", tmp_path)
    assert "“xylophonist” is not in this comparison's token set K (1000 tokens" in dom
    assert 'data-map="bigram"' not in dom and "Agreement with the corpus" in dom       # never a blank page
    page = tmp_path / "cut.html"
    page.write_text(explorer_page(cut), encoding="utf-8")
    rare = next(w for a, w in enumerate(cut["vocabulary"]) if a not in set(cut["rows"]) and w.strip())
    dom = browse(page, f"token={rare}", tmp_path)
    assert "its partners were cut from this page" in dom and "most frequent of the 1000 tokens" in dom


def test_integrity_marks_on_the_revision_control(browser, run, tmp_path):
    """revisions.json's marks (every field but the hashes) travel to the page and show on the control."""
    results = tmp_path / "results"
    shutil.copytree(run["out"], results, ignore=shutil.ignore_patterns("explorer.html", "association_*"))
    record = json.loads((results / "revisions.json").read_text())
    record["step16"].update(duplicate_of="step0", identical_to=["step0"])
    record["step256"]["shares_tensors_with"] = {"main": ["gpt_neox.embed_in.weight", "embed_out.weight"]}
    (results / "revisions.json").write_text(json.dumps(record))
    write_checkpoint_explorer(replace(run["config"], output_dir=str(results)), log=lambda *_: None)
    marks = {r["name"]: r["marks"] for r in embedded(results / EXPLORER_FILE)["revisions"]}
    assert marks == {"step0": {}, "step16": {"duplicate_of": "step0", "identical_to": ["step0"]},
                     "step256": {"shares_tensors_with": ["main"]}}
    dom = browse(results / EXPLORER_FILE, "token=bird&revision=step16", tmp_path)
    assert "⚠ duplicate of step0; identical to step0" in dom
    assert re.search(r'<tr data-revision="step256">.*?shares tensors with main</td>', dom, re.S)


def test_browser_screenshot(browser, run, tmp_path):
    shot = tmp_path / "explorer.png"
    browse(run["page"], "token=bird", tmp_path, screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # the README's screenshot, taken the same way from the demo-pythia run
    assert (ROOT / "docs" / "pythia_explorer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
