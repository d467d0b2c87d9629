import pytest
import torch

from common.theory.similarity import (RSATarget, matrix_cosine, normalize_rows, relative_error, rowcenter, rsa,
                               rsa_factored)
from common.theory.reference import naive_rsa


def test_matrix_cosine_and_relative_error():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, -1.0]])
    assert matrix_cosine(a, b) == pytest.approx((2 + 3 - 4) / (30 ** 0.5 * 6 ** 0.5), abs=1e-15)
    assert matrix_cosine(a, 5 * a) == pytest.approx(1.0, abs=1e-15)
    assert relative_error(a, b) == pytest.approx((34 / 6) ** 0.5, abs=1e-15)
    assert matrix_cosine(torch.zeros(2, 2), a) == 0.0
    # float64 even for tiny float32 weights (the release multiplied by 1e10 instead)
    assert matrix_cosine(a.float() * 1e-30, b.float()) == pytest.approx(matrix_cosine(a, b), rel=1e-6)


@pytest.mark.parametrize("n,da,db", [(30, 5, 8), (20, 40, 3), (25, 25, 25)])
def test_rsa_equals_brute_force(n, da, db):
    torch.manual_seed(n)
    a, b = torch.randn(n, da), torch.randn(n, db) + torch.randn(n, 1)
    a[3] = 0  # a zero row stays zero under normalisation
    for normalize in (False, True):
        expected = naive_rsa(normalize_rows(a.double()) if normalize else a.double(), b.double())
        assert rsa(a, b, normalize_a=normalize) == pytest.approx(expected, abs=1e-12)


def test_rsa_factored_equals_brute_force():
    torch.manual_seed(0)
    n, d = 40, 6
    H, M, Q = torch.randn(n, d).double(), torch.randn(d, d).double(), torch.randn(n, n).double()
    logits = H @ M @ H.T
    target = RSATarget(Q, normalize=True)
    got = rsa_factored(target, H @ M, H - H.mean(0, keepdim=True))
    assert got == pytest.approx(naive_rsa(normalize_rows(Q), logits), abs=1e-12)
    assert abs(got) > 1e-3  # not trivially zero


def test_helpers():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(normalize_rows(a), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    assert torch.allclose(rowcenter(a), torch.tensor([[-0.5, 0.5], [0.0, 0.0]]))
    with pytest.raises(ValueError):
        rsa(torch.randn(3, 2), torch.randn(4, 2))
