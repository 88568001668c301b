import pytest
import torch

from invgan.bases import DCTBasis, HaarBasis
from invgan.lasso import lasso_cvxpy, lasso_fista
from invgan.physics import GaussianCS

SHAPE = (3, 16, 16)


def _problem(m, seed=0, sparse_basis=None, k=12):
    g = torch.Generator().manual_seed(seed)
    if sparse_basis is None:
        x = torch.rand(2, *SHAPE, generator=g, dtype=torch.float64) * 2 - 1
    else:  # exactly k-sparse in the basis
        w = torch.zeros(2, *SHAPE, dtype=torch.float64)
        idx = torch.randperm(w[0].numel(), generator=g)[:k]
        w.view(2, -1)[:, idx] = torch.randn(2, k, generator=g, dtype=torch.float64)
        x = sparse_basis.synthesis(w)
    p = GaussianCS(m, SHAPE, noise_std=0.0, seed=seed)
    p.matrix = p.matrix.double()
    return x, p, p(x)


@pytest.mark.parametrize("basis,alpha", [("dct", 0.1), ("wavelet", 1e-3), ("dct", 1e-3)])
def test_fista_matches_cvxpy(basis, alpha):
    x, p, y = _problem(150)
    fast = lasso_fista(y, p, basis, alpha=alpha, tol=1e-9, max_iter=20000)
    ref = lasso_cvxpy(y, p, basis, alpha=alpha)
    rel = (fast.objective - ref.objective) / ref.objective
    assert rel.abs().max() < 1e-4, (fast.objective, ref.objective)


@pytest.mark.parametrize("basis_cls", [DCTBasis, HaarBasis])
def test_lasso_recovers_sparse_image(basis_cls):
    basis = basis_cls(16)
    basis_name = "dct" if basis_cls is DCTBasis else "wavelet"
    x, p, y = _problem(200, seed=1, sparse_basis=basis, k=12)
    r = lasso_fista(y, p, basis_name, alpha=1e-6, tol=1e-10, clip=False, max_iter=20000)
    assert (r.x - x).pow(2).mean() < 1e-6 * x.pow(2).mean()


class RowCountingCS(GaussianCS):
    """Counts the image rows that A is applied to; ``shared=False`` turns off compaction."""

    def __init__(self, *a, shared=True, **kw):
        super().__init__(*a, **kw)
        self.rows, self.shared = 0, shared

    def A(self, x):
        self.rows += x.shape[0]
        return super().A(x)


def test_stopped_images_are_not_computed_and_do_not_change_the_result():
    basis = DCTBasis(16)
    g = torch.Generator().manual_seed(3)
    w = torch.zeros(4, *SHAPE, dtype=torch.float64)
    for i, k in enumerate([3, 6, 0, 0]):  # two sparse images stop early, two random ones late
        idx = torch.randperm(w[0].numel(), generator=g)[:k]
        w[i].view(-1)[idx] = torch.randn(k, generator=g, dtype=torch.float64)
    x = basis.synthesis(w)
    x[2:] = torch.rand(2, *SHAPE, generator=g, dtype=torch.float64) * 2 - 1
    results = {}
    for shared in (True, False):
        p = RowCountingCS(120, SHAPE, noise_std=0.0, seed=0, shared=shared)
        p.matrix = p.matrix.double()
        y = p(x)
        p.rows = 0
        results[shared] = (lasso_fista(y, p, "dct", alpha=1e-4, tol=1e-6, max_iter=2000), p.rows)
    (fast, fast_rows), (full, full_rows) = results[True], results[False]
    assert fast_rows < 0.8 * full_rows, (fast_rows, full_rows)
    assert fast.iterations == full.iterations
    assert torch.equal(fast.image_iterations, full.image_iterations)
    assert fast.image_iterations[:2].max() < 0.5 * fast.image_iterations[2:].min()
    assert torch.allclose(fast.objective, full.objective, rtol=1e-9)
    assert torch.allclose(fast.w, full.w, atol=1e-7)
