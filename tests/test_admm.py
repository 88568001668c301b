"""The ADMM Lasso solver: certified against the exact homotopy, converging near basis pursuit where
FISTA stalls (counts, not seconds), resumable, and its errors."""

import pytest
import torch

import invgan.lasso as lasso_module
import invgan.runtime as runtime_module
from invgan import _kernels
from invgan.errors import InvganError
from invgan.lasso import lasso_admm, lasso_fista, lasso_homotopy
from invgan.methods import Lasso
from invgan.physics import GaussianCS, make_physics
from invgan.resume import SolveState

from conftest import die_at_save, lasso_problem

SHAPE = (3, 16, 16)


@pytest.mark.parametrize("basis,alpha,m,tol", [("wavelet", 1e-5, 400, 1e-4), ("wavelet", 1e-2, 150, 1e-5),
                                               ("dct", 0.1, 150, 1e-5)])
def test_admm_certificate_is_honest_and_its_point_agrees_with_the_exact_solution(basis, alpha, m, tol):
    x, p, y = lasso_problem(m, seed=2)
    exact = lasso_homotopy(y, p, basis, alpha=alpha)
    r = lasso_admm(y, p, basis, alpha=alpha, tol=tol, max_iter=20000)
    assert r.gap.max() <= tol, r.gap
    rel = (r.objective - exact.objective) / exact.objective
    # never below the optimum (beyond rounding), and within what its certificate claims
    assert rel.min() > -1e-9 and (rel <= r.gap.double() + 1e-9).all(), (rel, r.gap)
    # near basis pursuit a 1e-4 objective gap still leaves the image a little off; elsewhere close
    diff = (r.x - exact.x).flatten(1).norm(dim=1) / exact.x.flatten(1).norm(dim=1)
    assert diff.max() < (0.05 if alpha < 1e-4 else 0.01), diff


def test_admm_certifies_near_basis_pursuit_where_fista_does_not():
    """Counts: the wavelet's paper alpha near basis pursuit (m = 400 of n = 768). In the same number
    of iterations (each two products with B in both solvers) ADMM's certified gap is far below FISTA's."""
    x, p, y = lasso_problem(400, seed=2)
    a = lasso_admm(y, p, "wavelet", tol=1e-4, max_iter=20000)
    iters = int(a.image_iterations.max())
    f = lasso_fista(y, p, "wavelet", tol=1e-4, max_iter=iters)
    assert a.gap.max() <= 1e-4 and iters < 20000
    assert f.gap.max() > 10 * a.gap.max(), (f.gap, a.gap)
    assert (a.objective <= f.objective * (1 + 1e-7)).all()


def test_admm_stops_each_image_on_its_certificate_and_at_max_iter():
    x, p, y = lasso_problem(150, seed=3, n_images=3)
    y = torch.cat([y, torch.zeros_like(y[:1])])  # y = 0: w = 0 is optimal, certified at the first check
    r = lasso_admm(y, p, "wavelet", alpha=1e-2, tol=1e-6, max_iter=20000)
    assert r.gap.max() <= 1e-6
    assert int(r.image_iterations[-1]) == lasso_module.ADMM_FIRST_CHECK
    assert torch.equal(r.w[-1], torch.zeros_like(r.w[-1]))
    assert (r.image_iterations % lasso_module.ADMM_SPACING == 0).all()  # checks where a dual point is made
    short = lasso_admm(y[:3], p, "wavelet", alpha=1e-5, tol=1e-12, max_iter=150)
    assert torch.equal(short.image_iterations, torch.full((3,), 150)) and short.iterations == 150
    assert (short.gap > 1e-6).all()  # stopped early: the certificate says so


def test_admm_resumes_from_its_state(tmp_path, monkeypatch):
    x, p, y = lasso_problem(200, seed=5, n_images=3)
    ref = lasso_admm(y, p, "wavelet", tol=1e-5, max_iter=3000)  # saving does not change the run
    assert int(ref.image_iterations.max()) > 5 * lasso_module.ADMM_CHECK  # killed mid-way below
    real_save = die_at_save(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        lasso_admm(y, p, "wavelet", tol=1e-5, max_iter=3000, state=SolveState(tmp_path / "a.pt", every=0))
    monkeypatch.setattr(SolveState, "save", real_save)
    res = lasso_admm(y, p, "wavelet", tol=1e-5, max_iter=3000, state=SolveState(tmp_path / "a.pt", every=0))
    assert torch.equal(res.w, ref.w) and torch.equal(res.image_iterations, ref.image_iterations)
    assert torch.equal(res.gap, ref.gap)
    # another problem does not resume from that file
    other = lasso_admm(y * 0.5, p, "wavelet", tol=1e-5, max_iter=3000, state=SolveState(tmp_path / "a.pt", every=0))
    assert not torch.equal(other.w, res.w)


def test_admm_errors():
    x = torch.rand(2, *SHAPE) * 2 - 1
    sr = make_physics("superres", SHAPE, None, 0.0, 0, 4, "cpu")
    with pytest.raises(InvganError, match="explicit matrix"):
        lasso_admm(sr(x), sr, "dct")
    with pytest.raises(InvganError, match="admm"):
        Lasso("dct", solver="admm").check(sr(x), sr)
    _, p, y = lasso_problem(100, n_images=1)
    for kw, msg in (({"rho": 0.0}, "rho"), ({"relax": 2.0}, "relax"), ({"max_iter": 0}, "max_iter"),
                    ({"tol": float("nan")}, "tol")):
        with pytest.raises(InvganError, match=msg):
            lasso_admm(y, p, "dct", **kw)


def test_lasso_method_runs_admm_when_asked():
    x, p, y = lasso_problem(150, seed=6, n_images=2)
    rec = Lasso("wavelet", alpha=1e-2, solver="admm", tol=1e-6)(y, p)
    assert rec.details["solver"] == "admm" and rec.details["max_rel_gap"] <= 1e-6
    assert Lasso("wavelet", solver="admm").solver_for(GaussianCS(50, SHAPE, seed=0)) == "admm"


@pytest.mark.parametrize("basis,alpha,m", [("wavelet", 1e-5, 200), ("dct", 0.1, 150)])
def test_admm_woodbury_step_by_x_or_by_the_m_by_m_inverse_runs_the_same_iterations(monkeypatch, basis, alpha, m):
    """The Woodbury w-step as two products with X = L^-1 B (near basis pursuit) and as B, the (m, m)
    inverse and B^T (the DCT's alpha) are the same map: in float64 the same iterations per image and
    the same certified objectives up to rounding, whichever form alpha would pick."""
    monkeypatch.setattr(lasso_module, "ADMM_F32", False)
    x, p, y = lasso_problem(m, seed=3)
    assert not lasso_module.admm_gram_form(m, 768)
    runs, seen = {}, []
    real = torch.linalg.solve_triangular
    monkeypatch.setattr(torch.linalg, "solve_triangular",  # X = L^-1 B: a solve whose right-hand side is B (m, n)
                        lambda A, rhs, **k: (tuple(rhs.shape) == (m, 768) and seen.append(1)) or real(A, rhs, **k))
    for form, limit in (("x", float("inf")), ("inverse", 0.0)):
        monkeypatch.setattr(lasso_module, "ADMM_X_MAX_ALPHA", limit)
        seen.clear()
        runs[form] = lasso_admm(y, p, basis, alpha=alpha, tol=1e-4, max_iter=20000)
        assert bool(seen) == (form == "x")  # X is formed only where it is used
    a, b = runs["x"], runs["inverse"]
    assert a.gap.max() <= 1e-4 and b.gap.max() <= 1e-4
    assert torch.equal(a.image_iterations, b.image_iterations), (a.image_iterations, b.image_iterations)
    assert ((a.objective.double() - b.objective.double()).abs() / b.objective.double()).max() < 1e-6


@pytest.mark.parametrize("f32", [False, True])
def test_admm_gram_form_runs_the_same_iterations_as_woodbury(monkeypatch, f32):
    """The n x n inverse (formed where m is large against n) and Woodbury's m x m one are the same
    w-step: in float64 the same iterations per image, the same certified objectives up to rounding;
    in float32 their roundings differ, so an image may stop a few checks apart (near basis pursuit its
    certified gap falls in steps, with plateaus of several checks near tol)."""
    monkeypatch.setattr(lasso_module, "ADMM_F32", f32)
    x, p, y = lasso_problem(400, seed=2)
    assert lasso_module.admm_gram_form(400, 768) and not lasso_module.admm_gram_form(200, 768)
    runs = {}
    for form, work in (("gram", 0.0), ("woodbury", float("inf"))):
        monkeypatch.setattr(lasso_module, "ADMM_GRAM_WORK", work)
        assert lasso_module.admm_gram_form(400, 768) == (form == "gram")
        runs[form] = lasso_admm(y, p, "wavelet", tol=1e-4, max_iter=20000)
    g, w = runs["gram"], runs["woodbury"]
    assert g.gap.max() <= 1e-4 and w.gap.max() <= 1e-4
    apart = (g.image_iterations - w.image_iterations).abs()
    assert (apart <= (5 * lasso_module.ADMM_CHECK if f32 else 0)).all(), (g.image_iterations, w.image_iterations)
    assert ((g.objective.double() - w.objective.double()).abs() / w.objective.double()).max() < (2e-4 if f32 else 1e-6)
    assert (g.x - w.x).abs().max() < (2e-2 if f32 else 1e-3)


def _soft_dtypes(monkeypatch):
    """Record the dtype of every z-step (ADMM's soft-thresholding, with or without B z) from now on."""
    seen, real, real_sparse = [], lasso_module._soft_split, _kernels.SparseProduct.split

    def spy(v, thr):
        seen.append(v.dtype)
        return real(v, thr)

    def spy_sparse(self, v, thr):
        seen.append(v.dtype)
        return real_sparse(self, v, thr)

    monkeypatch.setattr(lasso_module, "_soft_split", spy)
    monkeypatch.setattr(_kernels.SparseProduct, "split", spy_sparse)
    return seen


@pytest.mark.parametrize("basis,alpha,m", [("wavelet", 1e-5, 400), ("dct", 0.1, 150)])
def test_admm_float32_iterations_certify_like_float64_in_as_many_iterations(monkeypatch, basis, alpha, m):
    """Counts: ADMM_F32 runs the iterations in float32 and still reaches the certified gap (a float64
    certificate), at most three checks (ADMM_CHECK iterations each) later per image than float64, at an
    objective as good up to the tolerance. Near basis pursuit the gap falls in steps with plateaus
    (wavelet, m = 400: 1.51e-4 at 3,000 iterations, 1.27e-4 at 4,000), so float32's rounding alone
    moves the check where an image crosses tol: 4,200 and 4,340 iterations for two float32 forms of
    the same iteration against float64's 4,180; a float32 run that stalls would need thousands more.
    With MKL's products (INVGAN_ONEDNN=0): oneDNN's rounding makes the wavelet run here meet a stall near
    its end and finish in float64 (4,340 and 3,220 iterations against 4,180 and 3,060), which
    ``test_admm_onednn_products_follow_the_switch_and_certify_like_mkl`` covers."""
    monkeypatch.setenv(runtime_module.ONEDNN_ENV, "0")
    x, p, y = lasso_problem(m, seed=2)
    runs = {}
    for f32 in (False, True):
        monkeypatch.setattr(lasso_module, "ADMM_F32", f32)
        seen = _soft_dtypes(monkeypatch)
        runs[f32] = lasso_admm(y, p, basis, alpha=alpha, tol=1e-4, max_iter=20000)
        assert set(seen) == {torch.float32 if f32 else torch.float64}
    lo, hi = runs[True], runs[False]
    assert lo.gap.max() <= 1e-4 and hi.gap.max() <= 1e-4
    assert (lo.image_iterations <= hi.image_iterations + 3 * lasso_module.ADMM_CHECK).all(), \
        (lo.image_iterations, hi.image_iterations)
    assert (lo.objective.double() <= hi.objective.double() * (1 + 1e-4)).all()


def _count_factors(monkeypatch, entry):
    """A list that gets ``entry(K)`` for every Cholesky factorisation ADMM makes, in order (by torch or, in place,
    by ``_cholesky_lower_``)."""
    factors, real_chol, real_lower = [], torch.linalg.cholesky, lasso_module._cholesky_lower_
    monkeypatch.setattr(torch.linalg, "cholesky", lambda A, **k: factors.append(entry(A)) or real_chol(A, **k))
    monkeypatch.setattr(lasso_module, "_cholesky_lower_",
                        lambda A, *a, **k: factors.append(entry(A)) or real_lower(A, *a, **k))
    return factors


N32 = 1 if lasso_module.ADMM_RESIDUAL_DUAL else 2  # the float32 set-up's factorisations (ADMM_RESIDUAL_DUAL: one)


def _killed_then_resumed(monkeypatch, tmp_path, y, p, kw, die_after, seen, factors):
    """``lasso_admm`` killed right after its ``die_after``-th save, then resumed from it: the resumed run's
    result, with ``seen`` and ``factors`` holding the resumed run's z-step dtypes and factorisations only."""
    real_save = die_at_save(monkeypatch, die_after)
    with pytest.raises(KeyboardInterrupt):
        lasso_admm(y, p, "dct", state=SolveState(tmp_path / "a.pt", every=0), **kw)
    monkeypatch.setattr(SolveState, "save", real_save)
    seen.clear()
    factors.clear()
    lasso_module.clear_setup_cache()  # (as a new process resumes it: no set-up kept from the killed run)
    return lasso_admm(y, p, "dct", state=SolveState(tmp_path / "a.pt", every=0), **kw)


@pytest.mark.parametrize("setup32", [False, True])
def test_admm_goes_on_in_float64_when_float32_stalls_and_resumes_across_the_switch(monkeypatch, tmp_path, setup32):
    """Once the running images' largest certified gap falls by less than 1% in ADMM_STALL checks (here
    2, which this slowly starting problem meets early) they go on in float64 to their tolerance, and
    a run killed after the switch resumes to the same end. With the float32 factorisations
    (ADMM_SETUP_F32_M) the float64 ones are made at the switch, and again on resuming after it."""
    monkeypatch.setattr(lasso_module, "ADMM_STALL", 2)
    if setup32:
        monkeypatch.setattr(lasso_module, "ADMM_SETUP_F32_M", 0)
    grams, real_gram = [], lasso_module._gram_rows
    monkeypatch.setattr(lasso_module, "_gram_rows", lambda B, *a, **k: grams.append(B.dtype) or real_gram(B, *a, **k))
    factors = _count_factors(monkeypatch, lambda A: A.dtype)  # the dtypes of the factorisations made, in order
    x, p, y = lasso_problem(150, seed=3, n_images=2)
    kw = dict(alpha=1.0, tol=1e-3, max_iter=20000, rho=lasso_module.ADMM_RHO)  # (a slow rho for this alpha)
    seen = _soft_dtypes(monkeypatch)
    saves_at, real = [], SolveState.save  # the iteration of every check (a save at each; saving changes nothing)
    monkeypatch.setattr(SolveState, "save", lambda self, key, st: saves_at.append(len(seen)) or real(self, key, st))
    ref = lasso_admm(y, p, "dct", state=SolveState(tmp_path / "ref.pt", every=0), **kw)
    assert grams == ([torch.float32, torch.float64] if setup32 else [torch.float64])  # (float64: the exact set-up's)
    # float32 factors first (one: the residual dual points need no second), float64 ones made at the switch
    # (with them only: float64 from the start)
    assert factors == ([torch.float32] * N32 + [torch.float64] * 2 if setup32 else [torch.float64] * 2)
    monkeypatch.setattr(SolveState, "save", real)
    switch = seen.index(torch.float64)
    assert switch in saves_at and switch >= 2 * lasso_module.ADMM_CHECK  # at a check, after ADMM_STALL x 100
    assert switch < len(seen) - 5 * lasso_module.ADMM_CHECK and set(seen[switch:]) == {torch.float64}
    assert ref.gap.max() <= 1e-3
    # killed at the second save after the switch
    res = _killed_then_resumed(monkeypatch, tmp_path, y, p, kw, saves_at.index(switch) + 3, seen, factors)
    assert set(seen) == {torch.float64}  # resumed in float64, with float64 factors
    assert factors[-2:] == [torch.float64] * 2
    assert torch.equal(res.w, ref.w) and torch.equal(res.image_iterations, ref.image_iterations)
    assert torch.equal(res.gap, ref.gap)


@pytest.mark.parametrize("resid", [False, True])
def test_admm_short_run_stalls_go_on_with_the_float32_factors_lifted_then_float64_ones_and_resume(monkeypatch,
                                                                                                 tmp_path, resid):
    """Where runs are short (ADMM_SHORT_M) a gap that does not halve in ADMM_STALL_SHORT iterations sends the
    float32 iterations on in float64 with the float32 factors lifted (no new factorisation); with the preimage
    dual points a second stall (ADMM_STALL checks, here 2) makes the float64 factors. A run killed between the
    two resumes lifted, to the same end. With the residual dual points (ADMM_RESIDUAL_DUAL; one float32
    factorisation, lifted alone) this problem's lifted run certifies without a second stall, and a run killed
    after the lift resumes lifted to the same end."""
    for name, value in (("ADMM_SETUP_F32_M", 0), ("ADMM_SHORT_M", 0), ("ADMM_STALL", 2),
                        ("ADMM_RESIDUAL_DUAL", resid)):
        monkeypatch.setattr(lasso_module, name, value)
    seen = _soft_dtypes(monkeypatch)
    factors = _count_factors(monkeypatch, lambda A: (A.dtype, len(seen)))  # (dtype, z-steps so far) of every one
    x, p, y = lasso_problem(150, seed=3, n_images=2)
    kw = dict(alpha=1.0, tol=1e-3, max_iter=20000, rho=lasso_module.ADMM_RHO)  # (a slow rho: it stalls)
    saves_at, real = [], SolveState.save
    monkeypatch.setattr(SolveState, "save", lambda self, key, st: saves_at.append(len(seen)) or real(self, key, st))
    ref = lasso_admm(y, p, "dct", state=SolveState(tmp_path / "ref.pt", every=0), **kw)
    monkeypatch.setattr(SolveState, "save", real)
    assert ref.gap.max() <= 1e-3
    lifted = seen.index(torch.float64)  # the first float64 z-step
    assert lifted in saves_at and lifted <= 4 * lasso_module.ADMM_STALL_SHORT and set(seen[lifted:]) == {torch.float64}
    n32, n64 = (1, 0) if resid else (2, 2)
    assert [d for d, _ in factors] == [torch.float32] * n32 + [torch.float64] * n64
    kill = next(i for i, at in enumerate(saves_at) if at > lifted) + 1  # the second save after the lift
    if not resid:
        made64 = factors[n32][1]  # the float64 factors: at the second stall, 2 x ADMM_CHECK iterations on at least
        assert made64 in saves_at and made64 >= lifted + 2 * lasso_module.ADMM_CHECK
        assert saves_at[kill] < made64
    res = _killed_then_resumed(monkeypatch, tmp_path, y, p, kw, kill + 1, seen, factors)
    assert set(seen) == {torch.float64}  # resumed in float64 ...
    assert [d for d, _ in factors] == [torch.float32] * n32 + [torch.float64] * n64  # ... lifted (to its second
    # stall, with the preimages)
    assert torch.equal(res.w, ref.w) and torch.equal(res.image_iterations, ref.image_iterations)
    assert torch.equal(res.gap, ref.gap)


def test_admm_checks_where_images_are_predicted_to_finish_stop_them_sooner(monkeypatch):
    """Counts: the check schedule (the first at ADMM_FIRST_CHECK, then where the running images'
    median is predicted to reach tol) stops every image at no more iterations than fixed checks every
    ADMM_CHECK iterations, fewer in all, at the same certified tolerance and objective."""
    x, p, y = lasso_problem(300, seed=4, n_images=6)
    new = lasso_admm(y, p, "dct", tol=1e-4, max_iter=5000)
    for name in ("ADMM_FIRST_CHECK", "ADMM_CHECK_MIN"):
        monkeypatch.setattr(lasso_module, name, lasso_module.ADMM_CHECK)
    old = lasso_admm(y, p, "dct", tol=1e-4, max_iter=5000)
    assert (old.image_iterations % lasso_module.ADMM_CHECK == 0).all()
    assert new.gap.max() <= 1e-4 and old.gap.max() <= 1e-4
    assert (new.image_iterations <= old.image_iterations).all(), (new.image_iterations, old.image_iterations)
    assert new.image_iterations.sum() < old.image_iterations.sum()
    assert ((new.objective.double() - old.objective.double()).abs() <= 1e-4 * old.objective.double()).all()


def test_admm_short_runs_check_at_any_iteration_and_stop_sooner(monkeypatch):
    """ADMM_SHORT_M: where runs are short (above ADMM_X_MAX_ALPHA at large m) a check may come at any
    iteration, with a dual point of its own, ADMM_SHORT_STEP apart at least. Counts: against the checks on
    the dual points every ADMM_SPACING, every image stops at most ADMM_SHORT_STEP iterations later (one check
    where the spaced schedule happened to certify it), at least 15% fewer in all, at the same tolerance and
    objective, and some stop between two of those points. (With the least-squares preimages as the dual points,
    ADMM_RESIDUAL_DUAL off: the residual ones lag them, in this small problem by about the spacing.)"""
    x, p, y = lasso_problem(300, seed=4, n_images=6)
    monkeypatch.setattr(lasso_module, "ADMM_SETUP_F32_M", 0)
    monkeypatch.setattr(lasso_module, "ADMM_RESIDUAL_DUAL", False)
    monkeypatch.setattr(lasso_module, "ADMM_SHORT_M", 0)
    short = lasso_admm(y, p, "dct", tol=1e-4, max_iter=5000)
    monkeypatch.setattr(lasso_module, "ADMM_SHORT_M", 10**9)
    spaced = lasso_admm(y, p, "dct", tol=1e-4, max_iter=5000)
    assert short.gap.max() <= 1e-4 and spaced.gap.max() <= 1e-4
    assert (spaced.image_iterations % lasso_module.ADMM_SPACING == 0).all()
    assert (short.image_iterations % lasso_module.ADMM_SPACING != 0).any()
    assert (short.image_iterations <= spaced.image_iterations + lasso_module.ADMM_SHORT_STEP).all(), (
        short.image_iterations, spaced.image_iterations)
    assert short.image_iterations.sum() <= 0.85 * spaced.image_iterations.sum()
    assert ((short.objective.double() - spaced.objective.double()).abs() <= 1e-4 * spaced.objective.double()).all()


def _certified_rows(monkeypatch):
    """A list that gets the number of images certified at each of ADMM's checks, in order."""
    rows, real = [], lasso_module._primal
    monkeypatch.setattr(lasso_module, "_primal", lambda Y, *a: rows.append(len(Y)) or real(Y, *a))
    return rows


def test_admm_probe_checks_certify_a_few_images_then_all_and_resume(monkeypatch, tmp_path):
    """ADMM_PROBES: a run's first checks certify only ADMM_PROBE_ROWS of its images (the same ones at each, spread
    over the batch); their rate of fall places the first full check. Counts: fewer certificates in all than with
    every check a full one, every image certified at the same tolerance and objective, at most a few iterations
    later than without probes; a run killed at a probe resumes to the same end. A batch no larger than the probe
    is checked in full. (With the least-squares preimages as the dual points, ADMM_RESIDUAL_DUAL off.)"""
    for name, value in (("ADMM_SETUP_F32_M", 0), ("ADMM_SHORT_M", 0), ("ADMM_PROBE_ROWS", 5),
                        ("ADMM_RESIDUAL_DUAL", False)):
        monkeypatch.setattr(lasso_module, name, value)
    x, p, y = lasso_problem(300, seed=4, n_images=16)
    kw = dict(tol=1e-4, max_iter=5000)
    counted = _certified_rows(monkeypatch)
    probed = lasso_admm(y, p, "dct", **kw)
    with_probes = list(counted)
    counted.clear()
    monkeypatch.setattr(lasso_module, "ADMM_PROBES", 0)
    full = lasso_admm(y, p, "dct", **kw)
    assert with_probes[:2] == [5, 5] and with_probes[2] == 16  # two probes, then all the images still running
    assert counted[:2] == [16, 16]
    assert sum(with_probes) < sum(counted)
    assert probed.gap.max() <= 1e-4 and full.gap.max() <= 1e-4
    assert ((probed.objective.double() - full.objective.double()).abs() <= 1e-4 * full.objective.double()).all()
    assert (probed.image_iterations <= full.image_iterations + 2 * lasso_module.ADMM_SHORT_STEP).all(), (
        probed.image_iterations, full.image_iterations)
    # killed right after the first probe's save, resumed: the same end
    monkeypatch.setattr(lasso_module, "ADMM_PROBES", 2)
    ref = lasso_admm(y, p, "dct", state=SolveState(tmp_path / "ref.pt", every=0), **kw)
    assert torch.equal(ref.w, probed.w)  # (saving changes nothing)
    real_save = die_at_save(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        lasso_admm(y, p, "dct", state=SolveState(tmp_path / "a.pt", every=0), **kw)
    monkeypatch.setattr(SolveState, "save", real_save)
    lasso_module.clear_setup_cache()
    res = lasso_admm(y, p, "dct", state=SolveState(tmp_path / "a.pt", every=0), **kw)
    assert torch.equal(res.w, ref.w) and torch.equal(res.image_iterations, ref.image_iterations)
    assert torch.equal(res.gap, ref.gap)
    counted.clear()  # a batch of 3: no probes
    small = lasso_admm(y[:3], p, "dct", **kw)
    assert counted[0] == 3 and small.gap.max() <= 1e-4


def test_admm_rho_grows_to_its_wide_multiple_of_lam_with_m_over_n():
    lam, (f0, f1), (f2, top) = 50.0, lasso_module.ADMM_RHO_WIDE, lasso_module.ADMM_RHO_WIDER
    c = [lasso_module.admm_rho(0.1, lam, f) / lam for f in (0.0, f0 / 2, f0, (f0 * f1) ** 0.5, f1,
                                                              (f1 * f2) ** 0.5, f2, 2 * f2)]
    lo, hi = lasso_module.ADMM_RHO_LAM, lasso_module.ADMM_RHO_LAM_WIDE
    assert c[0] == c[1] == c[2] == lo and abs(c[4] - hi) < 1e-12 and lo < c[3] < hi < c[5] < top
    assert c[6] == c[7] == top
    assert abs(c[3] - (lo + hi) / 2) < 1e-12 and abs(c[5] - (hi + top) / 2) < 1e-12  # log-linear: the geometric
    # mean is halfway
    assert lasso_module.admm_rho(1e-5, 1e-3, 0.8) == lasso_module.ADMM_RHO


def test_admm_rho_for_larger_alpha_certifies_in_far_fewer_iterations_than_the_near_bp_rho_and_fista():
    """Counts: above ADMM_MAX_ALPHA (the DCT's alpha) the default rho = ADMM_RHO_LAM x lam reaches the
    certified gap in a tenth of the iterations of the near-basis-pursuit rho and fewer than FISTA's."""
    x, p, y = lasso_problem(200, seed=2)
    lam = 200 * 0.1
    assert lasso_module.admm_rho(0.1, lam) == lasso_module.ADMM_RHO_LAM * lam
    assert lasso_module.admm_rho(1e-5, 200 * 1e-5) == lasso_module.ADMM_RHO
    rule = lasso_admm(y, p, "dct", tol=1e-5, max_iter=20000)
    slow = lasso_admm(y, p, "dct", tol=1e-5, max_iter=20000, rho=lasso_module.ADMM_RHO)
    fista = lasso_fista(y, p, "dct", tol=1e-5, newton=False)
    assert rule.gap.max() <= 1e-5 and slow.gap.max() <= 1e-5 and fista.gap.max() <= 1e-5
    assert 10 * rule.image_iterations.max() <= slow.image_iterations.min(), (rule.image_iterations, slow.image_iterations)
    assert rule.image_iterations.max() < fista.image_iterations.min(), (rule.image_iterations, fista.image_iterations)
    assert ((rule.objective.double() - slow.objective.double()).abs() <= 1e-5 * slow.objective.double()).all()


def test_admm_support_newton_steps_end_at_the_exact_solution_sooner(monkeypatch):
    """Above ADMM_MAX_ALPHA the support Newton steps at the checks give the exact solution (the
    homotopy's objective, a gap at rounding level) in fewer iterations than ADMM alone, which stops at
    its tolerance; near basis pursuit they are not tried."""
    x, p, y = lasso_problem(100, seed=2)
    exact = lasso_homotopy(y, p, "dct")
    with_newton = lasso_admm(y, p, "dct", tol=1e-5, max_iter=20000)
    monkeypatch.setattr(lasso_module, "ADMM_NEWTON", False)
    alone = lasso_admm(y, p, "dct", tol=1e-5, max_iter=20000)
    monkeypatch.setattr(lasso_module, "ADMM_NEWTON", True)
    assert with_newton.gap.max() < 1e-12 and alone.gap.max() <= 1e-5 and alone.gap.min() > 1e-9
    rel = (with_newton.objective.double() - exact.objective.double()).abs() / exact.objective.double()
    assert rel.max() < 1e-6, rel  # the float32 evaluation of the same exact point
    assert (with_newton.image_iterations < alone.image_iterations).all()
    calls = []
    real = lasso_module._newton_rows
    monkeypatch.setattr(lasso_module, "_newton_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, p_bp, y_bp = lasso_problem(400, seed=2)
    lasso_admm(y_bp, p_bp, "wavelet", tol=1e-4, max_iter=20000)
    assert not calls


def test_admm_float32_factorisations_certify_like_float64_ones_and_gram_rows_is_b_bt():
    """From ADMM_SETUP_F32_M (above ADMM_X_MAX_ALPHA) A A^T, its Cholesky factors and inverses are made in
    float32 for the float32 iterations: every image still certified at tol (float64 certificates), in
    at most one check more, at an objective as good up to tol; and ``_gram_rows`` is B B^T from half
    the blocks, exactly symmetric; unmirrored, its lower triangle is the same, and the Cholesky factor
    of it does not depend on what lies above the diagonal (the float32 set-up relies on this)."""
    B = torch.randn(300, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    K = lasso_module._gram_rows(B, block=64)
    assert torch.equal(K, K.T) and torch.allclose(K, B @ B.T, rtol=0, atol=1e-10)
    low = lasso_module._gram_rows(B, block=64, mirror=False)
    assert torch.equal(low.tril(), K.tril())
    low.masked_fill_(torch.ones_like(low, dtype=torch.bool).triu(1), float("nan"))  # whatever lies above
    for dtype in (torch.float64, torch.float32):
        assert torch.equal(torch.linalg.cholesky(low.to(dtype)), torch.linalg.cholesky(K.to(dtype)))
    x, p, y = lasso_problem(150, seed=4, n_images=4)
    runs = {}
    for setup_m in (10**9, 0):
        saved = lasso_module.ADMM_SETUP_F32_M
        lasso_module.ADMM_SETUP_F32_M = setup_m
        grams, real = [], lasso_module._gram_rows
        lasso_module._gram_rows = lambda B, *a, **k: grams.append(B.dtype) or real(B, *a, **k)
        try:
            runs[setup_m] = lasso_admm(y, p, "dct", tol=1e-5)
        finally:
            lasso_module.ADMM_SETUP_F32_M, lasso_module._gram_rows = saved, real
        assert grams == ([torch.float32] if setup_m == 0 else [torch.float64])
    lo, hi = runs[0], runs[10**9]
    assert lo.gap.max() <= 1e-5 and hi.gap.max() <= 1e-5
    assert (lo.image_iterations <= hi.image_iterations + lasso_module.ADMM_CHECK).all()
    assert (lo.objective.double() <= hi.objective.double() * (1 + 1e-5)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cholesky_in_place_is_torchs_factor_and_gram_rows_by_onednn_is_b_bt(dtype):
    """``_cholesky_lower_`` factors K in K's own memory, reading only its lower triangle (NaN above it, as
    ``_gram_rows(mirror=False)`` may leave), with the upper triangle set to 0: torch's factor up to rounding;
    a K that is not positive definite raises torch's LinAlgError. ``_gram_rows(onednn=True)`` (the float32
    set-up's A A^T where the products go to oneDNN) is B B^T's lower triangle up to float32 rounding."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(300, 420, generator=g, dtype=dtype)
    K = lasso_module._gram_rows(B, block=64, mirror=False)
    K.diagonal().add_(1.0)
    ref = torch.linalg.cholesky(K)  # (reads the lower triangle only)
    K.masked_fill_(torch.ones_like(K, dtype=torch.bool).triu(1), float("nan"))
    L = lasso_module._cholesky_lower_(K, block=50)
    assert L.data_ptr() == K.data_ptr()
    assert torch.equal(L.triu(1), torch.zeros_like(L))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(L, ref, rtol=0, atol=tol * float(ref.abs().max()))
    bad = torch.eye(5, dtype=dtype)
    bad[2, 2] = -1.0
    with pytest.raises(torch.linalg.LinAlgError):
        lasso_module._cholesky_lower_(bad)
    if dtype == torch.float32 and torch.backends.mkldnn.is_available():
        mkl = lasso_module._gram_rows(B, block=64, mirror=False)
        low = torch.ones_like(mkl, dtype=torch.bool).tril()
        for parts in (None, 1, 3, 7):  # the diagonal blocks in row slices (300 rows: a last block of 44)
            dnn = lasso_module._gram_rows(B, block=64, mirror=False, onednn=True, parts=parts)
            assert torch.allclose(dnn[low], mkl[low], rtol=0, atol=1e-5 * float(mkl[low].abs().max()))
        full = lasso_module._gram_rows(B, block=64, onednn=True)
        assert torch.equal(full, full.T)
        assert torch.allclose(full, B @ B.T, rtol=0, atol=1e-5 * float(mkl[low].abs().max()))


def test_admm_b_z_from_the_nonzeros_runs_the_same_iterations_and_resumes_exactly(monkeypatch, tmp_path):
    """ADMM_SPARSE_MAX_M: above ADMM_X_MAX_ALPHA the float32 iterations form B q = B z - B u with B z from
    z's few nonzeros (``_kernels.SparseProduct``) and B u carried along in m-space (made exactly every
    ADMM_SPACING). Counts: the kernel runs, and against the two dense products every image stops within
    one check of the same iteration (float32 rounding), certified, at an objective within the tolerance;
    a killed run resumes to the same bits."""
    calls = []
    real = _kernels._collect_product_kernel

    def counting(*a):
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(_kernels, "_collect_product_kernel", counting)
    monkeypatch.setattr(_kernels.SparseProduct, "DENSE_FROM", 1.0)  # the lists' product at any density
    x, p, y = lasso_problem(60, seed=4, n_images=4)
    runs = {}
    for sparse in (False, True):
        monkeypatch.setattr(lasso_module, "ADMM_SPARSE_MAX_M", 1500 if sparse else 0)
        calls.clear()
        runs[sparse] = lasso_admm(y, p, "dct", alpha=0.1, tol=1e-5, max_iter=20000)
        assert (len(calls) > 0) == sparse
    s, d = runs[True], runs[False]
    assert s.gap.max() <= 1e-5 and d.gap.max() <= 1e-5
    assert int(s.image_iterations.max()) > 4 * lasso_module.ADMM_SPACING  # a run to kill below
    assert ((s.image_iterations - d.image_iterations).abs() <= lasso_module.ADMM_CHECK).all(), \
        (s.image_iterations, d.image_iterations)
    assert ((s.objective.double() - d.objective.double()).abs() / d.objective.double()).max() < 1e-5
    real_save = die_at_save(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        lasso_admm(y, p, "dct", alpha=0.1, tol=1e-5, max_iter=20000, state=SolveState(tmp_path / "s.pt", every=0))
    monkeypatch.setattr(SolveState, "save", real_save)
    res = lasso_admm(y, p, "dct", alpha=0.1, tol=1e-5, max_iter=20000, state=SolveState(tmp_path / "s.pt", every=0))
    assert torch.equal(res.w, s.w) and torch.equal(res.image_iterations, s.image_iterations)
    assert torch.equal(res.gap, s.gap)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_product_split_is_the_soft_split_and_its_product_is_z_b_transposed(monkeypatch, dtype):
    """``_kernels.SparseProduct.split``: z and u bit for bit as ``_soft_split``, and z B^T as the dense
    product up to summation order, by the kernels (an odd m: padded column blocks), by the dense
    fallback past DENSE_FROM, and by the torch forms (FUSED off); ``product`` is split's product."""
    g = torch.Generator().manual_seed(0)
    Bt = torch.randn(500, 37, generator=g, dtype=dtype)
    v = torch.randn(9, 500, generator=g, dtype=dtype) * 2
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-11)
    for fused, dense_from in ((True, 1.0), (True, -1.0), (False, 1.0)):
        monkeypatch.setattr(_kernels, "FUSED", fused)
        monkeypatch.setattr(_kernels.SparseProduct, "DENSE_FROM", dense_from)
        sp = _kernels.SparseProduct(Bt)
        assert (sp.bth is not None) == fused
        for thr in (1.5, 0.0):
            z, u, P = sp.split(v.clone(), thr)
            z0, u0 = lasso_module._soft_split(v.clone(), thr)
            assert torch.equal(z, z0) and torch.equal(u, u0)
            assert 0 < int((z != 0).sum()) < z.numel() or thr == 0.0
            torch.testing.assert_close(P, z0 @ Bt, **tol)
        assert torch.equal(sp.product(z0), sp.split(z0.clone(), 0.0)[2])


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.parametrize("basis,alpha,m,sparse", [("wavelet", 1e-5, 400, False), ("dct", 0.1, 150, False),
                                                  ("dct", 0.1, 150, True)])
def test_admm_onednn_products_follow_the_switch_and_certify_like_mkl(monkeypatch, basis, alpha, m, sparse):
    """INVGAN_ONEDNN=1 runs the float32 iteration products (the n x n form near basis pursuit here, B^T, M, B above;
    with and without B z from the nonzeros) by oneDNN (``invgan.runtime.OneDNNRight``): they run, every image certifies,
    each stops within three checks of the default path's iteration (rounding moves where a gap that falls
    in steps crosses tol near basis pursuit, as in the float32 test above: 3,220 against 3,060 here), and
    the objectives agree to the tolerance. The dual points' products with B^T (and sparse-bq's exact B u) go
    there too, with B itself as oneDNN's form of B^T (where the iterations use neither B^T nor B: the n x n form,
    and B z from the nonzeros). With INVGAN_ONEDNN=0 none of them run."""
    calls, weights = [], []
    real = runtime_module.OneDNNRight.__rmatmul__

    def counting(self, c):
        calls.append(c.dtype)
        weights.append(tuple(self.Wt.shape))
        return real(self, c)

    monkeypatch.setattr(runtime_module.OneDNNRight, "__rmatmul__", counting)
    monkeypatch.setattr(lasso_module, "ADMM_SPARSE_MAX_M", 1500 if sparse else 0)
    x, p, y = lasso_problem(m, seed=2)
    runs = {}
    for on in (False, True):
        monkeypatch.setenv(runtime_module.ONEDNN_ENV, "1" if on else "0")
        calls.clear()
        weights.clear()
        runs[on] = lasso_admm(y, p, basis, alpha=alpha, tol=1e-4, max_iter=20000)
        assert (len(calls) > 0) == on and set(calls) <= {torch.float32}
        if on and (basis == "wavelet" or sparse):
            assert (m, SHAPE[0] * SHAPE[1] * SHAPE[2]) in weights  # (B, as (rho u) B^T's weight)
    a, b = runs[True], runs[False]
    assert a.gap.max() <= 1e-4 and b.gap.max() <= 1e-4
    assert ((a.image_iterations - b.image_iterations).abs() <= 3 * lasso_module.ADMM_CHECK).all(), \
        (a.image_iterations, b.image_iterations)
    assert ((a.objective.double() - b.objective.double()).abs() / b.objective.double()).max() < 1e-4
    assert not runtime_module.onednn_products(torch.device("cuda"))  # a CPU library: never for a GPU solve


def test_admm_keeps_its_float32_setup_for_the_next_solve_of_the_same_problem_only(monkeypatch):
    """``_SetupCache``: a second solve on the same operator and basis makes no A Psi and no factorisation
    and gives the same bits as the first; another basis, rho, an operator changed in place or a new one,
    and ``clear_setup_cache`` make them again; the slot empties when the operator is freed."""
    import gc

    monkeypatch.setattr(lasso_module, "ADMM_SETUP_F32_M", 0)
    factors = _count_factors(monkeypatch, lambda A: A.dtype)
    made, real_dense = [], lasso_module.dense_matrix
    monkeypatch.setattr(lasso_module, "dense_matrix", lambda *a: made.append(a[1].name) or real_dense(*a))
    x, p, y = lasso_problem(150, seed=3, n_images=2)
    kw = dict(alpha=0.1, tol=1e-4, max_iter=3000)
    first = lasso_admm(y, p, "dct", **kw)
    assert factors == [torch.float32] * N32 and made == ["dct"]
    again = lasso_admm(y, p, "dct", **kw)
    assert factors == [torch.float32] * N32 and made == ["dct"]
    assert torch.equal(again.w, first.w) and torch.equal(again.gap, first.gap)
    fine = dict(kw, tol=lasso_module.ADMM_RESIDUAL_DUAL_TOL / 10)  # (the preimages' P as well, below this tol)
    if lasso_module.ADMM_RESIDUAL_DUAL:  # M kept: only P made, once, and kept beside it; the same bits as made anew
        kept_fine = lasso_admm(y, p, "dct", **fine)
        assert factors == [torch.float32] * 2 and made == ["dct"]
        assert torch.equal(lasso_admm(y, p, "dct", **kw).w, first.w)  # (P kept but unused there)
        assert torch.equal(lasso_admm(y, p, "dct", **fine).w, kept_fine.w) and factors == [torch.float32] * 2
        lasso_module.clear_setup_cache()
        assert torch.equal(lasso_admm(y, p, "dct", **fine).w, kept_fine.w)
        lasso_module.clear_setup_cache()
        assert torch.equal(lasso_admm(y, p, "dct", **kw).w, first.w)
        del factors[:], made[1:]
        factors.append(torch.float32)
    lasso_admm(y, p, "dct", rho=0.5, **kw)  # another rho: new factors, the same A Psi
    assert factors == [torch.float32] * 2 * N32 and made == ["dct"]
    lasso_admm(y, p, "wavelet", **kw)  # another basis
    assert factors == [torch.float32] * 3 * N32 and made == ["dct", "wavelet"]
    lasso_module.clear_setup_cache()
    assert torch.equal(lasso_admm(y, p, "dct", **kw).w, first.w)
    assert factors == [torch.float32] * 4 * N32 and made == ["dct", "wavelet", "dct"]
    p.matrix.mul_(2.0)  # changed in place: made again, and solved as the changed problem
    changed = lasso_admm(y, p, "dct", **kw)
    assert factors == [torch.float32] * 5 * N32 and not torch.equal(changed.w, first.w)
    assert lasso_module._SetupCache.slot
    del p, changed
    gc.collect()
    assert not lasso_module._SetupCache.slot


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_cholesky_inverse_blocked_by_onednn_solves_like_lapack(rows):
    """``_CholeskyInverse(L, onednn=True)``: the two float32 solves blocked (the last block partial here),
    each block's update by oneDNN: (L L^T)^-1 applied to rows as float64's solves give it, to float32
    rounding, and as the unblocked LAPACK solves do; its panels made once."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    m = 2 * lasso_module.CHOLESKY_SOLVE_BLOCK + 100
    g = torch.Generator().manual_seed(rows)
    A = torch.randn(m, m + 50, generator=g, dtype=torch.float64)
    L64 = torch.linalg.cholesky(A @ A.T + 10.0 * torch.eye(m, dtype=torch.float64))
    c = torch.randn(rows, m, generator=g, dtype=torch.float64)
    exact = torch.cholesky_solve(c.T, L64).T
    blocked = lasso_module._CholeskyInverse(L64.float(), onednn=True)
    plain = lasso_module._CholeskyInverse(L64.float())
    got, ref = (c.float() @ blocked).double(), (c.float() @ plain).double()
    scale = exact.norm()
    assert (got - exact).norm() <= 1e-5 * scale and (ref - exact).norm() <= 1e-5 * scale
    assert not torch.equal(got, ref)  # (the blocked form ran)
    panels = blocked._panels
    assert torch.equal((c.float() @ blocked).double(), got) and blocked._panels is panels
    assert not lasso_module._CholeskyInverse(L64, onednn=True).onednn  # float64: LAPACK's solves


@pytest.mark.parametrize("short", [False, True])
def test_admm_residual_dual_points_need_one_factorisation_and_certify_validly(monkeypatch, short):
    """ADMM_RESIDUAL_DUAL: with the float32 set-up the dual points are the residuals at ADMM's w, from the
    w-step's own product (no factorisation of B B^T + ridge I, no product or solves per point). Counts:
    one factorisation instead of two; every image certified at tol; each certificate valid against the
    exact optimum (the homotopy's: the true relative excess at most the certified gap); the objectives
    within tol of the run with the least-squares preimages, in at most a check's worth of iterations more
    (the residuals lag the preimages). Where runs are short (ADMM_SHORT_M) and with the ADMM_SPACING
    schedule."""
    monkeypatch.setattr(lasso_module, "ADMM_SETUP_F32_M", 0)
    if short:
        monkeypatch.setattr(lasso_module, "ADMM_SHORT_M", 0)
    x, p, y = lasso_problem(300, seed=4, n_images=6)
    exact = lasso_homotopy(y, p, "dct").objective.double()
    runs, counts = {}, {}
    for resid in (True, False):
        monkeypatch.setattr(lasso_module, "ADMM_RESIDUAL_DUAL", resid)
        lasso_module.clear_setup_cache()
        with monkeypatch.context() as mp:
            factors = _count_factors(mp, lambda A: A.dtype)
            runs[resid] = lasso_admm(y, p, "dct", tol=1e-4, max_iter=5000)
            counts[resid] = list(factors)
    assert counts[True] == [torch.float32] and counts[False] == [torch.float32] * 2
    a, b = runs[True], runs[False]
    assert a.gap.max() <= 1e-4 and b.gap.max() <= 1e-4
    for r in (a, b):
        excess = (r.objective.double() - exact) / r.objective.double()
        assert (excess <= r.gap.double() + 1e-6).all(), (excess, r.gap)  # (+ the objective's float32 rounding)
    assert ((a.objective.double() - b.objective.double()).abs() <= 1e-4 * b.objective.double()).all()
    slack = 4 * lasso_module.ADMM_SHORT_STEP if short else 2 * lasso_module.ADMM_SPACING
    assert (a.image_iterations <= b.image_iterations + slack).all(), (a.image_iterations, b.image_iterations)
    monkeypatch.setattr(lasso_module, "ADMM_RESIDUAL_DUAL", True)
    lasso_module.clear_setup_cache()
    with monkeypatch.context() as mp:  # below ADMM_RESIDUAL_DUAL_TOL: the preimages (the residuals' float32 floor)
        factors = _count_factors(mp, lambda A: A.dtype)
        fine = lasso_admm(y, p, "dct", tol=lasso_module.ADMM_RESIDUAL_DUAL_TOL / 10, max_iter=5000)
    assert factors == [torch.float32] * 2 and fine.gap.max() <= lasso_module.ADMM_RESIDUAL_DUAL_TOL / 10
