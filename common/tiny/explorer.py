"""Association explorer: one self-contained HTML page per run (`explorer.html`), for looking up a token
instead of scrolling the association report.

For the chosen token the page shows, side by side, its top partners in every corpus statistic of
docs/theory.md §2 (B̄, Σ_B, Φ̄, (B̄Φ̄)ᵀ, Q̄) and in every trained token × token weight lining up with
one (W_O; V and W of each layer), in the raw view, the frequency-normalised view of common/tiny/report.py
(row a divided by P̂(x=a); for B̄, P̂(y=b | x=a) − 1/V) or both; a slider over the saved checkpoints;
the training curves of the log (cosines and relative errors, the path-exact ones of §10 dashed);
and the corpus's strongest associations to start from.  `explorer.html#token=bird&checkpoint=0&view=raw`
selects a token, a checkpoint (index among those on the page, oldest first) and a view.

The page works offline: no network, styles and hand-written scripts inline, the data embedded as one
JSON object.  Only the top `top` partners of each row are kept, never whole matrices: per table the
partner ids (uint16, or uint32 past 65 536 tokens), their values as int16 fractions of the row's
largest |value| and that float32 scale, each base64-encoded — 2.8 MB at V = 3000, k = 8, three layers
and two checkpoints (4.0 MB at k = 12).  When the page would exceed `max_bytes`, only the rows of the most frequent tokens are
kept and the page says so (a token beyond them says its row was cut).
"""
import base64
import html
import json
import math
from pathlib import Path

import numpy as np
import torch

from common.theory.alignment import named_weights
from common.io import UserError, atomic_path, load_tensors
from common.theory.model import AttentionOnlyTransformer
from common.theory.path_exact import split_checkpoint
from common.tiny.report import (MIN_COUNT, PAGE_VIEWS, check_view, strongest_association_tokens, strongest_pairs, token_frequency,
                           top_partner_table)
from common.theory.weight_kinds import KIND, TOKEN_STATISTICS, parse_log_key

EXPLORER_FILE = "explorer.html"
ROW_CHUNK = 1024          # rows per top-k call (a V = 10000 float64 block is 800 MB)
QUANTUM = 32767           # int16 steps per row scale


# -- encoding ----------------------------------------------------------------------------------
def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _id_dtype(vocab_size: int):
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def partner_table(matrix: torch.Tensor, rows: torch.Tensor, k: int, skip_self: bool = False) -> dict:
    """Top-k partners of each of `rows` (common/tiny/report.top_partner_table), encoded for the page."""
    ids, values = [], []
    for start in range(0, len(rows), ROW_CHUNK):
        v, i = top_partner_table(matrix, rows[start:start + ROW_CHUNK], k, skip_self)
        values.append(v)
        ids.append(i)
    values, ids = torch.cat(values), torch.cat(ids)
    scale = values.abs().max(dim=1).values
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.float32)
    quantised = torch.round(values / scale.double()[:, None] * QUANTUM).to(torch.int16)
    return {"k": values.shape[1], "ids": _b64(ids.numpy().astype(_id_dtype(matrix.shape[1]))),
            "values": _b64(quantised.numpy()), "scale": _b64(scale.numpy())}


def decode_table(table: dict, vocab_size: int):
    """(ids, values) [rows, k] of an encoded table, as the page decodes it (for tests and tools)."""
    k = table["k"]
    ids = np.frombuffer(base64.b64decode(table["ids"]), dtype=_id_dtype(vocab_size)).reshape(-1, k)
    scale = np.frombuffer(base64.b64decode(table["scale"]), dtype="<f4").astype(np.float64)
    values = np.frombuffer(base64.b64decode(table["values"]), dtype="<i2").reshape(-1, k) / QUANTUM * scale[:, None]
    return ids.astype(np.int64), values


def table_bytes(rows: int, k: int, vocab_size: int) -> int:
    """Bytes one encoded table takes in the page (base64 of ids, int16 values and float32 scales)."""
    raw = rows * k * (_id_dtype(vocab_size).itemsize + 2) + rows * 4
    return math.ceil(raw / 3) * 4 + 64


# -- checkpoints and log -------------------------------------------------------------------------
def checkpoint_models(paths, vocabulary: list) -> list:
    """(metadata, model) of each checkpoint file, oldest first, refusing one of another vocabulary or
    of other training sequences than the first."""
    from common.corpus.tokenize import vocabulary_fingerprint
    sha, models = vocabulary_fingerprint(vocabulary), []
    for path in paths:
        tensors, meta = load_tensors(path)
        if meta.get("vocabulary_sha256") != sha:
            raise UserError(f"checkpoint {path} was trained on another vocabulary than this run's data; "
                            f"pass the --data_dir it was trained on")
        if models and meta.get("data_fingerprint") != models[0][0].get("data_fingerprint"):
            raise UserError(f"checkpoints {paths[0]} and {path} were trained on different sequences; "
                            f"keep one run per folder")
        model = AttentionOnlyTransformer(len(vocabulary), meta["seq_len"], meta["n_layers"])
        model.load_state_dict(split_checkpoint(tensors)[0])
        models.append((meta, model))
    return sorted(models, key=lambda pair: pair[0]["step"])


def _rounded(value, digits: int = 6):
    return None if value is None or not math.isfinite(value) else float(f"{value:.{digits}g}")


def curve_data(logs: list) -> dict:
    """The training log as the page draws it: steps, epochs, loss and one series per weight key
    (common.theory.weight_kinds.parse_log_key: kind, layer, corpus or path-exact reference, cosine or error)."""
    keys = []
    for entry in logs:
        keys += [key for key in entry if key not in keys and parse_log_key(key) is not None]
    series = []
    for key in keys:
        parsed = parse_log_key(key)
        series.append({"key": key, "kind": parsed.kind, "layer": parsed.layer, "reference": parsed.reference,
                       "rel_err": parsed.rel_err, "symbol": KIND[parsed.kind].symbol,
                       "values": [_rounded(entry.get(key)) for entry in logs]})
    return {"step": [entry["step"] for entry in logs], "epoch": [_rounded(entry.get("epoch")) for entry in logs],
            "loss": [_rounded(entry.get("loss")) for entry in logs], "series": series}


# -- the page data -------------------------------------------------------------------------------
def explorer_data(stats, vocabulary: list, checkpoints: list, logs: list, top: int = 8,
                  max_bytes: int = 5_000_000, view: str = "normalised", title: str = "") -> dict:
    """Everything the page shows, as one JSON-ready dict. `checkpoints`: (metadata, model) pairs,
    oldest first (checkpoint_models)."""
    check_view(view, views=PAGE_VIEWS)
    V = len(vocabulary)
    if top < 1:
        raise UserError(f"--top must be at least 1 (got {top})")
    frequency = token_frequency(stats)
    n_weights = sum(weight.dim() == 2 for _, _, weight in named_weights(checkpoints[0][1])) if checkpoints else 0
    n_tables = len(TOKEN_STATISTICS) + n_weights * len(checkpoints)
    fixed = len(json.dumps(vocabulary, ensure_ascii=False)) + 24 * V + 200_000   # words, frequencies, curves, page
    per_row = n_tables * (table_bytes(1000, top, V) - 64) / 1000
    n_rows = V if fixed + per_row * V <= max_bytes else max(0, int((max_bytes - fixed) / per_row))
    notes = []
    if n_rows < V:
        if n_rows < 1:
            raise UserError(f"a page of {max_bytes / 1e6:.1f} MB cannot hold even the vocabulary of {V} tokens; "
                            f"raise --max_mb")
        notes.append(f"This page holds the partners of the {n_rows} most frequent of the {V} tokens only: "
                     f"all {V} rows would take {(fixed + per_row * V) / 1e6:.1f} MB, over the "
                     f"{max_bytes / 1e6:.1f} MB limit (raise --max_mb or lower --top).")
    rows = frequency.argsort(descending=True, stable=True)[:n_rows].sort().values
    statistics = [{"field": s.field, "symbol": s.symbol, "reads": s.reads,
                   "table": partner_table(getattr(stats, s.field), rows, top, s.field == "interchangeability")}
                  for s in TOKEN_STATISTICS]
    trained = []
    for meta, model in checkpoints:
        weights = []
        for key, kind, weight in named_weights(model):
            if weight.dim() == 2:
                layer = parse_log_key(key).layer
                weights.append({"key": key, "kind": kind, "layer": layer, "statistic": KIND[kind].statistic,
                                "label": kind if layer is None else f"{kind} (layer {layer})",
                                "table": partner_table(weight, rows, top)})
        trained.append({"step": meta["step"], "epoch": _rounded(meta.get("epoch"), 4), "weights": weights})
    strongest = strongest_association_tokens(stats, 1)
    return {"title": title, "vocab_size": V, "vocabulary": vocabulary, "top": top, "view": view, "views": PAGE_VIEWS,
            "rows": None if n_rows == V else rows.tolist(), "notes": notes,
            "frequency": [_rounded(f, 6) for f in frequency.tolist()], "n_positions": int(stats.n_positions),
            "min_count": MIN_COUNT,
            "statistics": statistics, "checkpoints": trained, "curves": curve_data(logs),
            "strongest": [list(pair) for pair in strongest_pairs(stats, 40)],
            "default_token": vocabulary[strongest[0] if strongest else int(frequency.argmax())]}


def explorer_page(data: dict) -> str:
    """The HTML page: PAGE with the data embedded (`</` escaped so no token can close the script)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return (PAGE.replace("__TITLE__", html.escape(f"Association explorer — {data['title']}"))
            .replace("__DATA__", payload))


def write_explorer(path, stats, vocabulary: list, checkpoint_files, logs: list, view: str = "normalised",
                   top: int = 8, max_bytes: int = 5_000_000, title: str = "") -> Path:
    """Write the page for a run: its statistics, its checkpoint files (common.tiny.training.checkpoint_paths)
    and its log entries."""
    data = explorer_data(stats, vocabulary, checkpoint_models(checkpoint_files, vocabulary), logs, top,
                         max_bytes, view, title)
    with atomic_path(path) as tmp:
        tmp.write_text(explorer_page(data), encoding="utf-8")
    return Path(path)


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232b; background: #f5f6f8; }
header { background: #25313f; color: #fff; padding: 10px 18px; }
header h1 { font-size: 18px; margin: 0 0 2px 0; }
header .sub { color: #c9d3de; font-size: 12px; }
.controls { display: flex; flex-wrap: wrap; gap: 18px; align-items: center; padding: 10px 18px; background: #fff;
            border-bottom: 1px solid #d8dde3; position: sticky; top: 0; z-index: 2; }
.controls label { font-weight: 600; }
#search { font-size: 15px; padding: 4px 8px; width: 14em; }
.note, .message { margin: 10px 18px; padding: 8px 12px; border-radius: 4px; }
.note { background: #fff4d6; border: 1px solid #e8c96a; }
.message { background: #fde2e1; border: 1px solid #e39a97; font-weight: 600; }
.message:empty, #errors:empty { display: none; }
#errors { margin: 10px 18px; padding: 8px 12px; background: #fde2e1; border: 1px solid #c00; white-space: pre-wrap; }
#tokeninfo { margin: 10px 18px 0 18px; font-size: 15px; }
#tokeninfo b { font-size: 20px; }
main { padding: 0 18px 18px 18px; }
#partners { display: flex; flex-wrap: wrap; gap: 4px 28px; }
.maprow { margin: 10px 0 0 0; }
.maprow h3 { margin: 0 0 4px 0; font-size: 14px; color: #3a4a5c; }
.cards { display: flex; flex-wrap: wrap; gap: 8px; }
.card { background: #fff; border: 1px solid #d8dde3; border-radius: 5px; padding: 6px 8px; min-width: 190px; }
.card.statistic { border-left: 4px solid #25313f; }
.card.trained { border-left: 4px solid #7a9cc6; }
.card h4 { margin: 0; font-size: 13px; }
.card .reads { color: #66707c; font-size: 11px; margin-bottom: 3px; }
.card table { border-collapse: collapse; font-size: 12px; }
.card td, .card th { padding: 1px 5px; text-align: right; }
.card td.word { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
.card th { color: #66707c; font-weight: 500; border-bottom: 1px solid #e3e6ea; }
a { color: #1d5fa8; text-decoration: none; }
a:hover { text-decoration: underline; }
.cut { color: #8a5a00; font-style: italic; }
section.panel { background: #fff; border: 1px solid #d8dde3; border-radius: 5px; margin: 14px 0; padding: 8px 12px; }
section.panel h2 { font-size: 15px; margin: 2px 0 6px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.legend { font-size: 12px; color: #3a4a5c; }
.legend span { margin-right: 14px; white-space: nowrap; }
table.strongest { border-collapse: collapse; font-size: 12px; }
table.strongest td, table.strongest th { padding: 2px 10px; border-bottom: 1px solid #eef0f3; text-align: right; }
table.strongest td.word { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
</style>
</head>
<body>
<div id="errors"></div>
<script>
window.addEventListener("error", function (event) {
  document.getElementById("errors").textContent += "script error: " + event.message + "\n";
});
</script>
<header><h1 id="title"></h1><div class="sub" id="subtitle"></div></header>
<div class="controls">
  <form id="searchform"><label for="search">token</label>
    <input id="search" list="vocabulary" autocomplete="off" spellcheck="false" placeholder="type a token, e.g. bird">
    <datalist id="vocabulary"></datalist></form>
  <span><label for="checkpoint">checkpoint</label> <input type="range" id="checkpoint" min="0" max="0" value="0">
    <span id="checkpointlabel"></span></span>
  <span><label for="view">view</label> <select id="view"></select></span>
</div>
<div id="notes"></div>
<div class="message" id="message"></div>
<div id="tokeninfo"></div>
<main>
  <div id="partners"></div>
  <section class="panel" id="curves"><h2>Training curves</h2><div class="legend" id="legend"></div><div class="charts" id="charts"></div></section>
  <section class="panel" id="strongestpanel"><h2>Strongest associations of the corpus</h2>
    <p class="reads">Tokens a with the largest P̂(y=b | x=a) − 1/V (normalised B̄) among those seen at least <span id="mincount"></span> times as inputs, and that partner b; click a token to explore it.</p>
    <table class="strongest" id="strongest"></table></section>
</main>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const INDEX = new Map(D.vocabulary.map(function (w, i) { return [w, i]; }));
const ROW = new Map();
(D.rows || D.vocabulary.map(function (_, i) { return i; })).forEach(function (t, r) { ROW.set(t, r); });
const VIEW_NAMES = {normalised: "normalised (row ÷ P̂(x=a))", raw: "raw", both: "raw and normalised"};
const KIND_COLOURS = {W_O: "#1f77b4", V: "#e6750a", W: "#2a9d3a", P: "#c2262e"};

function el(tag, attrs) {
  const node = document.createElement(tag);
  for (const name in (attrs || {})) {
    if (name === "text") node.textContent = attrs[name]; else node.setAttribute(name, attrs[name]);
  }
  for (let i = 2; i < arguments.length; i++) if (arguments[i] != null) node.appendChild(arguments[i]);
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const name in (attrs || {})) {
    if (name === "text") node.textContent = attrs[name]; else node.setAttribute(name, attrs[name]);
  }
  return node;
}
function decode(text, Type) {
  const bytes = atob(text), buffer = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) buffer[i] = bytes.charCodeAt(i);
  return new Type(buffer.buffer);
}
const IdArray = D.vocab_size <= 65536 ? Uint16Array : Uint32Array;
function table(t) {          // decoded once, on first use
  if (!t.decoded) t.decoded = {ids: decode(t.ids, IdArray), values: decode(t.values, Int16Array), scale: decode(t.scale, Float32Array)};
  return t.decoded;
}
function partners(t, row) {
  const d = table(t), out = [];
  for (let j = 0; j < t.k; j++) out.push({id: d.ids[row * t.k + j], value: d.values[row * t.k + j] / 32767 * d.scale[row]});
  return out;
}
function fmt(x) {
  if (x === 0) return "0";
  const a = Math.abs(x);
  return (a >= 1e-3 && a < 1e4) ? x.toPrecision(3) : x.toExponential(2);
}
function link(word) { return el("a", {href: "#" + new URLSearchParams({token: word}).toString(), text: word}); }

// -- state in the URL hash: token, checkpoint (index, oldest first), view
function state() {
  const p = new URLSearchParams(location.hash.slice(1));
  let c = parseInt(p.get("checkpoint"), 10);
  if (!(c >= 0 && c < D.checkpoints.length)) c = D.checkpoints.length - 1;
  const v = D.views.indexOf(p.get("view")) >= 0 ? p.get("view") : D.view;
  return {token: p.has("token") ? p.get("token") : D.default_token, checkpoint: c, view: v};
}
function go(changes) {
  const s = Object.assign(state(), changes), p = new URLSearchParams();
  p.set("token", s.token);
  if (s.checkpoint !== D.checkpoints.length - 1) p.set("checkpoint", s.checkpoint);
  if (s.view !== D.view) p.set("view", s.view);
  location.hash = p.toString();
}

function card(kind, map, title, reads, t, a, s) {
  const row = ROW.get(a), f = D.frequency[a], body = el("tbody");
  const head = el("tr", {}, el("th", {text: "#"}), el("th", {text: "partner"}));
  if (s.view !== "normalised") head.appendChild(el("th", {text: "raw"}));
  if (s.view !== "raw") head.appendChild(el("th", {text: "÷ P̂(x=a)"}));
  partners(t, row).forEach(function (p, j) {
    const word = D.vocabulary[p.id], tr = el("tr", {"data-partner": word}, el("td", {text: String(j + 1)}), el("td", {class: "word"}, link(word)));
    if (s.view !== "normalised") tr.appendChild(el("td", {class: "raw", text: fmt(p.value)}));
    if (s.view !== "raw") tr.appendChild(el("td", {class: "normalised", text: fmt(f > 0 ? p.value / f : 0)}));
    body.appendChild(tr);
  });
  return el("section", {class: "card " + kind, "data-map": map}, el("h4", {text: title}), el("div", {class: "reads", text: reads}),
            el("table", {}, el("thead", {}, head), body));
}

function renderPartners(s) {
  const box = document.getElementById("partners"), message = document.getElementById("message"), info = document.getElementById("tokeninfo");
  box.textContent = ""; message.textContent = ""; info.textContent = "";
  document.body.setAttribute("data-token", s.token);
  document.body.setAttribute("data-checkpoint", String(s.checkpoint));
  const a = INDEX.get(s.token);
  if (a === undefined) {
    const stem = s.token.slice(0, 2).toLowerCase(), close = D.vocabulary.filter(function (w) { return w.startsWith(stem); }).slice(0, 12);
    message.appendChild(document.createTextNode("“" + s.token + "” is not in this run's vocabulary (" + D.vocab_size + " tokens)."));
    if (close.length) {
      message.appendChild(document.createTextNode(" Tokens starting with “" + stem + "”: "));
      close.forEach(function (w) { message.appendChild(link(w)); message.appendChild(document.createTextNode(" ")); });
    }
    return;
  }
  const count = Math.round(D.frequency[a] * D.n_positions);
  info.appendChild(el("b", {text: s.token}));
  info.appendChild(document.createTextNode("  id " + a + ", " + count.toLocaleString("en") + " times as an input (P̂(x=a) = " + fmt(D.frequency[a]) + "); view: " + VIEW_NAMES[s.view]));
  if (!ROW.has(a)) {
    message.textContent = "“" + s.token + "” is in the vocabulary, but its partners were cut from this page: it holds the rows of the " + ROW.size + " most frequent tokens only (see the note above).";
    return;
  }
  const ckpt = D.checkpoints[s.checkpoint];
  D.statistics.forEach(function (st) {
    const cards = el("div", {class: "cards"}, card("statistic", st.field, st.symbol + " (corpus)", st.reads, st.table, a, s));
    if (ckpt) ckpt.weights.filter(function (w) { return w.statistic === st.field; }).forEach(function (w) {
      cards.appendChild(card("trained", w.key, w.label, "trained, step " + ckpt.step + ", as " + st.symbol, w.table, a, s));
    });
    box.appendChild(el("div", {class: "maprow"}, el("h3", {text: st.symbol + " — " + st.reads}), cards));
  });
}

// -- training curves: hand-drawn SVG line charts
function chart(title, xs, lines, logY) {
  const W = 420, H = 250, m = {l: 52, r: 10, t: 22, b: 34};
  const f = function (v) { return logY ? Math.log10(v) : v; };
  let lo = Infinity, hi = -Infinity;
  lines.forEach(function (ln) { ln.values.forEach(function (v) { if (v != null && (!logY || v > 0)) { lo = Math.min(lo, f(v)); hi = Math.max(hi, f(v)); } }); });
  const box = svg("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, "data-chart": title});
  box.appendChild(svg("text", {x: m.l, y: 14, "font-size": 12, "font-weight": 600, text: title}));
  if (!isFinite(lo) || xs.length === 0) { box.appendChild(svg("text", {x: m.l, y: H / 2, "font-size": 12, text: "not in the log"})); return box; }
  if (hi - lo < 1e-12) { hi += 0.5; lo -= 0.5; }
  const x0 = xs[0], x1 = xs[xs.length - 1] > x0 ? xs[xs.length - 1] : x0 + 1;
  const X = function (x) { return m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r); };
  const Y = function (y) { return H - m.b - (f(y) - lo) / (hi - lo) * (H - m.t - m.b); };
  box.appendChild(svg("rect", {x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "none", stroke: "#ccd2d9"}));
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, y = H - m.b - i / 4 * (H - m.t - m.b);
    box.appendChild(svg("line", {x1: m.l, x2: W - m.r, y1: y, y2: y, stroke: "#eef0f3"}));
    box.appendChild(svg("text", {x: m.l - 4, y: y + 4, "font-size": 10, "text-anchor": "end", text: fmt(logY ? Math.pow(10, v) : v)}));
  }
  [x0, (x0 + x1) / 2, x1].forEach(function (x) {
    box.appendChild(svg("text", {x: X(x), y: H - m.b + 14, "font-size": 10, "text-anchor": "middle", text: String(Math.round(x))}));
  });
  box.appendChild(svg("text", {x: (W + m.l) / 2, y: H - 4, "font-size": 10, "text-anchor": "middle", text: "step"}));
  lines.forEach(function (ln) {
    let d = "", pen = "M";
    ln.values.forEach(function (v, i) {
      if (v == null || (logY && v <= 0)) { pen = "M"; return; }
      d += pen + X(xs[i]).toFixed(1) + "," + Y(v).toFixed(1) + " "; pen = "L";
    });
    if (!d) return;
    const path = svg("path", {d: d, fill: "none", stroke: ln.colour, "stroke-width": ln.width || 1.5, "stroke-opacity": ln.opacity || 1,
                              "stroke-dasharray": ln.dash || "none", "data-key": ln.key});
    path.appendChild(svg("title", {text: ln.key}));
    box.appendChild(path);
  });
  return box;
}
function renderCurves() {
  const C = D.curves, charts = document.getElementById("charts");
  const style = function (sr) {
    const layer = sr.layer == null ? 0 : sr.layer;
    return {key: sr.key, values: sr.values, colour: KIND_COLOURS[sr.kind] || "#555", opacity: Math.max(0.35, 1 - 0.25 * layer),
            dash: sr.reference === "path" ? "5,3" : "none"};
  };
  charts.appendChild(chart("loss", C.step, [{key: "loss", values: C.loss, colour: "#25313f"}], false));
  charts.appendChild(chart("cosine with the statistic", C.step, C.series.filter(function (s) { return !s.rel_err; }).map(style), false));
  charts.appendChild(chart("relative error to the prediction (log scale)", C.step, C.series.filter(function (s) { return s.rel_err; }).map(style), true));
  const legend = document.getElementById("legend");
  Object.keys(KIND_COLOURS).forEach(function (kind) {
    const sr = C.series.find(function (s) { return s.kind === kind; });
    if (!sr) return;
    const item = el("span", {}), sw = svg("svg", {width: 22, height: 8});
    sw.appendChild(svg("line", {x1: 0, x2: 22, y1: 4, y2: 4, stroke: KIND_COLOURS[kind], "stroke-width": 3}));
    item.appendChild(sw); item.appendChild(document.createTextNode(" " + kind + " vs " + sr.symbol));
    legend.appendChild(item);
  });
  legend.appendChild(el("span", {text: "fainter: deeper layer · dashed: path-exact prediction (docs/theory.md §10)"}));
}
function renderStrongest() {
  const t = document.getElementById("strongest");
  document.getElementById("mincount").textContent = String(D.min_count);
  t.appendChild(el("tr", {}, el("th", {text: "token a"}), el("th", {text: "next token b"}), el("th", {text: "P̂(b | a) − 1/V"}), el("th", {text: "count of a"})));
  D.strongest.forEach(function (p) {
    t.appendChild(el("tr", {}, el("td", {class: "word"}, link(D.vocabulary[p[0]])), el("td", {class: "word"}, link(D.vocabulary[p[1]])),
                     el("td", {text: fmt(p[2])}), el("td", {text: p[3].toLocaleString("en")})));
  });
}

function render() {
  const s = state(), slider = document.getElementById("checkpoint"), ckpt = D.checkpoints[s.checkpoint];
  slider.value = s.checkpoint;
  document.getElementById("checkpointlabel").textContent = ckpt ? "step " + ckpt.step + " (epoch " + ckpt.epoch + "), " + (s.checkpoint + 1) + " of " + D.checkpoints.length + " saved" : "no checkpoint";
  document.getElementById("view").value = s.view;
  document.getElementById("search").value = s.token;
  renderPartners(s);
}

function setup() {
  document.getElementById("title").textContent = "Association explorer — " + D.title;
  document.getElementById("subtitle").textContent = D.vocab_size + " tokens · top " + D.top + " partners per row · " + D.checkpoints.length +
    " checkpoint(s) · corpus statistics and trained weights (docs/theory.md §2, §3)";
  const list = document.getElementById("vocabulary");
  D.vocabulary.forEach(function (w) { list.appendChild(el("option", {value: w})); });
  const slider = document.getElementById("checkpoint");
  slider.max = Math.max(0, D.checkpoints.length - 1);
  slider.disabled = D.checkpoints.length < 2;
  slider.addEventListener("input", function () { go({checkpoint: parseInt(slider.value, 10)}); });
  const view = document.getElementById("view");
  D.views.forEach(function (v) { view.appendChild(el("option", {value: v, text: VIEW_NAMES[v]})); });
  view.addEventListener("change", function () { go({view: view.value}); });
  const search = document.getElementById("search");
  search.addEventListener("change", function () { if (search.value) go({token: search.value}); });
  document.getElementById("searchform").addEventListener("submit", function (e) { e.preventDefault(); if (search.value) go({token: search.value}); });
  const notes = document.getElementById("notes");
  D.notes.forEach(function (n) { notes.appendChild(el("div", {class: "note", text: n})); });
  if (!D.checkpoints.length) notes.appendChild(el("div", {class: "note", text: "No checkpoint: only the corpus statistics are shown."}));
  window.addEventListener("hashchange", render);
  renderCurves();
  renderStrongest();
  render();
}
setup();
</script>
</body>
</html>
"""
