import pytest
import torch

from common.theory.similarity import (RSATarget, matrix_cosine, normalize_rows, relative_error, rowcenter, rsa,
                               rsa_factored, rsa_to_target, token_center)
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


def dense_token_centred_rsa(a, b):
    """The token-centred rsa with explicit n×n matrices: cos(J cov(A) J, J cov(B) J), J = I − 11ᵀ/n."""
    n = a.shape[0]
    J = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1 / n, dtype=torch.float64)
    ca, cb = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    ka, kb = J @ (ca @ ca.T) @ J, J @ (cb @ cb.T) @ J
    return float((ka * kb).sum() / (ka.norm() * kb.norm()))


@pytest.mark.parametrize("n,da,db", [(30, 5, 8), (20, 40, 3), (25, 25, 25)])
def test_token_centred_rsa_equals_dense(n, da, db):
    g = torch.Generator().manual_seed(n)
    shared_a, shared_b = torch.randn(1, da, generator=g).double(), torch.randn(1, db, generator=g).double()
    a = torch.randn(n, da, generator=g).double() + 5 * shared_a        # a row shared by every token
    b = torch.randn(n, db, generator=g).double() + 5 * shared_b
    a[3] = 0
    for normalize in (False, True):
        a_side = normalize_rows(a) if normalize else a
        expected = dense_token_centred_rsa(a_side, b)
        assert rsa(a, b, normalize_a=normalize, centre_tokens=True) == pytest.approx(expected, abs=1e-12)
        # the shared row is what the uncentred form reads as agreement: the two numbers differ
        assert abs(rsa(a, b, normalize_a=normalize) - expected) > 1e-2
    # adding one row to every token changes nothing in the token-centred form, everything in the other
    moved = b + 100 * torch.randn(1, db, generator=g).double()
    assert rsa(a, moved, centre_tokens=True) == pytest.approx(rsa(a, b, centre_tokens=True), abs=1e-12)


def test_token_centred_rsa_factored_equals_dense():
    # the attention side H M Hᵀ in its factored form: the query factor is token-centred too
    g = torch.Generator().manual_seed(4)
    n, d = 40, 6
    H = torch.randn(n, d, generator=g).double() + 3 * torch.randn(1, d, generator=g).double()
    M = torch.randn(d, d, generator=g).double()
    Q = torch.randn(n, n, generator=g).double() + 4 * torch.rand(1, n, generator=g).double()
    target = RSATarget(Q, normalize=True, centre_tokens=True)
    got = rsa_factored(target, H @ M, H - H.mean(0, keepdim=True))
    expected = dense_token_centred_rsa(normalize_rows(Q), H @ M @ H.T)
    assert got == pytest.approx(expected, abs=1e-12)
    assert abs(got) > 1e-3
    assert abs(got - rsa_factored(RSATarget(Q, normalize=True), H @ M, H - H.mean(0, keepdim=True))) > 1e-3
    # float32 in place (the GPU path) agrees with float64
    single = Q.float()
    target32 = RSATarget(single, normalize=True, dtype=torch.float32, copy=False, centre_tokens=True)
    assert target32.centered.data_ptr() == single.data_ptr()
    assert rsa_factored(target32, (H @ M).float(), (H - H.mean(0, keepdim=True)).float()) == pytest.approx(
        expected, abs=1e-5)
    assert rsa_to_target(target32, H.float()) == pytest.approx(dense_token_centred_rsa(normalize_rows(Q), H),
                                                               abs=1e-5)


def test_helpers():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(normalize_rows(a), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    assert torch.allclose(rowcenter(a), torch.tensor([[-0.5, 0.5], [0.0, 0.0]]))
    b = torch.arange(15.0).reshape(5, 3)
    assert torch.allclose(token_center(b, block=2), b - b.mean(0, keepdim=True))
    with pytest.raises(ValueError):
        rsa(torch.randn(3, 2), torch.randn(4, 2))
