"""The association explorer (common/tiny/explorer.py, tiny_explore.py): the embedded data against brute force,
and the page in a real browser — headless Chromium loads it with no console error, `#token=bird` shows
the planted `flew` in B̄ and in the trained W_O, another checkpoint changes the trained partners, an
unknown token and a cut vocabulary are said on the page (docs/theory.md §2, §3).

Browser tests skip where Chromium is absent (Debian: `apt-get install chromium`), and fail instead when
the environment variable CI is set: CI must run them."""
import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from common.page import decode_table
from common.tiny.explorer import explorer_data, explorer_page
from common.theory.association_views import MIN_COUNT, statistic_view, strongest_pair_table, weight_view
from conftest import ROOT, browse, card, chromium, partner_words, run_script, tiny_stories, write_txt

TRAIN = ["--seq_len=16", "--windows=True", "--max_sequences=512", "--batch_size=64", "--epochs=2", "--lr=1.0",
         "--log_every=0.25", "--save_every=1", "--report_top=3", "--report_tokens=2", "--report_words=bird",
         "--progress=False", "--device=cpu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small trained run of the synthetic corpus (planted bird → flew) with two checkpoints; the
    trainer writes explorer.html at its end."""
    tmp = tmp_path_factory.mktemp("explorer")
    data, out = tmp / "data", tmp / "run"
    run_script("tiny_tokenize_natural.py", "--data=synthetic", "--n_stories=300", f"--out_dir={data}")
    training = run_script("tiny_self_attn_natural.py", f"--data_dir={data}", f"--out_dir={out}", *TRAIN).stdout
    assert f"association explorer: {out / 'explorer.html'}" in training
    return {"tmp": tmp, "data": data, "out": out, "page": out / "explorer.html"}


def embedded(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S).group(1))


@pytest.fixture(scope="module")
def loaded(run):
    from common.tiny.explorer import checkpoint_models
    from common.tiny.training import checkpoint_paths, load_run
    paths = checkpoint_paths(run["out"])
    _, _, vocabulary, stats, _ = load_run(paths[-1])
    return vocabulary, stats, checkpoint_models(paths, vocabulary)


def assert_table_is_top_k(table, matrix, vocab_size, skip_self=False):
    """Each row's partners are the k largest entries of the full row (values to int16 precision)."""
    ids, values = decode_table(table, vocab_size)
    full = matrix.detach().double().numpy().copy()
    if skip_self:
        np.fill_diagonal(full, -np.inf)
    expected = -np.sort(-full, axis=1)[:, :ids.shape[1]]
    scale = np.abs(expected).max(axis=1, keepdims=True)
    tolerance = scale / 32767 + 1e-12
    assert np.all(np.abs(values - expected) <= tolerance)
    assert np.all(np.abs(np.take_along_axis(full, ids, axis=1) - values) <= tolerance)


def test_page_data_is_each_rows_top_partners(run, loaded):
    vocabulary, stats, checkpoints = loaded
    data, V = embedded(run["page"]), len(vocabulary)
    assert data["vocabulary"] == vocabulary and data["rows"] is None and data["notes"] == []
    assert [s["field"] for s in data["statistics"]] == ["bigram", "interchangeability", "context", "value_map",
                                                         "attention_map"]
    for statistic in data["statistics"]:
        assert_table_is_top_k(statistic["table"], getattr(stats, statistic["field"]), V,
                              statistic["field"] == "interchangeability")
    assert [c["step"] for c in data["checkpoints"]] == [meta["step"] for meta, _ in checkpoints] == [8, 16]
    for saved, (_, model) in zip(data["checkpoints"], checkpoints):
        weights = {w["key"]: w for w in saved["weights"]}
        assert set(weights) == {"W_O_B_bar"} | {f"layer_{l}_{k}" for l in range(3) for k in ("V_B_bar_Phi_bar", "W_Q_bar")}
        assert_table_is_top_k(weights["W_O_B_bar"]["table"], model.W_O, V)
        assert_table_is_top_k(weights["layer_1_W_Q_bar"]["table"], model.layers[1].W, V)
        # the lift tables: the top partners of the report's lift view (Q̄'s and W's: ÷ P̂(a) P̂(b)²), a
        # partner it does not show stored as 0
        assert_table_is_top_k(weights["W_O_B_bar"]["lift"],
                              weight_view(model.W_O, stats, "bigram", "lift").clamp_min(0), V)
        assert_table_is_top_k(weights["layer_1_W_Q_bar"]["lift"],
                              weight_view(model.layers[1].W, stats, "attention_map", "lift").clamp_min(0), V)
    assert data["views"] == ["normalised", "raw", "both", "lift"]
    for statistic in data["statistics"]:
        lifted = statistic_view(stats, statistic["field"], "lift").clamp_min(0)
        if statistic["field"] == "interchangeability":       # itself left out: not shown, stored as 0
            lifted.fill_diagonal_(0)
        assert_table_is_top_k(statistic["lift"], lifted, V)
    # the frequencies the page divides by are the report's: the normalised view is the report's
    bird = vocabulary.index("bird")
    assert data["frequency"][bird] == pytest.approx(float(stats.input_frequency[bird]), rel=1e-5)
    table = strongest_pair_table(stats, 40)
    assert [p[:2] + p[5:] for p in data["strongest"]] == [[r["a"], r["b"], r["pairs"], r["count"]] for r in table]
    for p, r in zip(data["strongest"], table):
        assert p[2:5] == pytest.approx([r["conditional"], r["lift"], r["lift_lower"]], rel=1e-5)
    # one rule: the table's pair a → b heads a's B̄ row on the page's lift view, with the table's lift⁻
    ids, values = decode_table(data["statistics"][0]["lift"], V)
    for r in table:
        assert ids[r["a"], 0] == r["b"] and values[r["a"], 0] == pytest.approx(r["lift_lower"], rel=1e-4)
    # the curves: every weight key of the log, path-exact ones included
    logs = json.loads((run["out"] / "training_logs.json").read_text())
    series = {s["key"]: s for s in data["curves"]["series"]}
    assert {"W_O_path", "layer_2_V_path_rel_err", "layer_0_W_Q_bar"} <= set(series)
    assert data["curves"]["step"] == [e["step"] for e in logs]
    assert series["W_O_B_bar"]["values"] == pytest.approx([e["W_O_B_bar"] for e in logs], rel=1e-5)
    assert series["W_O_path"]["reference"] == "path" and series["layer_2_V_path_rel_err"]["rel_err"]


def test_page_is_self_contained_and_small(run):
    text = run["page"].read_text(encoding="utf-8")
    # nothing fetched: no external script, style, image or link target (the SVG namespace is a name)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "<link" not in text and "@import" not in text and "fetch(" not in text
    assert len(text.encode()) < 2_000_000


def test_too_large_vocabulary_is_cut_and_said(loaded):
    vocabulary, stats, checkpoints = loaded
    full = explorer_data(stats, vocabulary, checkpoints, [], top=4)
    cut = explorer_data(stats, vocabulary, checkpoints, [], top=4, max_bytes=420_000)
    V = len(vocabulary)
    assert full["rows"] is None and 0 < len(cut["rows"]) < V
    kept = set(cut["rows"])
    counts = stats.input_frequency
    # the kept rows are the most frequent tokens
    assert min(float(counts[a]) for a in kept) >= max(float(counts[a]) for a in range(V) if a not in kept)
    assert cut["notes"] and f"the {len(kept)} most frequent of the {V} tokens" in cut["notes"][0]
    assert len(explorer_page(cut).encode()) <= 420_000
    ids, _ = decode_table(cut["statistics"][0]["table"], V)
    full_ids, _ = decode_table(full["statistics"][0]["table"], V)
    assert np.array_equal(ids, full_ids[cut["rows"]])


def test_tiny_explore_writes_the_trainers_page_and_refuses_bad_input(run):
    out, tmp = run["out"], run["tmp"]
    page = tmp / "again.html"
    result = run_script("tiny_explore.py", f"--out_dir={out}", f"--output={page}", "--progress=False")
    assert "2 checkpoint(s)" in result.stdout
    assert page.read_bytes() == run["page"].read_bytes()
    # a folder without checkpoints: one line, nothing written
    empty = tmp / "empty"
    empty.mkdir()
    result = run_script("tiny_explore.py", f"--out_dir={empty}", check=False)
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0
    assert "no checkpoint in" in result.stderr and list(empty.iterdir()) == []
    # data that is not the run's: refused
    other = tmp / "other"
    run_script("tiny_tokenize_natural.py", f"--data={write_txt(tmp / 'other.txt', tiny_stories(40))}", f"--out_dir={other}")
    result = run_script("tiny_explore.py", f"--out_dir={out}", f"--data_dir={other}", f"--output={tmp / 'x.html'}",
                        check=False)
    assert result.returncode != 0 and "does not match" in result.stderr and not (tmp / "x.html").exists()


# -- in a real browser ---------------------------------------------------------------------------


def test_browser_shows_birds_partners_and_checkpoints(browser, run, loaded, tmp_path):
    vocabulary, stats, _ = loaded
    dom = browse(run["page"], "token=bird", tmp_path)
    assert 'data-token="bird"' in dom and 'data-checkpoint="1"' in dom
    assert "flew" in partner_words(card(dom, "bigram")) and "flew" in partner_words(card(dom, "W_O_B_bar"))
    assert len(re.findall(r'<section class="card trained"', dom)) == 7      # W_O, V and W of 3 layers
    assert '<svg width="420"' in dom and 'data-key="W_O_path"' in dom       # the curves, path-exact dashed
    assert dom.count('class="word"><a href="#token=') >= 40                 # the strongest associations
    # the older checkpoint: the corpus statistics stay, the trained weights' partners change
    older = browse(run["page"], "token=bird&checkpoint=0", tmp_path)
    assert 'data-checkpoint="0"' in older and "step 8 (epoch" in older
    assert card(older, "bigram") == card(dom, "bigram")
    for key in ("W_O_B_bar", "layer_0_V_B_bar_Phi_bar", "layer_2_W_Q_bar"):
        assert card(older, key) != card(dom, key), key
    # both views: the normalised value is the raw one divided by P̂(x=bird)
    both = browse(run["page"], "token=bird&view=both", tmp_path)
    row = re.search(r'data-partner="flew">.*?class="raw">([^<]+)</td><td class="normalised">([^<]+)</td>',
                    card(both, "bigram"), re.S)
    raw, normalised = map(float, row.groups())
    bird, flew = vocabulary.index("bird"), vocabulary.index("flew")
    assert raw == pytest.approx(float(stats.bigram[bird, flew]), rel=5e-3)
    assert normalised == pytest.approx(float(statistic_view(stats, "bigram")[bird, flew]), rel=5e-3)


def test_browser_lift_view_ranks_by_lift(browser, run, loaded, tmp_path):
    """#view=lift: every card lists the partners of the report's lift view, in its order, with its values."""
    vocabulary, stats, checkpoints = loaded
    token = strongest_pair_table(stats, 1)[0]["a"]        # a token seen often enough for its lifts to differ
    dom = browse(run["page"], f"token={vocabulary[token]}&view=lift", tmp_path)
    _, model = checkpoints[-1]
    for key, matrix, field in [("bigram", stats.bigram, "bigram"), ("attention_map", stats.attention_map, "attention_map"),
                               ("layer_2_W_Q_bar", model.layers[2].W, "attention_map"), ("W_O_B_bar", model.W_O, "bigram")]:
        lifted = (statistic_view(stats, field, "lift") if key in ("bigram", "attention_map")
                  else weight_view(matrix, stats, field, "lift"))[token]
        section = card(dom, key)
        words = [html.unescape(word) for word in partner_words(section)]
        shown = [i for i in lifted.topk(8).indices.tolist() if torch.isfinite(lifted[i])]
        assert words and words == [vocabulary[i] for i in shown], key
        first = float(re.search(r'class="lift">([^<]+)</td>', section).group(1))
        assert first == pytest.approx(float(lifted.max()), rel=5e-3)
    assert "÷ P̂(a) P̂(b)²" in card(dom, "attention_map") and "÷ P̂(a) P̂(b)²" not in card(dom, "bigram")
    assert "lift⁻ (ranked by)" in dom


def test_browser_says_what_is_missing(browser, run, loaded, tmp_path):
    dom = browse(run["page"], "token=xylophonist", tmp_path)
    assert "“xylophonist” is not in this run's vocabulary" in dom and 'data-map="bigram"' not in dom
    assert "Training curves" in dom                                          # never a blank page
    vocabulary, stats, checkpoints = loaded
    page = tmp_path / "cut.html"
    data = explorer_data(stats, vocabulary, checkpoints, [], top=4, max_bytes=420_000)
    page.write_text(explorer_page(data), encoding="utf-8")
    rare = next(w for a, w in enumerate(vocabulary) if a not in set(data["rows"]))
    dom = browse(page, f"token={rare}", tmp_path)
    assert "its partners were cut from this page" in dom and "most frequent of the" in dom


def test_browser_screenshot(browser, run, tmp_path):
    shot = tmp_path / "explorer.png"
    browse(run["page"], "token=bird", tmp_path, screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # the README's screenshot, taken the same way from the demo run
    assert (ROOT / "docs" / "explorer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_browser_masked_page_labels_the_mask_row(browser, run, loaded, tmp_path):
    """A masked run's page (fake: the run's words + `<mask>` as the last id, a third of the inputs masked):
    MASK's row is labelled "(MASK)", its Σ_B and Φ̄ rows say MASK is never an output, its Q̄ row is shown,
    and MASK is no partner in any B̄ row of the raw view."""
    from common.theory.statistics import compute_statistics
    from common.tiny.training import load_run, checkpoint_paths
    vocabulary, _, _ = loaded
    V = len(vocabulary)
    _, tokens, _, _, _ = load_run(checkpoint_paths(run["out"])[-1])
    x, y = tokens[:, :-1].long().clone(), tokens[:, 1:].long()
    x[:, ::3] = V
    stats = compute_statistics(x, y, V + 1)
    data = explorer_data(stats, vocabulary + ["<mask>"], [], [], top=4, mask_id=V)
    assert data["mask_id"] == V and data["no_row"] == ["interchangeability", "context"]
    ids, _ = decode_table(data["statistics"][0]["table"], V + 1)
    assert not (ids == V).any()                                   # never a B̄ partner
    page = tmp_path / "masked.html"
    page.write_text(explorer_page(data), encoding="utf-8")
    dom = browse(page, "token=<mask>", tmp_path)
    assert "&lt;mask&gt; (MASK)" in dom and dom.count('class="cut">MASK is never an output') == 2
    assert 'data-map="attention_map"' in dom and 'data-map="bigram"' in dom


@pytest.mark.slow
def test_masked_run_writes_report_and_page_with_the_mask_row(tmp_path):
    """A masked run of the trainer (--objective=masked, docs/theory.md §16): associations.md heads MASK's
    section "`<mask>` (MASK)"; explorer.html marks MASK (the last id) and never offers it as a B̄ or W_O
    partner; tiny_explore.py rebuilds the page from the masked checkpoints (their variant and vocabulary)."""
    data, out = tmp_path / "data", tmp_path / "run"
    run_script("tiny_tokenize_natural.py", "--data=synthetic", "--n_stories=300", f"--out_dir={data}")
    training = run_script("tiny_self_attn_natural.py", f"--data_dir={data}", f"--out_dir={out}", "--objective=masked",
                          *TRAIN).stdout
    assert f"association explorer: {out / 'explorer.html'}" in training and "association report:" in training
    report = (out / "associations.md").read_text(encoding="utf-8")
    assert "## `<mask>` (MASK)" in report and "MASK is never an output: no row" in report
    data_page = embedded(out / "explorer.html")
    V = len(data_page["vocabulary"])
    assert data_page["vocabulary"][-1] == "<mask>" and data_page["mask_id"] == V - 1
    ids, _ = decode_table(data_page["statistics"][0]["table"], V)
    assert not (ids == V - 1).any()
    weights = {w["key"]: w for w in data_page["checkpoints"][-1]["weights"]}
    ids, _ = decode_table(weights["W_O_B_bar"]["table"], V)
    assert not (ids == V - 1).any()
    again = tmp_path / "again.html"
    run_script("tiny_explore.py", f"--out_dir={out}", f"--output={again}", "--progress=False")
    assert again.read_bytes() == (out / "explorer.html").read_bytes()
