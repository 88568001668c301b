"""The eps-path (``invgan.lasso._eps_path``): from ADMM's point to the Lasso's exact optimum, in float32 and
float64, its kernels against their torch forms, and in ``lasso_admm`` (counts, not seconds): where it runs,
every image it certifies stops at EPS_PATH_AT iterations at the exact optimum; the rows it leaves above tol
get the float64 path and then go on in ADMM; a killed run resumes to the same bits."""

import pytest
import torch

import invgan.lasso as lasso_module
from invgan import _kernels
from invgan.bases import make_basis
from invgan.lasso import _eps_path, _primal_dual, _relative_gap, dense_matrix, lasso_admm, lasso_homotopy
from invgan.resume import SolveState

from conftest import die_at_save, lasso_problem

M, SEED, IMAGES, AT = 150, 3, 6, 60
FRACTION = lasso_module.EPS_PATH_MAX_FRACTION  # (as shipped)


@pytest.fixture
def on(monkeypatch):
    """The path where these small problems (m / n = 0.2) would not take it, at 60 iterations."""
    monkeypatch.setattr(lasso_module, "EPS_PATH_MAX_FRACTION", 1.0)
    monkeypatch.setattr(lasso_module, "EPS_PATH_AT", AT)


def problem():
    x, p, y = lasso_problem(M, seed=SEED, n_images=IMAGES)
    B = dense_matrix(p, make_basis("dct", 16), (3, 16, 16)).double()
    return p, y, B, B.T.contiguous(), y.reshape(IMAGES, -1).double(), M * 0.1


def admm_point(y, p, monkeypatch, iters=AT):
    monkeypatch.setattr(lasso_module, "EPS_PATH", False)
    r = lasso_admm(y, p, "dct", tol=1e-12, max_iter=iters)
    monkeypatch.setattr(lasso_module, "EPS_PATH", True)
    return r.w.reshape(IMAGES, -1).double(), r


@pytest.mark.parametrize("precision", [torch.float32, torch.float64])
def test_eps_path_ends_at_the_exact_optimum_from_admms_point(monkeypatch, precision):
    p, y, B, Bt, Y, lam = problem()
    w0, start = admm_point(y, p, monkeypatch, iters=20)
    assert start.gap.min() > 1e-4  # (a start that is not yet certified)
    exact = lasso_homotopy(y, p, "dct").w.reshape(IMAGES, -1).double()
    w, steps = _eps_path(B, Bt, Bt.to(precision).contiguous(), B.to(precision), Y, lam, w0, 250)
    assert (steps >= 0).all() and (steps < 250).all() and int(steps.max()) >= 10, steps
    primal, dual = _primal_dual(Y, w, B, Bt, lam)
    assert _relative_gap(primal, dual).max() <= 1e-10
    p_exact = _primal_dual(Y, exact, B, Bt, lam)[0]
    assert ((primal - p_exact).abs() / p_exact).max() <= 1e-12
    assert torch.equal(w != 0, exact != 0)  # the optimum's support, found from a start that missed it
    assert not torch.equal(w0 != 0, exact != 0)


def test_eps_path_kernels_give_the_torch_forms_bit_for_bit(monkeypatch):
    """The entering scan (the first smallest step, skipping the support and the coefficient that just left,
    inf where nothing is allowed) and the correlations' move, fused and in torch; and the whole path."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(6, 300, generator=g, dtype=torch.float64)
    a = torch.randn(6, 300, generator=g)
    u = torch.randn(6, 300, generator=g, dtype=torch.float64)
    h[0, 7] = h[0, 9] = 5.0
    u[0, 7] = u[0, 9] = 1.0
    a[0, 7] = a[0, 9] = 0.0  # two equal smallest steps on row 0: (4 - 5) / 1
    active = torch.rand(6, 300, generator=g) < 0.2
    active[0, 7] = active[0, 9] = False
    active[5] = True
    last = torch.tensor([-1, 3, 50, -1, 299, -1])
    gam = torch.rand(6, generator=g, dtype=torch.float64)
    got = _kernels.eps_entering(h, a, u, active, 4.0, last)
    moved = h.clone()
    _kernels.eps_move(moved, a, u, gam)
    monkeypatch.setattr(_kernels, "FUSED", False)
    want = _kernels.eps_entering(h, a, u, active, 4.0, last)
    moved_t = h.clone()
    _kernels.eps_move(moved_t, a, u, gam)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and torch.equal(moved, moved_t)
    assert int(got[1][0]) == 7 and float(got[0][0]) == -1.0 and got[0][5] == float("inf")
    for r in range(5):
        assert not active[r, got[1][r]] and int(got[1][r]) != int(last[r])
    p, y, B, Bt, Y, lam = problem()
    w0 = admm_point(y, p, monkeypatch)[0]
    plain = _eps_path(B, Bt, Bt.float().contiguous(), B.float(), Y, lam, w0, 250)
    monkeypatch.setattr(_kernels, "FUSED", True)
    fused = _eps_path(B, Bt, Bt.float().contiguous(), B.float(), Y, lam, w0, 250)
    assert torch.equal(plain[0], fused[0]) and torch.equal(plain[1], fused[1])


def test_admm_with_the_eps_path_stops_every_image_at_its_start_at_the_exact_optimum(monkeypatch, on):
    x, p, y = lasso_problem(M, seed=SEED, n_images=IMAGES)
    exact = lasso_homotopy(y, p, "dct")
    calls = []
    real = lasso_module._eps_path
    monkeypatch.setattr(lasso_module, "_eps_path",
                        lambda *a, **k: calls.append((a[2].dtype, len(a[4]))) or real(*a, **k))
    r = lasso_admm(y, p, "dct", tol=1e-5)
    assert calls == [(torch.float32, IMAGES)]
    assert (r.image_iterations == AT).all() and r.gap.max() <= 1e-10
    assert ((r.objective.double() - exact.objective.double()).abs() / exact.objective.double()).max() <= 1e-6
    monkeypatch.setattr(lasso_module, "EPS_PATH", False)  # without it: more iterations, a certificate at tol only
    plain = lasso_admm(y, p, "dct", tol=1e-5)
    assert (plain.image_iterations > AT).all() and plain.gap.max() > 1e-10
    assert not calls[1:]
    # not where ADMM runs near basis pursuit, nor where m is a larger part of n than measured
    lasso_admm(y, p, "dct", alpha=1e-5, tol=1e-3, max_iter=AT + 1)
    monkeypatch.setattr(lasso_module, "EPS_PATH", True)
    monkeypatch.setattr(lasso_module, "EPS_PATH_MAX_FRACTION", FRACTION)
    lasso_admm(y, p, "dct", tol=1e-5)
    assert not calls[1:]


def test_rows_the_float32_path_leaves_above_tol_get_the_float64_path(monkeypatch, on):
    x, p, y = lasso_problem(M, seed=SEED, n_images=IMAGES)
    calls = []
    real = lasso_module._eps_path

    def spoil_row_0(*a, **k):  # the float32 path ends row 0 off its optimum (as near a square B_J)
        calls.append((a[2].dtype, len(a[4])))
        w, steps = real(*a, **k)
        if a[2].dtype == torch.float32:
            w[0] = a[6][0]
        return w, steps

    monkeypatch.setattr(lasso_module, "_eps_path", spoil_row_0)
    r = lasso_admm(y, p, "dct", tol=1e-5)
    assert calls == [(torch.float32, IMAGES), (torch.float64, 1)]
    assert (r.image_iterations == AT).all() and r.gap.max() <= 1e-10


def test_rows_still_above_tol_go_on_in_admm_and_a_killed_run_resumes_to_the_same_bits(monkeypatch, tmp_path, on):
    """EPS_PATH_STEPS = 2: no path reaches its end; each row's point is the exact solution on its support after
    two steps, kept only where its objective is lower, and ADMM goes on to certify every image. A run killed at
    its first save (the path's check) resumes without running the path again, to the same bits."""
    monkeypatch.setattr(lasso_module, "EPS_PATH_STEPS", 2)
    x, p, y = lasso_problem(M, seed=SEED, n_images=IMAGES)
    calls = []
    real = lasso_module._eps_path
    monkeypatch.setattr(lasso_module, "_eps_path",
                        lambda *a, **k: calls.append((a[2].dtype, len(a[4]))) or real(*a, **k))
    full = lasso_admm(y, p, "dct", tol=1e-5)
    assert calls[0] == (torch.float32, IMAGES) and len(calls) == 2
    assert full.gap.max() <= 1e-5 and (full.image_iterations > AT).any()
    calls.clear()
    real_save = die_at_save(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        lasso_admm(y, p, "dct", tol=1e-5, state=SolveState(tmp_path / "s.pt", every=0))
    assert len(calls) == 2
    monkeypatch.setattr(SolveState, "save", real_save)
    res = lasso_admm(y, p, "dct", tol=1e-5, state=SolveState(tmp_path / "s.pt", every=0))
    assert len(calls) == 2  # (not again)
    assert torch.equal(res.w, full.w) and torch.equal(res.gap, full.gap)
    assert torch.equal(res.image_iterations, full.image_iterations)


def test_the_symmetric_lazy_inverse_reads_rows_for_columns_and_applies_its_pending_terms():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(3, 40, 40, generator=g, dtype=torch.float64)
    S = A @ A.transpose(1, 2) + 40 * torch.eye(40, dtype=torch.float64)
    sym, plain = (lasso_module._LazyInverse(S.clone(), 4, symmetric=s) for s in (True, False))
    for _ in range(3):
        v, c = torch.randn(3, 40, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64)
        sym.add(v, c)
        plain.add(v, c)
    x, p = torch.randn(3, 40, generator=g, dtype=torch.float64), torch.tensor([0, 5, 39])
    assert torch.allclose(sym.matvec(x), plain.matvec(x), atol=1e-12, rtol=0)
    assert torch.allclose(sym.column(p), plain.column(p), atol=1e-12, rtol=0)
    rows = sym.rows(torch.tensor([2, 0]))
    plain.flush()
    assert torch.allclose(rows, plain.G0[[2, 0]], atol=1e-12, rtol=0)
