"""The homotopy (LARS-Lasso) solver: exact against cvxpy, far fewer steps than FISTA's iterations,
honest certificates, resumable, and chosen by ``Lasso(solver="auto")`` where it applies."""

import pytest
import torch

import invgan.lasso as lasso_module
from invgan.errors import InvganError
from invgan.lasso import homotopy_applies, lasso_cvxpy, lasso_fista, lasso_homotopy
from invgan.methods import Lasso
from invgan.physics import GaussianCS, make_physics
from invgan.resume import SolveState

from conftest import die_at_save, lasso_problem

SHAPE = (3, 16, 16)


@pytest.mark.parametrize("basis,alpha", [("dct", 0.1), ("dct", 1e-3), ("wavelet", 1e-5), ("wavelet", 1e-2)])
def test_homotopy_is_exact_and_agrees_with_cvxpy(basis, alpha):
    x, p, y = lasso_problem(150)
    r = lasso_homotopy(y, p, basis, alpha=alpha)
    ref = lasso_cvxpy(y, p, basis, alpha=alpha)
    assert r.gap.max() < 1e-8, r.gap
    rel = (r.objective - ref.objective) / ref.objective
    assert rel.max() < 1e-6 and rel.min() > -1e-4, rel  # never worse than cvxpy's; cvxpy is not exact
    assert (r.w.flatten(1) != 0).sum(1).max() <= p.m  # at most m coefficients


def test_homotopy_takes_far_fewer_steps_than_fista_iterations():
    """Counts, not seconds: the homotopy's steps (one pair of products with B each) against the
    FISTA iterations (one pair each) needed for the same certified gap, near basis pursuit."""
    x, p, y = lasso_problem(150, seed=2)
    h = lasso_homotopy(y, p, "wavelet")
    f = lasso_fista(y, p, "wavelet", tol=1e-6, max_iter=20000)
    assert h.gap.max() < 1e-8
    assert (f.gap > 1e-6).any() or f.image_iterations.min() > 5 * h.image_iterations.max(), (
        f.image_iterations, h.image_iterations)
    assert (f.objective - h.objective).min() > -1e-7 * h.objective.max()  # FISTA never below the exact optimum
    # coefficients also leave the support on the way (the path is not monotone): steps > final support
    assert (h.image_iterations > (h.w.flatten(1) != 0).sum(1)).any()


def test_homotopy_float32_problem_and_trivial_rows():
    x, p, y = lasso_problem(120, seed=3, dtype=torch.float32)
    y = torch.cat([y, torch.zeros_like(y[:1]), 1e-9 * y[:1]])  # y = 0, and lam >= lam_max
    r = lasso_homotopy(y, p, "dct")
    assert r.x.dtype == torch.float32 and r.w.dtype == torch.float32
    assert r.gap[:-2].max() < 1e-6  # the float32 rounding of w bounds the certificate
    assert torch.equal(r.w[-2:], torch.zeros_like(r.w[-2:])) and int(r.image_iterations[-2:].max()) == 0
    ref = lasso_fista(y[:-2], p, "dct", tol=1e-7, max_iter=20000)
    assert ((r.objective[:-2] - ref.objective) / ref.objective).max() < 1e-5


def test_homotopy_chunks_and_max_steps(monkeypatch):
    x, p, y = lasso_problem(100, seed=4, n_images=4)
    whole = lasso_homotopy(y, p, "dct")
    monkeypatch.setattr(lasso_module, "HOMOTOPY_BYTES", 8 * 100 * 100)  # one image per chunk
    chunked = lasso_homotopy(y, p, "dct")
    assert torch.allclose(whole.w, chunked.w, atol=1e-9) and torch.equal(whole.image_iterations,
                                                                         chunked.image_iterations)
    short = lasso_homotopy(y, p, "dct", max_steps=10)
    assert int(short.image_iterations.max()) == 10
    assert (short.gap > 1e-3).all()  # stopped early: the certificate says so
    assert (short.objective > whole.objective).all()
    with pytest.raises(InvganError, match="max_steps"):
        lasso_homotopy(y, p, "dct", max_steps=0)


def test_homotopy_resumes_step_for_step(tmp_path, monkeypatch):
    x, p, y = lasso_problem(150, seed=5, n_images=4)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_REFRESH", 20)
    ref = lasso_homotopy(y, p, "wavelet")
    real_save = die_at_save(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        lasso_homotopy(y, p, "wavelet", state=SolveState(tmp_path / "h.pt", every=0))
    monkeypatch.setattr(SolveState, "save", real_save)
    res = lasso_homotopy(y, p, "wavelet", state=SolveState(tmp_path / "h.pt", every=0))
    assert torch.equal(res.w, ref.w) and torch.equal(res.image_iterations, ref.image_iterations)
    # a changed problem does not resume from the old file
    other = lasso_homotopy(y * 0.5, p, "wavelet", state=SolveState(tmp_path / "h.pt", every=0))
    assert torch.allclose(other.w, lasso_homotopy(y * 0.5, p, "wavelet").w, atol=1e-12)


@pytest.mark.parametrize("basis,alpha", [("dct", 0.1), ("wavelet", 1e-2)])
def test_float32_products_end_at_the_float64_paths_solution(monkeypatch, basis, alpha):
    """A step's two products with B run in float32 (HOMOTOPY_F32, the default, for alpha above
    ADMM_MAX_ALPHA): the solution is the float64 path's; an image whose certificate misses
    HOMOTOPY_RECHECK is solved again with float64 products (forced here for every image), which
    gives the float64 path's result bit for bit. Near basis pursuit float64 runs throughout."""
    x, p, y = lasso_problem(130, seed=8, n_images=4)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_F32", False)
    ref = lasso_homotopy(y, p, basis, alpha=alpha)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_F32", True)
    calls = []
    real_chunk = lasso_module._homotopy_chunk

    def spy(*a, **k):
        calls.append(a[-1] is None)  # products: None = float64
        return real_chunk(*a, **k)

    monkeypatch.setattr(lasso_module, "_homotopy_chunk", spy)
    fast = lasso_homotopy(y, p, basis, alpha=alpha)
    assert calls == [False]  # one float32 pass, nothing to redo
    assert fast.gap.max() < 1e-8
    assert ((fast.objective - ref.objective).abs() / ref.objective).max() < 1e-12
    calls.clear()
    monkeypatch.setattr(lasso_module, "HOMOTOPY_RECHECK", -1.0)  # every image "missed" it
    redo = lasso_homotopy(y, p, basis, alpha=alpha)
    assert calls == [False, True]
    assert torch.equal(redo.w, ref.w) and torch.equal(redo.image_iterations, ref.image_iterations)
    calls.clear()
    lasso_homotopy(y, p, "wavelet", alpha=lasso_module.ADMM_MAX_ALPHA)  # near basis pursuit: float64 only
    assert calls == [True]


@pytest.mark.parametrize("where", ["first pass", "float64 re-run"])
def test_homotopy_resumes_chunk_by_chunk(tmp_path, monkeypatch, where):
    """Killed in its second chunk (one image per chunk; float32 products), or in the float64 re-run
    (forced for every image): the resumed run keeps the finished chunks and gives the uninterrupted
    run's result."""
    x, p, y = lasso_problem(120, seed=9, n_images=3)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_REFRESH", 20)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_BYTES", 8 * 120 * 120)  # one image per chunk
    if where != "first pass":
        monkeypatch.setattr(lasso_module, "HOMOTOPY_RECHECK", -1.0)
    chunks = []  # the chunks each save holds
    real_save = SolveState.save
    monkeypatch.setattr(SolveState, "save", lambda self, k, s: (chunks.append(len(s["chunks"])), real_save(self, k, s)))
    ref = lasso_homotopy(y, p, "dct", alpha=1e-2, state=SolveState(tmp_path / "ref.pt", every=0))
    assert chunks == sorted(chunks) and chunks[-1] == (6 if where != "first pass" else 3), chunks
    monkeypatch.setattr(SolveState, "save", real_save)
    die_at_save(monkeypatch, chunks.index(2) + 2 if where == "first pass" else len(chunks) - 2)
    with pytest.raises(KeyboardInterrupt):
        lasso_homotopy(y, p, "dct", alpha=1e-2, state=SolveState(tmp_path / "h.pt", every=0))
    monkeypatch.setattr(SolveState, "save", real_save)
    res = lasso_homotopy(y, p, "dct", alpha=1e-2, state=SolveState(tmp_path / "h.pt", every=0))
    assert torch.equal(res.w, ref.w) and torch.equal(res.image_iterations, ref.image_iterations)


def test_homotopy_needs_an_explicit_matrix():
    x = torch.rand(2, *SHAPE) * 2 - 1
    p = make_physics("superres", SHAPE, None, 0.0, 0, 4, "cpu")
    y = p(x)
    with pytest.raises(InvganError, match="explicit matrix"):
        lasso_homotopy(y, p, "dct")
    assert not homotopy_applies(p)
    m = Lasso("dct", solver="homotopy")
    with pytest.raises(InvganError, match="homotopy"):
        m.check(y, p)
    assert Lasso("dct").solver_for(p) == "fista"
    with pytest.raises(InvganError, match="solver"):
        Lasso("dct", solver="lars")


def test_auto_takes_the_homotopy_up_to_its_m_and_admm_or_fista_above(monkeypatch):
    small = GaussianCS(200, SHAPE, noise_std=0.0, seed=0)
    mid = GaussianCS(lasso_module.ADMM_MIN_M, (3, 32, 32), noise_std=0.0, seed=0)
    big = GaussianCS(lasso_module.HOMOTOPY_MAX_M + 1, (3, 32, 32), noise_std=0.0, seed=0)
    huge = GaussianCS(2500, (3, 32, 32), noise_std=0.0, seed=0)  # m large against n = 3072
    assert not lasso_module.admm_gram_form(big.m, 3072) and lasso_module.admm_gram_form(huge.m, 3072)
    # near basis pursuit (the wavelet's alpha 1e-5): the exact path up to HOMOTOPY_MAX_M, ADMM above
    assert Lasso("wavelet").solver_for(small) == "homotopy" and Lasso("wavelet").solver_for(mid) == "homotopy"
    assert Lasso("wavelet").solver_for(big) == "admm" and Lasso("wavelet").solver_for(huge) == "admm"
    # larger alpha (the DCT's 0.1): the path below ADMM_MIN_M, ADMM from it (by Woodbury also where m is large)
    assert Lasso("dct").solver_for(small) == "homotopy"
    assert Lasso("dct").solver_for(mid) == "admm" and Lasso("dct").solver_for(big) == "admm"
    assert Lasso("dct").solver_for(huge) == "admm" and Lasso("dct").solver_for(huge, batch=64) == "admm"
    # ... but there its setup pays off only over a batch
    assert Lasso("dct").solver_for(huge, batch=lasso_module.ADMM_WIDE_MIN_BATCH - 1) == "fista"
    assert Lasso("dct").solver_for(mid, batch=1) == "admm"  # (m small against n: ADMM for any batch)
    assert Lasso("dct").solver_for(GaussianCS(768, SHAPE, noise_std=0.0, seed=0)) == "fista"  # m = n = 768
    assert Lasso("wavelet", alpha=2 * lasso_module.ADMM_MAX_ALPHA).solver_for(big) == "admm"
    # no alpha given (Sparse-Gen's per-image weights): the path up to HOMOTOPY_MAX_M, FISTA above
    assert lasso_module.choose_solver("auto", mid) == "homotopy" and lasso_module.choose_solver("auto", big) == "fista"
    sr = make_physics("superres", (3, 32, 32), None, 0.0, 0, 4, "cpu")
    assert Lasso("wavelet").solver_for(sr) == "fista"  # no explicit matrix: FISTA whatever alpha
    assert Lasso("dct").solver_for(sr) == "fista"
    assert Lasso("wavelet", solver="homotopy").solver_for(big) == "homotopy"
    assert Lasso("wavelet", solver="fista").solver_for(small) == "fista"
    saved = lasso_module.HOMOTOPY_MAX_M, lasso_module.ADMM_MIN_M
    try:  # the limits are read when the choice is made
        lasso_module.HOMOTOPY_MAX_M = 100
        assert Lasso("wavelet").solver_for(small) == "admm" and Lasso("dct").solver_for(small) == "fista"
        lasso_module.ADMM_MIN_M = 150
        assert Lasso("dct").solver_for(small) == "admm"
    finally:
        lasso_module.HOMOTOPY_MAX_M, lasso_module.ADMM_MIN_M = saved
    x, p, y = lasso_problem(120, seed=6, n_images=2)
    rec = Lasso("dct")(y, p)
    assert rec.details["solver"] == "homotopy" and rec.details["max_rel_gap"] < 1e-8
    # lasso_solve with no alpha chooses at the alpha it solves (the paper's), as Lasso(basis) does
    for basis in ("dct", "wavelet"):
        for phys in (small, mid, big):
            assert lasso_module.choose_solver("auto", phys, lasso_module.PAPER_ALPHA[basis]) \
                == Lasso(basis).solver_for(phys)
    seen = []
    real = lasso_module.lasso_admm
    monkeypatch.setattr(lasso_module, "lasso_admm", lambda *a, **k: seen.append(k) or real(*a, **k))
    ym = mid(torch.rand(1, 3, 32, 32) * 2 - 1, torch.Generator().manual_seed(0))
    res, solver = lasso_module.lasso_solve(ym, mid, "dct", tol=1e-4, max_iter=200)
    assert solver == Lasso("dct").solver_for(mid) == "admm" and len(seen) == 1


def test_lasso_solver_setting_is_checked_before_any_work(tmp_path):
    import subprocess
    import sys

    from invgan.cs import CSConfig

    with pytest.raises(InvganError, match="lasso_solver"):
        CSConfig(lasso_solver="lars").validate()
    CSConfig(lasso_solver="homotopy").validate()
    p = subprocess.run([sys.executable, "-m", "invgan", "cs", "--lasso-solver", "lars", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "lasso-solver" in p.stderr and not (tmp_path / "o").exists()


def test_homotopy_without_a_formed_gram_gives_the_same_path(monkeypatch):
    """B^T B formed (above HOMOTOPY_GRAM_MIN_M, if it fits in GRAM_BYTES) or its entries from B's
    gathered columns (small m, as here by default; or large images): the same path."""
    formed = []
    real_init = lasso_module._Gram.__init__

    def spy(self, *a):
        real_init(self, *a)
        formed.append(self.G is not None)

    monkeypatch.setattr(lasso_module._Gram, "__init__", spy)
    x, p, y = lasso_problem(120, seed=7, n_images=2)
    assert 120 <= lasso_module.HOMOTOPY_GRAM_MIN_M
    runs = [lasso_homotopy(y, p, "wavelet")]  # m = 120: entries from B
    monkeypatch.setattr(lasso_module, "HOMOTOPY_GRAM_MIN_M", 0)
    runs.append(lasso_homotopy(y, p, "wavelet"))  # formed
    monkeypatch.setattr(lasso_module, "GRAM_BYTES", 0)  # large images: from B whatever m
    runs.append(lasso_homotopy(y, p, "wavelet"))
    assert formed == [False, True, False]
    ref = runs[1]
    for res in (runs[0], runs[2]):
        assert torch.equal(res.image_iterations, ref.image_iterations)
        assert torch.allclose(res.w, ref.w, atol=1e-10, rtol=0) and res.gap.max() < 1e-8


@pytest.mark.parametrize("basis", ["dct", "wavelet"])
def test_homotopy_held_rows_gathered_rows_and_full_product_give_the_same_path(monkeypatch, basis):
    """B_J d_J from the support slots' rows of B^T held across steps (HOMOTOPY_ROWS_BYTES; always
    without a formed Gram), gathered per step (few rows) or as one product with all of B^T."""
    x, p, y = lasso_problem(130, seed=5, n_images=4)
    real_bmm, real_update = torch.bmm, lasso_module._rank_one_update
    monkeypatch.setattr(lasso_module, "HOMOTOPY_GRAM_MIN_M", 0)  # a formed Gram: the three forms can be chosen
    # (the inverse's products as bmm(G0, x): the symmetric form's bmm(x^T, G0) has the rows' shapes where K = m)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_SYMMETRIC", False)
    runs, seen = [], []
    for rows_bytes, gather in ((0, 0.0), (0, 1e9), (1e9, 0.0)):  # full product, gathered, held
        monkeypatch.setattr(lasso_module, "HOMOTOPY_ROWS_BYTES", rows_bytes)
        monkeypatch.setattr(lasso_module, "HOMOTOPY_GATHER", gather)
        rows_bmm, held = [], []  # (b, 1, K) @ (b, K, m) products: B_J d_J from rows; steps given the held rows
        monkeypatch.setattr(torch, "bmm", lambda a, b: rows_bmm.append(b.shape[-1] == 130) or real_bmm(a, b))
        monkeypatch.setattr(lasso_module, "_rank_one_update",
                            lambda *a, **k: held.append(a[-1] is not None) or real_update(*a, **k))
        runs.append(lasso_homotopy(y, p, basis))
        monkeypatch.setattr(torch, "bmm", real_bmm)
        seen.append((any(rows_bmm), any(held), all(held)))
    assert seen == [(False, False, False), (True, False, False), (True, True, True)]
    ref = runs[0]
    for res in runs[1:]:
        assert torch.equal(res.image_iterations, ref.image_iterations)
        assert torch.allclose(res.w, ref.w, atol=1e-10, rtol=0) and res.gap.max() < 1e-8


@pytest.mark.parametrize("basis", ["dct", "wavelet"])
def test_homotopy_symmetric_inverse_products_give_the_same_path(monkeypatch, basis):
    """HOMOTOPY_SYMMETRIC: the inverse's products as a row vector times it and its columns read as rows (its
    rank-one terms keep it symmetric up to rounding): the same steps, w to rounding, every image certified."""
    x, p, y = lasso_problem(130, seed=5, n_images=4)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_SYMMETRIC", False)
    ref = lasso_homotopy(y, p, basis)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_SYMMETRIC", True)
    sym = lasso_homotopy(y, p, basis)
    assert torch.equal(sym.image_iterations, ref.image_iterations)
    assert torch.allclose(sym.w, ref.w, atol=1e-10, rtol=0) and sym.gap.max() < 1e-8


@pytest.mark.parametrize("basis", ["dct", "wavelet"])
def test_homotopy_pending_inverse_updates_give_the_same_path(monkeypatch, basis):
    """Rank-one inverse updates applied at once (1) or gathered and applied together (7: flushes
    fall between re-factorisations, around slot growth and around rows that finish)."""
    x, p, y = lasso_problem(130, seed=5, n_images=4)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_LAZY", 1)
    ref = lasso_homotopy(y, p, basis)
    monkeypatch.setattr(lasso_module, "HOMOTOPY_LAZY", 7)
    res = lasso_homotopy(y, p, basis)
    assert torch.equal(res.image_iterations, ref.image_iterations)
    assert torch.allclose(res.w, ref.w, atol=1e-10, rtol=0) and res.gap.max() < 1e-8


def test_lazy_inverse_equals_the_explicit_sum_of_its_updates():
    """Gi0 + sum coef v v^T, with rows and columns zeroed, slots grown and rows dropped, against
    the same operations on an explicit matrix."""
    g = torch.Generator().manual_seed(0)
    b, K = 3, 5
    M = torch.randn(b, K, K, generator=g, dtype=torch.float64)
    M = M @ M.transpose(1, 2)
    lazy = lasso_module._LazyInverse(M.clone(), rank=3)
    for step in range(8):
        v = torch.randn(b, lazy.G0.shape[1], generator=g, dtype=torch.float64)
        c = torch.randn(b, generator=g, dtype=torch.float64)
        M = M + c[:, None, None] * v[:, :, None] * v[:, None, :]
        lazy.add(v, c)
        x = torch.randn(b, M.shape[1], generator=g, dtype=torch.float64)
        assert torch.allclose(lazy.matvec(x), (M @ x[..., None]).squeeze(-1), atol=1e-10)
        p = torch.tensor([step % M.shape[1], 0, 1])
        assert torch.allclose(lazy.column(p), M[torch.arange(b), :, p], atol=1e-10)
        if step == 2:
            rows, slots = torch.tensor([0, 2]), torch.tensor([1, 3])
            lazy.zero(rows, slots)
            M[rows, slots, :] = 0
            M[rows, :, slots] = 0
        if step == 4:
            lazy.grow(2)
            M = torch.nn.functional.pad(M, (0, 2, 0, 2))
        if step == 5:
            lazy.keep(torch.tensor([0, 2, 1]))
            M = M[torch.tensor([0, 2, 1])]
    lazy.flush()
    assert torch.allclose(lazy.G0, M, atol=1e-10)


@pytest.mark.parametrize("basis", ["dct", "wavelet"])
def test_fused_step_kernels_give_the_torch_forms_path_bit_for_bit(monkeypatch, basis):
    """The homotopy's step over all n coefficients (the entering search and the correlations' update)
    in the fused numba kernels or in the torch forms they replace: the same path to the last bit, with
    float32 products (the DCT's alpha) and float64 ones (the wavelet's)."""
    from invgan import _kernels

    calls, dtypes = [], set()
    real, real_entering = _kernels._use_kernels, _kernels.entering
    monkeypatch.setattr(_kernels, "_use_kernels", lambda *t: calls.append(real(*t)) or calls[-1])
    monkeypatch.setattr(_kernels, "entering", lambda c, a, *r: dtypes.add(a.dtype) or real_entering(c, a, *r))
    x, p, y = lasso_problem(150, seed=3, n_images=5)
    fused = lasso_homotopy(y, p, basis)
    assert calls and all(calls), "the kernels did not run"
    assert dtypes == {torch.float32 if basis == "dct" else torch.float64}
    monkeypatch.setattr(_kernels, "FUSED", False)
    calls.clear()
    plain = lasso_homotopy(y, p, basis)
    assert calls and not any(calls)
    assert torch.equal(fused.image_iterations, plain.image_iterations)
    assert torch.equal(fused.w, plain.w) and torch.equal(fused.gap, plain.gap)


def test_entering_kernel_takes_the_first_smallest_step_and_skips_what_it_must(monkeypatch):
    """Ties go to the first index (as torch's min), the support and the coefficient that just left are
    skipped, a row with nothing allowed gives inf, and negative steps (rounding) are returned as they are."""
    from invgan import _kernels

    g = torch.Generator().manual_seed(0)
    c = torch.randn(6, 300, generator=g, dtype=torch.float64)
    a = torch.randn(6, 300, generator=g)
    c[0, 7] = c[0, 9] = 5.0
    a[0, 7] = a[0, 9] = 0.0  # two equal smallest steps on row 0: lamb - 5 < 0
    active = torch.rand(6, 300, generator=g) < 0.2
    active[0, 7] = active[0, 9] = False
    active[5] = True  # nothing allowed
    last = torch.tensor([-1, 3, 50, -1, 299, -1])
    lamb = torch.full((6,), 4.0, dtype=torch.float64)
    got = _kernels.entering(c, a, active, lamb, last)
    monkeypatch.setattr(_kernels, "FUSED", False)
    want = _kernels.entering(c, a, active, lamb, last)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert int(got[1][0]) == 7 and float(got[0][0]) == -1.0
    assert got[0][5] == float("inf")
    for r in range(5):
        allowed = ~active[r]
        if last[r] >= 0:
            allowed[last[r]] = False
        assert allowed[got[1][r]]


def test_fused_kernels_leave_torchs_thread_count_as_it_was():
    """numba's OpenMP layer shares torch's OpenMP runtime: a homotopy run in a process of 1 thread (a
    sweep worker's) must leave torch at 1 thread, and the kernels ran with as many."""
    import numba

    x, p, y = lasso_problem(120, seed=8, n_images=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        lasso_homotopy(y, p, "dct")
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
