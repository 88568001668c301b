import numpy as np
import pytest
import pywt
import scipy.fft
import torch

from invgan import InvganError
from invgan.bases import DCTBasis, HaarBasis
from invgan.masks import center_mask
from invgan.physics import GaussianCS, Identity, Inpainting, SuperResolution, make_physics

SHAPE = (3, 64, 64)


@pytest.mark.parametrize("physics", [
    GaussianCS(300, SHAPE, seed=1), SuperResolution(4, SHAPE), Identity(SHAPE),
    Inpainting(center_mask(64), SHAPE)], ids=lambda p: p.name)
def test_adjoint_and_shapes(physics):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    y = physics.A(x.float()).double()
    r = torch.randn(y.shape, generator=g, dtype=torch.float64)
    lhs = (physics.A(x.float()).double() * r).sum()
    rhs = (x * physics.A_adjoint(r.float()).double()).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-4), (lhs, rhs)
    # batched: each image measured alone gives the same rows
    assert torch.allclose(physics.A(x[1:].float()), physics.A(x.float())[1:], atol=1e-4)


def test_gaussian_convention_and_noise():
    p = GaussianCS(2000, SHAPE, noise_std=0.5, seed=3)
    a = p.matrix
    assert a.shape == (2000, 12288)
    assert abs(a.mean().item()) < 0.01 and abs(a.std().item() - 1) < 0.01  # i.i.d. N(0, 1) entries
    assert torch.equal(a, GaussianCS(2000, SHAPE, seed=3).matrix)       # seeded
    x = torch.zeros(4, *SHAPE)
    e = p(x, torch.Generator().manual_seed(0))
    assert abs(e.std().item() - 0.5) < 0.02
    # the CSGM data term is the mean over the m measurements
    x1 = torch.rand(1, *SHAPE)
    assert torch.isclose(p.data_fidelity(p.A(x1) + 2.0, x1), torch.tensor([4.0]), rtol=1e-4)


def test_measurement_count_checked():
    with pytest.raises(InvganError, match="between 1 and 12288"):
        GaussianCS(0, SHAPE)
    with pytest.raises(InvganError, match="between 1 and 12288"):
        GaussianCS(12289, SHAPE)
    with pytest.raises(InvganError, match="unknown physics"):
        make_physics("blur", SHAPE, 10)
    with pytest.raises(InvganError, match="no observed"):
        Inpainting(torch.zeros(1, 64, 64), SHAPE)
    with pytest.raises(InvganError, match="does not fit"):
        Inpainting(torch.ones(1, 32, 32), SHAPE)


def test_superres_is_block_average():
    x = torch.arange(64.0).reshape(1, 1, 8, 8).repeat(1, 3, 1, 1)
    y = SuperResolution(4, (3, 8, 8)).A(x)
    assert y.shape == (1, 3, 2, 2) and y[0, 0, 0, 0] == x[0, 0, :4, :4].mean()


@pytest.mark.parametrize("basis", [DCTBasis(8), HaarBasis(8), DCTBasis((6, 10)), HaarBasis((8, 16)), DCTBasis(28)],
                         ids=["dct", "haar", "dct-6x10", "haar-8x16", "dct-28"])
def test_bases_are_orthonormal(basis):
    H, W = basis.shape
    n = H * W
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, H, W)
    Q = basis.synthesis(eye).reshape(n, n)  # columns: basis vectors
    assert torch.allclose(Q @ Q.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    x = torch.randn(5, 3, H, W, dtype=torch.float64)
    assert torch.allclose(basis.synthesis(basis.analysis(x)), x, atol=1e-12)


def test_haar_matches_pywt_on_a_rectangle():
    import pywt

    x = torch.randn(1, 1, 8, 16, dtype=torch.float64)
    b = HaarBasis((8, 16))
    ref, _ = pywt.coeffs_to_array(pywt.wavedec2(x[0, 0].numpy(), "haar", level=b.level))
    assert np.abs(b.analysis(x)[0, 0].numpy() - ref).max() < 1e-12


def test_bases_match_scipy_and_pywt():
    x = torch.randn(2, 3, 64, 64)
    ref = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")
    assert np.abs(DCTBasis(64).analysis(x).numpy() - ref).max() < 1e-4
    arr, _ = pywt.coeffs_to_array(pywt.wavedec2(x[1, 2].double().numpy(), "haar", level=6))
    assert np.abs(HaarBasis(64).analysis(x.double())[1, 2].numpy() - arr).max() < 1e-10


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_gaussian_products_by_onednn_from_m_1000_match_torchs_and_their_gradients(monkeypatch):
    """Where ``invgan.runtime.onednn_products`` says so (INVGAN_ONEDNN=1 here), GaussianCS's A and A^T from
    m = ONEDNN_FROM_M go to oneDNN: they equal torch's products to float32 rounding, so do their gradients
    (autograd through A is what CSGM differentiates), and they are made once per matrix. Below that m, and
    with INVGAN_ONEDNN=0, the products are torch's, bit for bit. Copies and pickles leave the oneDNN forms
    out; the operator's fingerprint names the library (a solution made with one is not reused for the other)."""
    import copy
    import pickle

    import invgan.runtime as rt
    from invgan.resume import operator_fingerprint

    calls = []
    real = rt.OneDNNRight.__rmatmul__
    monkeypatch.setattr(rt.OneDNNRight, "__rmatmul__", lambda self, c: calls.append(c.shape) or real(self, c))
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    g = torch.randn(5, GaussianCS.ONEDNN_FROM_M, generator=torch.Generator().manual_seed(2))
    results, prints = {}, {}
    for flag in ("0", "1"):
        monkeypatch.setenv(rt.ONEDNN_ENV, flag)
        for m in (GaussianCS.ONEDNN_FROM_M - 1, GaussianCS.ONEDNN_FROM_M):
            p = GaussianCS(m, (3, 32, 32), seed=3)
            calls.clear()
            xv = x.clone().requires_grad_(True)
            y = p.A(xv)
            (y * g[:, :m]).sum().backward()
            back = p.A_adjoint(g[:, :m])
            results[flag, m] = (y.detach(), xv.grad, back)
            used = flag == "1" and m >= GaussianCS.ONEDNN_FROM_M
            assert (len(calls) == 3) is used and (len(calls) == 0) is (not used)  # A, its gradient, A^T
            assert p.products() == ("onednn" if used else "torch")
            prints[flag, m] = operator_fingerprint(p)
            if used:
                forms = p._onednn(x)
                assert forms[0] is p._onednn(x)[0]  # made once per matrix
                q = copy.deepcopy(p)
                assert "_onednn_forms" not in vars(q) and torch.equal(q.A(x), y.detach())
                assert "_onednn_forms" not in vars(pickle.loads(pickle.dumps(p)))
    low, high = GaussianCS.ONEDNN_FROM_M - 1, GaussianCS.ONEDNN_FROM_M
    for a, b in zip(results["0", low], results["1", low]):
        assert torch.equal(a, b)
    for a, b in zip(results["0", high], results["1", high]):
        assert not torch.equal(a, b)  # another library's rounding ...
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4 * float(a.abs().max()))  # ... of the same products
    assert prints["0", low] == prints["1", low] and prints["0", high] != prints["1", high]
