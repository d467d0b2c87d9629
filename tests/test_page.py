"""Self-contained pages (common/page.py): partner tables round-trip through their encoding to within
the int16 quantum, top-k partners against a sort, the page template with its data embedded."""
import json

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
