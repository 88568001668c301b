import pytest
import torch

from invgan.bases import DCTBasis, HaarBasis, make_basis
from invgan.errors import InvganError
from invgan.lasso import NEWTON_GAP, POLISH_GAP, dense_matrix, lasso_cvxpy, lasso_fista, support_newton
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
        # dense=False: A is applied through the operator (the path whose rows are counted)
        results[shared] = (lasso_fista(y, p, "dct", alpha=1e-4, tol=1e-6, max_iter=2000, dense=False), p.rows)
    (fast, fast_rows), (full, full_rows) = results[True], results[False]
    assert fast_rows < 0.8 * full_rows, (fast_rows, full_rows)
    assert fast.iterations == full.iterations
    assert torch.equal(fast.image_iterations, full.image_iterations)
    assert fast.image_iterations[:2].max() < 0.5 * fast.image_iterations[2:].min()
    assert torch.allclose(fast.objective, full.objective, rtol=1e-9)
    assert torch.allclose(fast.w, full.w, atol=1e-7)


def _faces_like(m, seed=0, n_img=3):
    """Smooth random images (low-pass noise): compressible in DCT and Haar like faces, not sparse."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n_img, 3, 4, 4, generator=g) * 2 - 1, size=SHAPE[1:],
                                        mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    p = GaussianCS(m, SHAPE, noise_std=0.01, seed=seed)
    return x, p, p(x, torch.Generator().manual_seed(seed + 1))


@pytest.mark.parametrize("basis", ["dct", "wavelet"])
def test_dense_path_equals_the_operator_path(basis):
    """B = A Psi formed once solves the same problem as the transform path (its iterates differ by
    float32 rounding only): the same objective, both certified (Newton steps off)."""
    x, p, y = _faces_like(150)
    kw = dict(alpha=0.05, tol=1e-5, max_iter=3000, newton=False)
    a = lasso_fista(y, p, basis, dense=True, **kw)
    b = lasso_fista(y, p, basis, dense=False, **kw)
    assert torch.allclose(a.objective, b.objective, rtol=1e-5)
    assert (a.gap <= 1e-4).all() and (b.gap <= 1e-4).all()


@pytest.mark.parametrize("basis", ["dct", "wavelet"])
def test_newton_steps_certify_in_far_fewer_iterations_and_agree_with_cvxpy(basis):
    """On a fixed small problem (float64, so that plain FISTA can reach the tolerance too) the
    support Newton steps certify a 1e-6 gap in well under 0.6 of plain FISTA's iterations, end at
    the exact minimiser (gap < 1e-9) and agree with cvxpy."""
    x, p, _ = _faces_like(150)
    p.matrix = p.matrix.double()
    y = p(x.double(), torch.Generator().manual_seed(1))
    kw = dict(alpha=0.05, tol=1e-6, max_iter=20000, clip=False)
    newton = lasso_fista(y, p, basis, **kw)
    plain = lasso_fista(y, p, basis, newton=False, stall_tol=0, **kw)
    assert (newton.gap <= 1e-9).all() and (plain.gap <= 1e-6).all(), (newton.gap, plain.gap)
    assert int(newton.image_iterations.sum()) < 0.6 * int(plain.image_iterations.sum()), (
        newton.image_iterations, plain.image_iterations)
    ref = lasso_cvxpy(y, p, basis, alpha=0.05, clip=False)
    rel = (newton.objective - ref.objective) / ref.objective
    assert rel.abs().max() < 1e-6, rel


def test_final_polish_certifies_images_fista_leaves_just_above_the_bar():
    """FISTA stopped on stagnation before its first scheduled Newton steps (every 1000 iterations
    at this m) leaves every image's gap between POLISH_GAP and NEWTON_GAP; the final support-Newton
    polish certifies them to rounding, at an objective no higher, that agrees with cvxpy. Further
    from the optimum (gap above NEWTON_GAP) there is no polish: the result is FISTA's own."""
    x, p, y = _faces_like(400)
    kw = dict(alpha=0.01, tol=1e-6, max_iter=1100, clip=False, continuation=False)
    plain = lasso_fista(y, p, "dct", newton=False, stall_tol=1e-3, **kw)
    polished = lasso_fista(y, p, "dct", stall_tol=1e-3, **kw)
    assert (plain.image_iterations < 1000).all(), plain.image_iterations
    assert ((plain.gap > POLISH_GAP) & (plain.gap <= NEWTON_GAP)).all(), plain.gap
    assert (polished.gap <= 1e-8).all(), polished.gap
    assert (polished.objective <= plain.objective * (1 + 1e-6)).all(), (polished.objective, plain.objective)
    ref = lasso_cvxpy(y, p, "dct", alpha=0.01, clip=False)
    assert ((polished.objective - ref.objective) / ref.objective).abs().max() < 1e-6
    early = lasso_fista(y, p, "dct", newton=False, stall_tol=0.1, **kw)
    early_polish = lasso_fista(y, p, "dct", stall_tol=0.1, **kw)
    assert (early.gap > NEWTON_GAP).all(), early.gap
    assert torch.equal(early.w, early_polish.w)


def test_support_newton_never_raises_the_objective_and_solves_a_planted_support():
    x, p, y = _faces_like(150, n_img=4)
    basis = make_basis("dct", SHAPE)
    B = dense_matrix(p, basis, SHAPE)
    Bt = B.T.double()
    lam = 150 * 0.05
    g = torch.Generator().manual_seed(5)
    for trial in range(3):  # random sparse starting points with random supports
        w = torch.zeros(4, B.shape[1], dtype=torch.float64)
        for row in w:
            row[torch.randperm(B.shape[1], generator=g)[:5 + 20 * trial]] = torch.randn(5 + 20 * trial, generator=g,
                                                                                         dtype=torch.float64)
        new, tried = support_newton(w, Bt, y, lam)
        obj = lambda v: 0.5 * (y.double() - v @ Bt).pow(2).sum(1) + lam * v.abs().sum(1)
        assert tried.all()
        assert (obj(new) <= obj(w) * (1 + 1e-12)).all()
    # started anywhere on the optimum's support and signs, one call lands on the optimum exactly
    p.matrix = p.matrix.double()
    y = p(x.double(), torch.Generator().manual_seed(1))
    Bt = dense_matrix(p, basis, SHAPE).T
    best = lasso_fista(y, p, "dct", alpha=0.05, tol=1e-12, max_iter=20000, clip=False)
    assert (best.gap <= 1e-9).all()
    w_opt = best.w.reshape(4, -1)
    start = w_opt * (1 + 0.5 * torch.rand(w_opt.shape, generator=g, dtype=torch.float64))  # same signs
    new, tried = support_newton(start, Bt, y, lam)
    assert tried.all()
    assert torch.allclose(new, w_opt, atol=1e-9 * float(w_opt.abs().max()))


def test_support_newton_rows_run_as_they_would_alone_and_leave_their_input_unchanged(monkeypatch):
    # rounds after the first work on the rows still changing, passes after the first on the rows with violators
    # (or rounds left): each row's result must be what that row gets alone, in any chunking
    from invgan.lasso import _newton_rows
    x, p, y = _faces_like(150, n_img=6)
    basis = make_basis("dct", SHAPE)
    Bt = dense_matrix(p, basis, SHAPE).T.double()
    lam = 150 * 0.05
    g = torch.Generator().manual_seed(7)
    w = torch.zeros(6, Bt.shape[0], dtype=torch.float64)
    for i, row in enumerate(w):  # supports of different sizes: rows converge after different rounds
        k = 4 + 12 * i
        row[torch.randperm(Bt.shape[0], generator=g)[:k]] = torch.randn(k, generator=g, dtype=torch.float64)
    before = w.clone()
    batch, tried = support_newton(w, Bt, y, lam)
    alone = torch.cat([support_newton(w[i:i + 1], Bt, y[i:i + 1], lam)[0] for i in range(6)])
    assert tried.all()
    assert torch.allclose(batch, alone, rtol=0, atol=1e-10 * float(alone.abs().max()))
    # near the optimum (FISTA stopped early, as where the solvers call it): violators enter, rows solve exactly
    p.matrix = p.matrix.double()
    y = p(x.double(), torch.Generator().manual_seed(1))
    Bt = dense_matrix(p, basis, SHAPE).T
    w = lasso_fista(y, p, "dct", alpha=0.05, tol=1e-3, max_iter=20000, clip=False, newton=False).w.reshape(6, -1)
    before = w.clone()
    one = _newton_rows(w, Bt, y, lam, budget=1e12, passes=3)  # one chunk
    rows = _newton_rows(w, Bt, y, lam, budget=1, passes=3)  # a chunk per row
    assert torch.equal(w, before)
    for a, b in zip(one, rows):
        assert torch.allclose(a.double(), b.double(), rtol=1e-12, atol=1e-10 * float(one[0].abs().max()))

    def plain(rounds):  # the plain form: every pass on every row
        ref = w.clone()
        for k in range(3):
            ref = support_newton(ref, Bt, y, lam, rounds=rounds)[0]
            ref = torch.where(ref.abs() <= 1e-20, torch.zeros_like(ref), ref)
            g = (y.reshape(6, -1) - ref @ Bt) @ Bt.T
            enter = (ref == 0) & (g.abs() > lam)
            if k == 2 or not bool(enter.any()):
                break
            ref = torch.where(enter, 1e-30 * torch.sign(g), ref)
        return ref

    ref = plain(8)
    assert torch.allclose(one[0], ref, rtol=0, atol=1e-10 * float(ref.abs().max()))
    primal, dual = one[2], one[3]
    assert ((primal - dual) <= 1e-9 * primal).sum() >= 3, (primal - dual) / primal
    # with one round per pass rows run out of rounds while still changing: they too must run again
    import invgan.lasso as lasso_mod
    ref1 = plain(1)
    inner = lasso_mod._support_newton
    monkeypatch.setattr(lasso_mod, "_support_newton", lambda w, Bt, y, lam, rounds=8: inner(w, Bt, y, lam, rounds=1))
    short = _newton_rows(w, Bt, y, lam, passes=3)
    assert not torch.allclose(ref1, ref, rtol=0, atol=1e-10 * float(ref.abs().max()))  # the case is reached
    assert torch.allclose(short[0], ref1, rtol=0, atol=1e-10 * float(ref1.abs().max()))


def test_dense_true_needs_an_explicit_matrix():
    from invgan.physics import SuperResolution
    p = SuperResolution(4, SHAPE)
    y = p(torch.zeros(1, *SHAPE))
    with pytest.raises(InvganError, match="explicit matrix"):
        lasso_fista(y, p, "dct", dense=True)


def test_every_entry_point_names_an_unknown_solver_the_same_way():
    from invgan.cs import CSConfig
    from invgan.lasso import check_solver, lasso_solve
    from invgan.methods import Lasso, SparseGen

    x, p, y = _problem(20)
    calls = [lambda: lasso_solve(y, p, "dct", solver="lars"), lambda: check_solver("lars", p),
             lambda: Lasso("dct", solver="lars"), lambda: SparseGen(object(), lasso_solver="lars")]
    for call in calls:
        with pytest.raises(InvganError, match=r"^unknown Lasso solver 'lars': use auto, fista, homotopy, admm$"):
            call()
    with pytest.raises(InvganError, match=r"^unknown lasso_solver 'lars': use auto, fista, homotopy, admm$"):
        CSConfig(lasso_solver="lars").validate()


@pytest.mark.parametrize("name", ["dct", "wavelet"])
def test_dense_matrix_by_row_chunks_is_the_whole_transform_bit_for_bit(name, monkeypatch):
    import invgan.lasso as lasso_module

    p = GaussianCS(23, SHAPE, seed=3)  # 23 rows: chunks of 5 leave a last chunk of 3
    basis = make_basis(name, SHAPE)
    whole = basis.analysis(p.matrix.reshape(23, *SHAPE)).reshape(23, -1)
    monkeypatch.setattr(lasso_module, "DENSE_CHUNK_ROWS", 5)
    B = dense_matrix(p, basis, SHAPE)
    assert B.shape == (23, 3 * 16 * 16) and B.dtype == p.matrix.dtype and B.is_contiguous()
    assert torch.equal(B, whole)
    p.matrix = p.matrix.double()  # the basis's dtype carries through
    assert dense_matrix(p, basis, SHAPE).dtype == torch.float64


def test_every_lasso_solver_refuses_measurements_of_another_dtype_before_any_work(monkeypatch):
    """A float64 y under a float32 GaussianCS (or y of another shape) is named in one line before the solve,
    not a dtype error from the objective after it (ADMM's and the homotopy's work was done by then)."""
    import invgan.lasso as lasso_module
    from invgan.lasso import lasso_admm, lasso_homotopy, lasso_solve

    x, p, y = _problem(40)
    y = y.float()
    p.matrix = p.matrix.float()
    monkeypatch.setattr(lasso_module, "dense_matrix", lambda *a, **k: pytest.fail("the solve started"))
    for solve in (lasso_fista, lasso_homotopy, lasso_admm, lasso_solve):
        with pytest.raises(InvganError, match=r"^Lasso: y is torch.float64 but GaussianCS's tensors are "
                                              r"torch.float32: pass y.to\(torch.float32\)"):
            solve(y.double(), p, "dct")
        with pytest.raises(InvganError, match=r"^Lasso: y has shape \(2, 39\), but GaussianCS makes measurements"):
            solve(y[:2, :39], p, "dct")
