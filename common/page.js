/* The association explorers' shared script (common/tiny, common/checkpoints): page_html (common/page.py)
   inlines it in the frame page.html, in a script element of its own before the page's body and script,
   so that what it declares serves the page's script, and an error of that script, even one that stops it
   parsing, is shown on the page in <div id="errors"> (the browser tests read it). */
"use strict";
window.addEventListener("error", (event) => {
  document.getElementById("errors").textContent += "script error: " + event.message + "\n";
});
const D = JSON.parse(document.getElementById("data").textContent);    // the page's data

// -- elements: attributes by name, "text" the text content; children are nodes or strings (null skipped)
function setAttributes(node, attributes) {
  Object.entries(attributes || {}).forEach(([name, value]) => {
    if (name === "text") node.textContent = value; else node.setAttribute(name, value);
  });
  return node;
}
function el(tag, attributes, ...children) {
  const node = setAttributes(document.createElement(tag), attributes);
  children.forEach((child) => { if (child != null) node.append(child); });
  return node;
}
function fmt(x) {
  if (x == null) return "–";
  if (x === 0) return "0";
  const m = Math.abs(x);
  return (m >= 1e-3 && m < 1e4) ? x.toPrecision(3) : x.toExponential(2);
}
function link(word, text) {         // to the explorer of token `word`, shown as `text` (the word itself by default)
  return el("a", {href: "#" + new URLSearchParams({token: word}).toString(), text: text === undefined ? word : text});
}

// -- partner tables (common/page.py): base64 little-endian partner ids (uint16, or uint32 past 65 536 tokens),
// int16 values as fractions of QUANTUM = 32767 of their row's float32 scale
function bytes(text) {
  const raw = atob(text), out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}
function partners(t, row) {         // [{id, value}] of row `row` of table t, largest first (decoded on first use)
  if (!t.decoded) {
    const ids = bytes(t.ids), values = new Int16Array(bytes(t.values).buffer);
    // an id takes as many bytes as an int16 value, or twice as many
    t.decoded = {ids: ids.length === 2 * values.length ? new Uint16Array(ids.buffer) : new Uint32Array(ids.buffer),
                 values: values, scale: new Float32Array(bytes(t.scale).buffer)};
  }
  const d = t.decoded, out = [];
  for (let j = 0; j < t.k; j++) out.push({id: d.ids[row * t.k + j], value: d.values[row * t.k + j] / 32767 * d.scale[row]});
  return out;
}
function rowIndex(data) {           // token → its row in the tables (data.rows null: every token, in order)
  return new Map((data.rows || data.vocabulary.map((_, i) => i)).map((token, row) => [token, row]));
}

// -- an explorer's state, kept in the URL hash: token, view, and the position of its slider over the saved
// models, under `key` by the name in `names` (an index is read too; the last position is left out)
function hashState(data, key, names) {
  const p = new URLSearchParams(location.hash.slice(1)), given = p.get(key) || "";
  let i = names.indexOf(given);
  if (i < 0) i = /^\d+$/.test(given) ? parseInt(given, 10) : names.length - 1;
  if (!(i >= 0 && i < names.length)) i = names.length - 1;
  return {token: p.has("token") ? p.get("token") : data.default_token, [key]: i,
          view: data.views.includes(p.get("view")) ? p.get("view") : data.view};
}
function setHashState(data, key, names, s) {
  const p = new URLSearchParams({token: s.token});
  if (s[key] >= 0 && s[key] < names.length - 1) p.set(key, names[s[key]]);
  if (s.view !== data.view) p.set("view", s.view);
  location.hash = p.toString();
}

// -- an explorer's top, built before its <main>: the title and subtitle, the bar (a token search completing
// from `words`, the slider `key` over `count` saved models, the menu of `views` named by `viewNames`; each
// change calls go(changes)), the `notes`, then the boxes of the token's message and line (#tokeninfo)
function explorerTop({title, subtitle, key, count, words, views, viewNames, notes, go}) {
  const search = el("input", {id: "search", list: "vocabulary", autocomplete: "off", spellcheck: "false",
                              placeholder: "type a token, e.g. bird"});
  const list = el("datalist", {id: "vocabulary"});
  words.forEach((w) => list.append(el("option", {value: w})));
  const form = el("form", {id: "searchform"}, el("label", {for: "search", text: "token"}), " ", search, list);
  const slider = el("input", {type: "range", id: key, min: 0, max: Math.max(0, count - 1), value: 0});
  slider.disabled = count < 2;
  const view = el("select", {id: "view"});
  views.forEach((v) => view.append(el("option", {value: v, text: viewNames[v]})));
  const bar = el("div", {class: "controls"}, form,
    el("span", {}, el("label", {for: key, text: key}), " ", slider, " ", el("span", {id: key + "label"})),
    el("span", {}, el("label", {for: "view", text: "view"}), " ", view));
  document.querySelector("main").before(el("header", {}, el("h1", {id: "title", text: title}), el("div", {class: "sub", id: "subtitle", text: subtitle})),
    bar, el("div", {id: "notes"}, ...notes.map((n) => el("div", {class: "note", text: n}))), el("div", {id: "message"}), el("div", {id: "tokeninfo"}));
  slider.addEventListener("input", () => go({[key]: parseInt(slider.value, 10)}));
  view.addEventListener("change", () => go({view: view.value}));
  search.addEventListener("change", () => { if (search.value) go({token: search.value}); });
  form.addEventListener("submit", (e) => { e.preventDefault(); if (search.value) go({token: search.value}); });
}
function showOnBar(key, s, position) {   // the bar shows state s; `position` says the slider's in words
  document.getElementById(key).value = s[key];
  document.getElementById(key + "label").textContent = position;
  document.getElementById("view").value = s.view;
  document.getElementById("search").value = s.token;
  return document.getElementById(key + "label");
}
