"""Self-contained pages (common/page.py): partner tables round-trip through their encoding to within
the int16 quantum, top-k partners against a sort, the page template with its data embedded and the
shared style and script (common/page.css, common/page.js) inlined once in every page."""
import json
import re
from importlib import resources

import numpy as np
import pytest
import torch

from common.page import QUANTUM, decode_table, page_html, partner_table, table_bytes, top_partner_table, write_page


def test_top_partners_against_a_full_sort():
    matrix = torch.randn(6, 9, generator=torch.Generator().manual_seed(0))
    values, ids = top_partner_table(matrix, [4, 1], 3)
    for row, (v, i) in zip([4, 1], zip(values, ids)):
        order = sorted(range(9), key=lambda j: -float(matrix[row, j]))[:3]
        assert i.tolist() == order and torch.allclose(v, matrix[row, order].double())
    _, ids = top_partner_table(torch.eye(5) * 10, [2], 2, skip_self=True)
    assert 2 not in ids[0].tolist()


@pytest.mark.parametrize("vocab", [50, 70_000])
def test_encoded_tables_decode_to_the_partners(vocab):
    g = torch.Generator().manual_seed(1)
    matrix = torch.randn(4, vocab, generator=g, dtype=torch.float64)
    rows = torch.tensor([0, 3])
    table = partner_table(matrix, rows, 5)
    ids, values = decode_table(table, vocab)
    expected_values, expected_ids = top_partner_table(matrix, rows, 5)
    assert (ids == expected_ids.numpy()).all()
    scale = expected_values.abs().max(dim=1).values.numpy()[:, None]
    assert np.abs(values - expected_values.numpy()).max() <= (scale / QUANTUM).max() * 1.01
    assert len(json.dumps(table)) <= table_bytes(2, 5, vocab) + 40


def test_page_embeds_title_and_data_and_cannot_be_closed_by_a_token(tmp_path):
    text = page_html("common.tiny", "explorer_page.html", {"word": "</script><b>"}, "a <title>")
    assert "a &lt;title&gt;" in text and "<\\/script><b>" in text and "__DATA__" not in text
    path = write_page(tmp_path / "page.html", text)
    assert path.read_text(encoding="utf-8") == text



@pytest.mark.parametrize("package, name", [("common.tiny", "explorer_page.html"),
                                           ("common.checkpoints", "explorer_page.html"),
                                           ("common.checkpoints", "explorer_index.html")])
def test_every_page_is_the_frame_with_the_shared_parts_inlined_once(package, name):
    common = resources.files("common")
    css, js = (common.joinpath(file).read_text(encoding="utf-8") for file in ("page.css", "page.js"))
    assert "</style" not in css.lower() and "</script" not in js.lower()
    own_style, own_body = resources.files(package).joinpath(name).read_text(encoding="utf-8").split("</style>\n", 1)
    # a placeholder's name in the data or the title is data, not a placeholder (one pass over the frame)
    text = page_html(package, name, {"word": "__PAGE_JS__ __BODY__"}, "__DATA__")
    assert re.findall(r"__[A-Z_]+__", text) == ["__DATA__", "__PAGE_JS__", "__BODY__"]
    assert "<title>__DATA__</title>" in text and '"word":"__PAGE_JS__ __BODY__"' in text
    assert text.count(css) == 1 and text.count(js) == 1 and text.count("<!DOCTYPE html>") == 1
    head, body = text.split("</head>\n<body>\n")
    # the head's one style element: the shared rules, then the page's own (a page may override them)
    assert head.count("<style>") == 1 and head.index(css) < head.index(own_style.removeprefix("<style>\n")) < head.index("</style>")
    # the body: the error box, the data, the shared script in its own element, then the page's markup and script
    assert body.startswith('<div id="errors"></div>\n<script type="application/json" id="data">')
    assert body.index("</script>\n<script>\n" + js + "\n</script>\n") < body.index(own_body) and body.endswith("</body>\n</html>\n")


def test_a_page_file_starts_with_its_style(tmp_path, monkeypatch):
    (tmp_path / "pagepackage").mkdir()
    (tmp_path / "pagepackage" / "__init__.py").write_text("")
    (tmp_path / "pagepackage" / "bare.html").write_text("<main></main>\n<style>\nmain {}\n</style>\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="bare.html does not start with its <style> element"):
        page_html("pagepackage", "bare.html", {}, "t")
