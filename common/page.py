"""Self-contained HTML pages with embedded data (the association explorers of both wings): a page's
HTML, CSS and JavaScript live in a `.html` file inside its package, read with importlib.resources, with
`__TITLE__` and `__DATA__` filled in; the data travel as top-k partner tables, never whole matrices.

A partner table holds, for each chosen row of a token × token matrix, its k largest entries: the partner
ids (uint16, or uint32 past 65 536 tokens), their values as int16 fractions of the row's largest |value|
and that float32 scale, each base64-encoded little-endian (the page decodes them with DataView).
"""
import base64
import html
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from common.io import atomic_path

ROW_CHUNK = 1024          # rows per top-k call (a V = 10000 float64 block is 800 MB)
QUANTUM = 32767           # int16 steps per row scale


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
    """The page `name` of `package` with its title and data embedded (`</` escaped in the JSON, so no
    token can close the script element)."""
    template = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return template.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


def write_page(path, text: str) -> Path:
    """Write a page atomically (a reader never sees half a page)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
