"""Self-contained HTML pages with embedded data (the association explorers of both wings), one file each
with nothing fetched.  A page's own style, markup and script live in a `.html` file inside its package (its
`<style>` element first, then its body), read with importlib.resources; page_html puts them into the frame
that the pages share, page.html beside this module, with the shared style and script (page.css, page.js:
the error box, element and table helpers, an explorer's top bar and URL state), the title and the data.
The data travel as top-k partner tables, never whole matrices.

A partner table holds, for each chosen row of a token × token matrix, its k largest entries: the partner
ids (uint16, or uint32 past 65 536 tokens), their values as int16 fractions of the row's largest |value|
and that float32 scale, each base64-encoded little-endian (page.js decodes them: `partners`).
"""
import base64
import html
import json
import math
import re
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from common.io import UserError, atomic_path

ROW_CHUNK = 1024          # rows per top-k call (a V = 10000 float64 block is 800 MB)
QUANTUM = 32767           # int16 steps per row scale (page.js divides by it too)
FRAME = "page.html"       # every page's frame, beside this module, and the shared files it inlines
SHARED = {"__PAGE_CSS__": "page.css", "__PAGE_JS__": "page.js"}
PLACEHOLDER = re.compile(r"__(?:TITLE|DATA|PAGE_CSS|PAGE_JS|STYLE|BODY)__")
PAGE = re.compile(r"<style>\n(?P<style>.*?)</style>\n(?P<body>.*)", re.S)   # a page file: its style, its body


def top_partner_table(matrix: torch.Tensor, rows, k: int, skip_self: bool = False):
    """(values, ids) [len(rows), k'] of the k largest entries of each chosen row, largest first;
    `skip_self` leaves the diagonal entry out (Σ_B: a token is trivially interchangeable with itself)."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    block = matrix.detach()[rows.to(matrix.device)].to("cpu", torch.float64)
    if skip_self:
        block[torch.arange(len(rows)), rows] = -float("inf")
    return block.topk(min(k, block.shape[1] - int(skip_self)), dim=1)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _id_dtype(vocab_size: int):
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def partner_table(matrix: torch.Tensor, rows: torch.Tensor, k: int, skip_self: bool = False) -> dict:
    """Top-k partners of each of `rows` (top_partner_table), encoded for a page."""
    ids, values = [], []
    for start in range(0, len(rows), ROW_CHUNK):
        v, i = top_partner_table(matrix, rows[start:start + ROW_CHUNK], k, skip_self)
        values.append(v)
        ids.append(i)
    return encode_partners(torch.cat(values), torch.cat(ids), matrix.shape[1])


def encode_partners(values: torch.Tensor, ids: torch.Tensor, vocab_size: int) -> dict:
    """A partner table (module docstring) from its values and partner ids [rows, k] (finite values,
    largest first in each row)."""
    values = values.to(torch.float64)
    scale = values.abs().max(dim=1).values
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.float32)
    quantised = torch.round(values / scale.double()[:, None] * QUANTUM).to(torch.int16)
    return {"k": values.shape[1], "ids": _b64(ids.numpy().astype(_id_dtype(vocab_size))),
            "values": _b64(quantised.numpy()), "scale": _b64(scale.numpy())}


def decode_table(table: dict, vocab_size: int):
    """(ids, values) [rows, k] of an encoded table, as the page decodes it (for tests and tools)."""
    k = table["k"]
    ids = np.frombuffer(base64.b64decode(table["ids"]), dtype=_id_dtype(vocab_size)).reshape(-1, k)
    scale = np.frombuffer(base64.b64decode(table["scale"]), dtype="<f4").astype(np.float64)
    values = np.frombuffer(base64.b64decode(table["values"]), dtype="<i2").reshape(-1, k) / QUANTUM * scale[:, None]
    return ids.astype(np.int64), values


def table_bytes(rows: int, k: int, vocab_size: int) -> int:
    """Bytes one encoded table takes in a page (base64 of ids, int16 values and float32 scales)."""
    raw = rows * k * (_id_dtype(vocab_size).itemsize + 2) + rows * 4
    return math.ceil(raw / 3) * 4 + 64


def page_html(package: str, name: str, data: dict, title: str) -> str:
    """The page `name` of `package` in the frame, with the shared style and script, its title and its
    data (`</` escaped in the JSON, so no token can close the script element).  One pass over the frame:
    a placeholder's name inside the page, the data or the title stays as it is."""
    page = PAGE.fullmatch(resources.files(package).joinpath(name).read_text(encoding="utf-8"))
    if page is None:
        raise ValueError(f"{package}/{name} does not start with its <style> element")
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    fills = {"__TITLE__": html.escape(title), "__DATA__": payload, "__STYLE__": page["style"], "__BODY__": page["body"]}
    fills.update({mark: _shared(file) for mark, file in SHARED.items()})
    return PLACEHOLDER.sub(lambda match: fills[match.group(0)], _shared(FRAME))


def _shared(file: str) -> str:
    return resources.files(__package__).joinpath(file).read_text(encoding="utf-8")


def write_page(path, text: str) -> Path:
    """Write a page atomically (a reader never sees half a page)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def page_bytes(n_rows: int, n_tokens: int, n_tables: int, top: int, fixed: int) -> int:
    """Bytes of a page holding `n_rows` rows of each table (common.page.table_bytes) beside `fixed` bytes."""
    return fixed + n_tables * table_bytes(n_rows, top, n_tokens)


def rows_that_fit(n_tokens: int, n_tables: int, top: int, fixed: int, max_bytes: int) -> int:
    """The most rows a page of `max_bytes` holds (every row when they all fit)."""
    if page_bytes(n_tokens, n_tokens, n_tables, top, fixed) <= max_bytes:
        return n_tokens
    per_row = (page_bytes(n_tokens, n_tokens, n_tables, top, 0) - page_bytes(0, n_tokens, n_tables, top, 0)) / n_tokens
    return max(0, int((max_bytes - page_bytes(0, n_tokens, n_tables, top, fixed)) / per_row))


def rows_on_page(n_tokens: int, n_tables: int, top: int, fixed: int, max_bytes: int, what: str, advice: str):
    """(rows kept, notes for the page): every row when the page fits in `max_bytes`, else the most rows
    that fit, with a note saying so (a page that cannot hold even its token list is one UserError)."""
    n_rows = rows_that_fit(n_tokens, n_tables, top, fixed, max_bytes)
    if n_rows == n_tokens:
        return n_rows, []
    if n_rows < 1:
        raise UserError(f"a page of {max_bytes / 1e6:.1f} MB cannot hold even the list of {n_tokens} {what}; "
                        f"raise --max_mb")
    return n_rows, [f"This page holds the partners of the {n_rows} most frequent of the {n_tokens} {what} only: "
                    f"all {n_tokens} rows of its {n_tables} tables would take "
                    f"{page_bytes(n_tokens, n_tokens, n_tables, top, fixed) / 1e6:.1f} MB, over the "
                    f"{max_bytes / 1e6:.1f} MB limit (raise --max_mb, {advice})."]
