"""Lasso baselines in an orthonormal basis (Bora et al.'s Lasso-DCT and Lasso-wavelet).

Per image, with scikit-learn's objective:

    w_hat = argmin_w  1/(2m) ||y - A Psi w||^2 + alpha ||w||_1,      x_hat = clip(Psi w_hat, -1, 1)

Paper alphas: 0.1 for the DCT basis, 1e-5 for the Haar wavelet basis.

``lasso_fista``: the fast solver. FISTA (step 1/L, L = ||A||^2 / m by power iteration) with
adaptive momentum restart and alpha-continuation, batched over images (torch, CPU or GPU),
built on the fast transforms of ``invgan.bases``. It stops on a certified relative duality
gap, so the returned objective is within ``tol`` (relative) of the optimum. Two uses of the
problem's structure (``dense="auto"``, the default, for operators with an explicit matrix such as
``GaussianCS``):

- B = A Psi is formed once (m x n, one fast transform of A's rows), so an iteration is two
  matrix products with no transforms;
- support Newton steps: every few iterations, for each image whose relative gap is below
  ``NEWTON_GAP``, the Lasso restricted to its support J (|J| < m) and J's signs is solved exactly
  (Cholesky of B_J^T B_J in float64), with an exact line search on the true objective;
  coordinates that reach zero leave J, violators of the optimality condition enter, and the solve
  is repeated (feature-sign search, Lee et al. 2007). A step is kept only where it lowers the
  objective; FISTA then continues from it (momentum reset). Once the support is found the
  iterate is the exact minimiser and the certificate closes to rounding.

``lasso_homotopy``: the exact solution by the homotopy (LARS-Lasso) path, batched over images,
for explicit-matrix operators; the fast and certified choice at small m (``Lasso(solver="auto")``
takes it up to ``HOMOTOPY_MAX_M`` near basis pursuit, below ``ADMM_MIN_M`` otherwise).

``lasso_admm``: ADMM with one cached factorisation of A A^T + rho I (= B B^T + rho I), batched over
images, for explicit-matrix operators, its iterations in float32 (``ADMM_F32``), with a float64
certificate from ADMM's own dual variable; it
converges near basis pursuit (the wavelet's alpha 1e-5 at large m), where FISTA stalls
uncertified, and, with rho = 2 lam and support Newton steps, fast for larger alpha (the DCT's).
``Lasso(solver="auto")`` takes it above ``HOMOTOPY_MAX_M`` for alpha at most ``ADMM_MAX_ALPHA``, from
``ADMM_MIN_M`` for larger alpha (its w-step then by Woodbury at every m), FISTA otherwise (``choose_solver``).

``lasso_cvxpy``: the exact reference formulation in cvxpy (dense A Psi; for tests and
benchmarks on small or few problems).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from invgan import _kernels
from invgan.errors import InvganError
from invgan.bases import DCTBasis, HaarBasis, make_basis
from invgan.physics import GaussianCS, Physics
from invgan.resume import SolveState, fingerprint
from invgan.runtime import OneDNNRight, onednn_linear, onednn_products

PAPER_ALPHA = {"dct": 0.1, "wavelet": 1e-5}


def resolve_alpha(basis, alpha: float | None) -> float | None:
    """``alpha``, or the paper's for a named basis when ``alpha`` is None (the weight that is solved)."""
    return PAPER_ALPHA.get(basis) if alpha is None and isinstance(basis, str) else alpha


@dataclass
class LassoResult:
    """``x``: (B, C, H, W) reconstruction (clipped if asked); ``w``: coefficients, same shape;
    ``objective``: (B,) Lasso objective at w; ``gap``: (B,) relative duality gap; ``iterations``: in
    all; ``image_iterations``: (B,) the iterations each image ran (it stops when done; FISTA only)."""

    x: torch.Tensor
    w: torch.Tensor
    objective: torch.Tensor
    gap: torch.Tensor
    iterations: int
    image_iterations: torch.Tensor | None = None  # None for the cvxpy reference


def lasso_objective(y, physics: Physics, basis, w, alpha: float) -> torch.Tensor:
    """1/(2m) ||y - A Psi w||^2 + alpha ||w||_1 per image, (B,)."""
    r = y - physics.A(basis.synthesis(w))
    return r.pow(2).flatten(1).sum(1) / (2 * physics.m) + alpha * w.abs().flatten(1).sum(1)


def operator_norm_sq(physics: Physics, img_shape, device, iters: int = 100, seed: int = 0,
                     dtype=torch.float32) -> float:
    """Largest eigenvalue of A^T A by power iteration (A applied through the physics)."""
    v = torch.randn(1, *img_shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)
    lam = 0.0
    for _ in range(iters):
        v = v / v.norm()
        w = physics.A_adjoint(physics.A(v))
        new = float((v * w).sum())
        v = w
        if abs(new - lam) <= 1e-7 * abs(new):
            break
        lam = new
    return max(lam, new)


EXTRAPOLATION = 5  # residuals combined into an extrapolated dual point (celer's default)


def _dual_value(r: torch.Tensor, g: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Dual objective of the scaled problem at theta = s r, s = min(1, lam / ||B^T r||_inf).

    D(theta) = theta^T y - ||theta||^2 / 2 (float64); ``g`` is -B^T r (any dtype)."""
    s = torch.clamp(lam / g.flatten(1).abs().amax(1).double().clamp_min(1e-300), max=1.0)
    return s * (r * y).sum(1) - 0.5 * s * s * r.pow(2).sum(1)


def _primal(Y: torch.Tensor, w: torch.Tensor, Bt: torch.Tensor, lam: float):
    """1/2 ||y - B w||^2 + lam ||w||_1 (b,) at w (b, n), and the residual y - B w; Y (b, m), Bt = B^T."""
    r = Y - w @ Bt
    return 0.5 * r.pow(2).sum(1) + lam * w.abs().sum(1), r


def _primal_dual(Y: torch.Tensor, w: torch.Tensor, B: torch.Tensor, Bt: torch.Tensor, lam: float):
    """Primal and dual values (b,) of 1/2 ||y - B w||^2 + lam ||w||_1 at w (b, n), the dual at the
    scaled residual (``_dual_value``); Y (b, m), B (m, n), Bt = B^T, all float64."""
    primal, r = _primal(Y, w, Bt, lam)
    return primal, _dual_value(r, r @ B, Y, lam)


def _relative_gap(primal: torch.Tensor, dual: torch.Tensor) -> torch.Tensor:
    """The certified relative duality gap (primal - dual) / primal, at least 0; inf for an image not
    certified yet (primal inf, dual -inf: no point priced)."""
    gap = (primal - dual).clamp_min(0) / primal.clamp_min(1e-300)
    return torch.where(torch.isinf(primal), math.inf, gap)


def _extrapolate(history: list[torch.Tensor]) -> torch.Tensor:
    """Extrapolated residual from the last K+1 residuals (Anderson-type; celer's dual extrapolation)."""
    U = torch.stack([b - a for a, b in zip(history[:-1], history[1:])], 2)  # (B, m, K)
    UU = U.transpose(1, 2) @ U
    eye = torch.eye(UU.shape[-1], dtype=UU.dtype, device=UU.device)
    reg = 1e-10 * UU.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-300)
    c, info = torch.linalg.solve_ex(UU + reg[:, None, None] * eye,
                                    torch.ones(*UU.shape[:2], 1, dtype=UU.dtype, device=UU.device))
    c = c / c.sum(1, keepdim=True)
    out = (torch.stack(history[1:], 2) @ c).squeeze(2)
    ok = (info == 0)[:, None] & torch.isfinite(out).all(1, keepdim=True)
    return torch.where(ok, out, history[-1])  # converged rows (U = 0): the last residual


def _soft(v, thr):
    return torch.sign(v) * torch.clamp(v.abs() - thr, min=0)


def _soft_split(v, thr):
    """(soft(v, thr), v - soft(v, thr)) = (v - clip(v, -thr, thr), clip(v, -thr, thr)), in two passes; v is
    overwritten by the first (ADMM's z- and u-steps)."""
    clipped = v.clamp(-thr, thr)
    return v.sub_(clipped), clipped


DENSE_LIMIT = 2.5e8  # largest m * n for which B = A Psi is formed (1 GB in float32)
DENSE_CHUNK_ROWS = 256  # rows of A transformed at a time by ``dense_matrix``
GRAM_DIAG_PARTS = 4  # row slices of each diagonal block in ``_gram_rows``
NEWTON_GAP = 2e-3  # support Newton steps for images whose relative gap is below this
POLISH_GAP = 1e-4  # the final polish: for images that end above this relative gap (and above tol)
NEWTON_CHUNK_FLOATS = 1.2e7  # support Newton steps on row chunks whose B_J and Gram hold at most this many floats
# (about 8 rows at |J| = 500): the chunk's (rows, |J|, |J|) temporaries stay small enough to be reused by the allocator
# instead of mapped afresh (64 faces at m = 500, before the rounds skipped settled rows: one chunk 6.6 s, 2-row chunks
# 3.0 s)
POLISH_PASSES = 4  # ... support-Newton passes (each followed by entering violators)


def _explicit_matrix(physics: Physics, img_shape) -> torch.Tensor | None:
    """``physics.matrix`` (m, n) if the operator applies it as y = x A^T (``GaussianCS`` and
    subclasses that keep its ``A`` and ``A_adjoint``) and m * n <= ``DENSE_LIMIT``; else None."""
    M = getattr(physics, "matrix", None)
    if type(physics).A is not GaussianCS.A or type(physics).A_adjoint is not GaussianCS.A_adjoint:
        return None  # a subclass that applies A its own way: keep applying it
    if not torch.is_tensor(M) or M.dim() != 2 or tuple(M.shape) != (physics.m, math.prod(img_shape)) \
            or M.numel() > DENSE_LIMIT:
        return None
    return M


def dense_matrix(physics: Physics, basis, img_shape) -> torch.Tensor | None:
    """B = A Psi (m, n) for an operator that is an explicit matrix (``_explicit_matrix``), or None.
    Row i is Psi^T a_i: one fast transform of A's rows, ``DENSE_CHUNK_ROWS`` rows at a time written
    into B (the transforms' temporaries stay in cache instead of being A's size: the same bits, at
    m = 10000 0.27 to 0.30 s against 0.43 to 2.1 s for the DCT, 0.26 to 0.34 against 0.64 to 0.82 for
    the wavelet; a whole first solve faults in as many pages either way, as the later set-up reuses
    the freed temporaries)."""
    M = _explicit_matrix(physics, img_shape)
    if M is None:
        return None
    m, B = physics.m, None
    for i in range(0, m, DENSE_CHUNK_ROWS):
        rows = M[i:i + DENSE_CHUNK_ROWS]
        part = basis.analysis(rows.reshape(len(rows), *img_shape)).reshape(len(rows), -1)
        if B is None:  # (the basis's output dtype and device, as the whole transform gave)
            B = torch.empty(m, part.shape[1], dtype=part.dtype, device=part.device)
        B[i:i + DENSE_CHUNK_ROWS] = part
    return B


def _line_search(z, d, G, c, lam, steps: int = 50):
    """Per row, argmin over t in [0, 1] of the Lasso objective 1/2 w'Gw - c'w + lam |w|_1 along
    w = z + t d (a convex function of t): bisection on its derivative. Returns t (b,)."""
    Gd = (G @ d[..., None]).squeeze(-1)
    qa = (d * Gd).sum(1)
    qc = (d * c).sum(1) - (z * Gd).sum(1)

    def slope(t):
        v = z + t[:, None] * d
        return -qc + t * qa + lam * (torch.where(v != 0, torch.sign(v), torch.sign(d)) * d).sum(1)

    lo, hi = torch.zeros_like(qa), torch.ones_like(qa)
    full = slope(hi) <= 0
    for _ in range(steps):
        mid = (lo + hi) / 2
        neg = slope(mid) <= 0
        lo, hi = torch.where(neg, mid, lo), torch.where(neg, hi, mid)
    return torch.where(full, torch.ones_like(lo), lo)


def support_newton(w: torch.Tensor, Bt: torch.Tensor, y: torch.Tensor, lam: float, rounds: int = 8):
    """Exact Lasso steps on each row's support (feature-sign search), batched over rows.

    ``w`` (b, n) current coefficients, ``Bt`` (n, m) = (A Psi)^T in float64, ``y`` (b, m). On
    J = supp(w) with signs s = sign(w_J), the minimiser of 1/2||y - B_J v||^2 + lam s'v is
    v = (B_J'B_J)^-1 (B_J'y - lam s); the step goes from w towards v with an exact line search on
    the true objective; coordinates that end at zero leave J, those that crossed zero change sign,
    and the solve is repeated (``rounds`` times at most). A row with |J| >= m starts from its
    m - 1 - m/32 largest coefficients (B_J must have full column rank); a row whose factorisation
    fails is returned as it is. Returns (w_new (b, n) float64, tried (b,) bool); the objective at
    w_new is never above that of the point it started from, up to rounding.
    """
    out, tried, _ = _support_newton(w, Bt, y, lam, rounds)
    return out, tried


def _support_newton(w, Bt, y, lam, rounds: int = 8):  # support_newton, and which rows still changed in the last round
    b, n = w.shape
    m = Bt.shape[1]
    w = w.to(Bt.dtype)
    act = w != 0
    count = act.sum(1)
    if bool((count >= m).any()):  # too many nonzeros for a full-rank B_J: keep the largest
        cap = min(m - 1 - m // 32, n)
        thr = w.abs().topk(cap, 1).values[:, -1:]
        act = act & ((count < m)[:, None] | (w.abs() >= thr))
        count = act.sum(1)
    tried = (count > 0) & (count < m)
    k = int(torch.where(tried, count, torch.zeros_like(count)).max())
    if k == 0:
        return w, torch.zeros_like(tried), torch.zeros_like(tried)
    idx = torch.argsort(act.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
    a = torch.gather(act, 1, idx) & tried[:, None]
    BJ = Bt[idx] * a[..., None]  # (b, k, m), padding rows zero
    G = BJ @ BJ.transpose(1, 2)
    c = (BJ @ y.to(Bt.dtype)[..., None]).squeeze(-1)
    z = torch.gather(w, 1, idx) * a
    s = torch.sign(z)
    start = w.scatter(1, idx, z) * (act | ~tried[:, None])  # the truncated point the steps start from
    # each round works on the rows whose support or signs changed in the last one (a row that did not change
    # would repeat its step exactly: d = 0); its masked Gram is built in one buffer
    live = tried.clone()
    for _ in range(rounds):
        rows = live.nonzero().squeeze(1)
        if not len(rows):
            break
        ar, zr, sr, cr = a[rows], z[rows], s[rows], c[rows]
        am = ar.to(G.dtype)
        GJ = G[rows].mul_(am[:, :, None]).mul_(am[:, None, :])
        GJ.diagonal(dim1=1, dim2=2).add_(1 - am)
        L, info = torch.linalg.cholesky_ex(GJ)
        ok = info == 0
        tried[rows] &= ok
        v = torch.cholesky_solve(((cr - lam * sr) * am)[..., None], L).squeeze(-1) * am
        d = torch.where(ok[:, None], v - zr, torch.zeros_like(zr))
        t = _line_search(zr, d, GJ, cr, lam)  # GJ d = G d: d is zero off the support
        znew = zr + t[:, None] * d
        # coordinates that stop at zero leave the support; those that crossed it change sign
        tiny = znew.abs() <= 1e-12 * znew.abs().amax(1, keepdim=True).clamp_min(1e-300)
        drop = ar & tiny
        flipped = ar & ~tiny & (torch.sign(znew) != sr)
        zr = torch.where(drop, torch.zeros_like(znew), znew)
        ar = ar & ~drop
        z[rows], a[rows] = zr, ar
        s[rows] = torch.where(ar, torch.sign(zr), torch.zeros_like(sr))
        live[rows] = (drop | flipped).any(1) & ok
    out = torch.where(tried[:, None], start.scatter(1, idx, z * a), w)
    return out, tried, live & tried


def lasso_fista(y: torch.Tensor, physics: Physics, basis="dct", alpha: float | None = None,
                tol: float = 1e-6, max_iter: int = 10000,
                stall_tol: float = 1e-8, continuation: bool = True, clip: bool = True,
                progress: bool = False, state: SolveState | None = None, dense="auto",
                newton: bool = True, w0: torch.Tensor | None = None) -> LassoResult:
    """Solve the Lasso for every image of the batch y (B, ...) at once.

    ``basis``: "dct", "wavelet" or a basis object; ``alpha`` defaults to the paper's value for
    the basis. An image is done when its relative duality gap is below ``tol`` (a certificate:
    the objective is then within ``tol`` of the optimum), or when its best objective improved by
    less than ``stall_tol`` (relative) over the last 200 iterations, or after ``max_iter``
    iterations in all. The certificate is often much looser than the true distance to the optimum.
    ``state``: save the run there as it goes and resume from it (see ``invgan.resume``).
    ``dense``: "auto" (default) forms B = A Psi when the operator is an explicit matrix
    (``dense_matrix``) and the same for every image; False always applies A and Psi; True
    requires B. ``newton``: support Newton steps (``support_newton``; with B only). ``w0``: a
    warm start (coefficients, the shape of ``basis.analysis`` of the images), e.g. the solution
    of a nearby problem; FISTA then starts there with no alpha-continuation.

    Parameters
    ----------
    y : torch.Tensor
        (B, ...) measurements of B images under ``physics``.
    physics : invgan.physics.Physics
        Any operator with ``A``, ``A_adjoint``, ``m`` and ``img_shape`` (C, H, W).
    basis : {"dct", "wavelet"} or basis object
        An orthonormal basis (``analysis``/``synthesis``, see ``invgan.bases``).
    alpha : float, optional
        The l1 weight; default the paper's for a named basis (0.1 DCT, 1e-5 wavelet).

    Returns
    -------
    LassoResult
        ``x`` (B, C, H, W), clipped to [-1, 1] if ``clip``.
    """
    with flush_denormal():  # tiny coefficients otherwise slow CPU iterations down ~5x
        return _lasso_fista(y, physics, basis, alpha, tol, max_iter, stall_tol, continuation, clip, progress, state,
                            dense, newton, w0)


def _flush_denormal_on() -> bool:
    return bool((torch.tensor([1e-39]) * 1.0).item() == 0.0)


@contextlib.contextmanager
def flush_denormal():
    """Flush denormal floats to zero inside the block, then restore the caller's setting."""
    before = _flush_denormal_on()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _check_inputs(y, physics, basis, alpha, tol):
    img_shape = getattr(physics, "img_shape", None)
    if img_shape is None:
        raise InvganError(f"the operator {type(physics).__name__} needs an img_shape (C, H, W) for the Lasso")
    alpha = resolve_alpha(basis, alpha)
    if isinstance(basis, str):
        basis = make_basis(basis, tuple(img_shape))
    if alpha is None or not math.isfinite(alpha) or alpha <= 0:
        raise InvganError(f"Lasso alpha must be a finite number > 0, got {alpha}")
    if not (math.isfinite(tol) and tol > 0):
        raise InvganError(f"Lasso tol must be a finite number > 0, got {tol}")
    if not torch.isfinite(y).all():
        raise InvganError("the measurements y hold NaN or infinite values")
    check = getattr(physics, "check_measurements", None)
    if check is not None:  # y's shape and dtype against the operator's, before any work (a float64 y with a float32
        check(y, "Lasso")  # GaussianCS failed at the end, in the objective)
    if tuple(getattr(basis, "shape", img_shape[-2:])) != tuple(img_shape[-2:]):
        raise InvganError(f"the basis is for {'x'.join(map(str, basis.shape))} images, the operator's are "
                          f"{'x'.join(map(str, img_shape[-2:]))}")
    return basis, alpha, tuple(img_shape)


def _newton_rows(w, Bt, y, lam, budget: float = NEWTON_CHUNK_FLOATS, passes: int = 2):
    """``support_newton`` over row chunks small enough that B_J and its Gram hold ``budget`` floats.

    After each pass but the last, the coordinates off the support that violate the optimality
    condition (|b_j^T r| > lam) enter with the sign that lowers the objective, and the rows that had
    such coordinates, or whose steps were still changing the support when their rounds ran out,
    run again (the others would repeat their last step). Returns the new rows (float64), which rows
    were tried, and their primal and dual values in float64 (the dual at the scaled residual, as in
    ``_dual_value``)."""
    k = int((w != 0).sum(1).max())
    kk = min(2 * k, Bt.shape[1])
    chunk = max(1, int(budget // max(1, kk * (Bt.shape[1] + kk))))
    outs = []
    for i in range(0, w.shape[0], chunk):
        wi, yi = w[i:i + chunk].to(Bt.dtype, copy=True), y[i:i + chunk].to(Bt.dtype)  # wi is written below
        tried = torch.zeros(wi.shape[0], dtype=torch.bool, device=w.device)
        r, g = torch.empty_like(yi), torch.empty_like(wi)  # each row's residual and B^T r after its last pass
        rows = torch.arange(wi.shape[0], device=w.device)  # the rows this pass runs on
        for p in range(passes):
            yr = yi[rows]
            wn, t, live = _support_newton(wi[rows], Bt, yr, lam)
            tried[rows] |= t
            wn = torch.where(wn.abs() <= 1e-20, torch.zeros_like(wn), wn)
            rn = yr - wn @ Bt
            gn = rn @ Bt.T  # B^T r
            wi[rows], r[rows], g[rows] = wn, rn, gn
            enter = (wn == 0) & (gn.abs() > lam)
            again = enter.any(1) | live  # violators to enter, or the rounds ran out
            if p + 1 == passes or not bool(again.any()):
                break
            wi[rows] = torch.where(enter, 1e-30 * torch.sign(gn), wn)
            rows = rows[again]
        primal = 0.5 * r.pow(2).sum(1) + lam * wi.abs().sum(1)
        dual = _dual_value(r, g, yi, lam)  # a bound only where finite (a failed step's is not one)
        outs.append((wi, tried, primal, torch.where(torch.isfinite(dual), dual, -math.inf)))
    return tuple(torch.cat(v) for v in zip(*outs))


def _lasso_fista(y, physics, basis, alpha, tol, max_iter, stall_tol, continuation, clip, progress, state,
                 dense="auto", newton=True, w0=None):
    from tqdm import tqdm

    basis, alpha, img_shape = _check_inputs(y, physics, basis, alpha, tol)
    if dense not in ("auto", True, False):
        raise InvganError(f"dense must be 'auto', True or False, got {dense!r}")
    device, m, nb = y.device, physics.m, y.shape[0]
    n = math.prod(img_shape)
    lam = m * alpha  # scaled problem: 1/2 ||y - Bw||^2 + lam ||w||_1
    L = operator_norm_sq(physics, img_shape, device, dtype=y.dtype) * 1.02
    Bm = dense_matrix(physics, basis, img_shape) if dense is not False and physics.shared else None
    if dense is True and Bm is None:
        raise InvganError(f"dense=True needs an operator that is an explicit matrix shared by all images, with "
                          f"m * n <= {DENSE_LIMIT:.0e}; {type(physics).__name__} is not")
    # support Newton steps every `newton_every` iterations: their cost (Gram + Cholesky, ~4.7 m^3 flops
    # per image at |J| ~ m) kept to about a quarter of the FISTA iterations' (4 m n per image)
    newton_every = max(50, 50 * math.ceil(4.67 * m * m / n / 50))
    Bt = None
    if Bm is not None:
        Bm = Bm.to(y.dtype)
        BmT = Bm.T.contiguous()  # (n, m): w @ BmT is faster than w @ Bm.T
        if newton and newton_every < max_iter:  # (at m ~ n the steps would never come: no float64 copy)
            Bt = BmT.double()

    def fwd(w):  # A Psi w
        if Bm is None:
            return physics.A(basis.synthesis(w))
        return (w.reshape(w.shape[0], -1) @ BmT).reshape(w.shape[0], *y.shape[1:])

    def adj(r):  # Psi^T A^T r
        if Bm is None:
            return basis.analysis(physics.A_adjoint(r))
        return (r.reshape(r.shape[0], -1) @ Bm).reshape(r.shape[0], *img_shape)

    bty = adj(y)  # B^T y

    def grad_and_res(w, rows=None):  # rows: the images of the batch that w holds (None: all)
        r = (y if rows is None else y[rows]) - fwd(w)
        return -adj(r), r

    def rel_gap(w, lam_now, rows=None, history=None, extrapolate=False):
        """Relative duality gap at w and the primal objective (float64, (B,) each).

        The dual point is the residual scaled into the dual feasible set; with ``history`` (the
        last residuals of these rows) and ``extrapolate`` also their extrapolation (Massias et al. 2018, celer), and the
        better of the two counts. Sums are taken in float64 in a form without cancellation, so the
        certificate does not drown in the float32 rounding of ||y||^2 (1e6 and more)."""
        g, r = grad_and_res(w, rows)
        yr = (y if rows is None else y[rows]).double().flatten(1)
        rd = r.double().flatten(1)
        primal = 0.5 * rd.pow(2).sum(1) + lam_now * w.double().flatten(1).abs().sum(1)
        # the objective at the data's precision, as before: it picks the best iterate and tests stagnation
        primal_lo = 0.5 * r.pow(2).flatten(1).sum(1) + lam_now * w.abs().flatten(1).sum(1)
        dual = _dual_value(rd, g, yr, lam_now)
        if history is not None:  # full-batch rows, so that the result does not depend on compaction
            full = torch.zeros(nb, rd.shape[1], dtype=rd.dtype, device=rd.device)
            full[slice(None) if rows is None else rows] = rd
            history.append(full)
            del history[:-(EXTRAPOLATION + 1)]
            if extrapolate and len(history) == EXTRAPOLATION + 1:
                r_acc = _extrapolate([h if rows is None else h[rows] for h in history])
                g_acc = -adj(r_acc.to(y.dtype).view(r.shape))
                dual = torch.maximum(dual, _dual_value(r_acc, g_acc, yr, lam_now))
        return primal, primal_lo, dual

    lam_max = float(bty.abs().flatten(1).amax(1).max())
    stages = [lam]
    if w0 is not None:  # a warm start: no continuation from lam_max
        if tuple(w0.shape) != tuple(bty.shape) or not torch.isfinite(w0).all():
            raise InvganError(f"w0 must be finite coefficients of shape {tuple(bty.shape)}, got {tuple(w0.shape)}")
        continuation = False
    if continuation and lam_max > lam:
        k = math.ceil(math.log10(lam_max / lam) * 2)
        stages = [lam_max * (lam / lam_max) ** (j / k) for j in range(1, k + 1)]
    w = torch.zeros_like(bty) if w0 is None else w0.to(bty.dtype).clone()
    final_dual = None
    total, first_stage, saved, key = 0, 0, None, None
    ran = torch.zeros(nb, dtype=torch.long, device=device)  # iterations per image
    if state is not None:
        key = {"solver": "lasso-fista-3", "dense": Bm is not None, "newton": Bt is not None,
               "basis": getattr(basis, "name", type(basis).__name__), "alpha": alpha,
               "tol": tol, "max_iter": max_iter, "stall_tol": stall_tol, "continuation": continuation,
               **({"w0": fingerprint(w0)} if w0 is not None else {}),
               "physics": type(physics).__name__, "m": m, "y": fingerprint(y)}
        saved = state.load(key, device)
        if saved:
            first_stage, total, w, ran = saved["stage"], saved["total"], saved["w"], saved["ran"]
    bar = tqdm(total=max_iter, desc=f"lasso-{getattr(basis, 'name', 'basis')}", unit="it",
               disable=not progress, leave=False)
    bar.update(total)
    for si, lam_s in enumerate(stages):
        if si < first_stage:
            continue
        final = si == len(stages) - 1
        stage_tol = tol if final else max(tol, 1e-2)
        budget = max_iter - total if final else min(500, max_iter - total)
        v, t = w.clone(), torch.ones(nb, device=device)
        active = torch.ones(nb, dtype=torch.bool, device=device)
        best_w = w.clone()
        best_f = torch.full((nb,), float("inf"), device=device, dtype=y.dtype)
        best_p = torch.full((nb,), float("inf"), device=device, dtype=torch.float64)  # best_f in float64
        best_d = torch.full((nb,), -float("inf"), device=device, dtype=torch.float64)  # best dual value
        history = []  # best objective every `check` iterations, for the stagnation test
        residuals = []  # the last residuals of the running rows, for dual extrapolation
        it, check, last = 0, 10, 0
        if saved:  # resume inside this stage
            v, t, active, best_w, best_f, best_p, best_d, it = (
                saved[k] for k in ("v", "t", "active", "best_w", "best_f", "best_p", "best_d", "it"))
            history, saved, last = list(saved["history"].unbind(0)), None, saved["it"]
        # Only the images still running are computed: the batch shrinks as images stop.
        rows = active.nonzero().squeeze(1) if physics.shared else torch.arange(nb, device=device)
        wa, va, ta = w[rows], v[rows], t[rows]
        frozen = not bool(active[rows].all())  # rows that must not move (only when not compacted)
        while it < budget:
            g, _ = grad_and_res(va, rows)
            w_new = _soft(va - g / L, lam_s / L)
            # adaptive restart (O'Donoghue & Candes): drop momentum when it points uphill
            uphill = ((va - w_new) * (w_new - wa)).flatten(1).sum(1) > 0
            t_new = torch.where(uphill, torch.ones_like(ta), (1 + torch.sqrt(1 + 4 * ta * ta)) / 2)
            beta = torch.where(uphill, torch.zeros_like(ta), (ta - 1) / t_new)
            va = w_new + beta.view(-1, *[1] * (w.dim() - 1)) * (w_new - wa)
            if frozen:
                keep = active[rows].view(-1, *[1] * (w.dim() - 1))
                w_new, va, t_new = (torch.where(keep, w_new, wa), torch.where(keep, va, v[rows]),
                                    torch.where(active[rows], t_new, ta))
            wa, ta = w_new, t_new
            it += 1
            if it % check == 0 or it == budget:
                w[rows], v[rows], t[rows] = wa, va, ta
                ran += (it - last) * active
                last = it
                # the extrapolated dual costs one more A^T, so it is tried every 5th check only
                primal, primal_lo, dual = rel_gap(wa, lam_s, rows, residuals, extrapolate=it % (5 * check) == 0)
                better = primal_lo < best_f[rows]
                best_f[rows] = torch.where(better, primal_lo, best_f[rows])
                best_p[rows] = torch.where(better, primal, best_p[rows])
                best_d[rows] = torch.maximum(best_d[rows], dual)
                best_w[rows] = torch.where(better.view(-1, *[1] * (w.dim() - 1)), wa, best_w[rows])
                if Bt is not None and it % newton_every == 0:
                    # rows close enough to the optimum that their support is nearly found
                    near = ((best_p[rows] - best_d[rows]) <= NEWTON_GAP * best_p[rows]).nonzero().squeeze(1)
                    if len(near):
                        sub = rows[near]
                        cand, tried, p_n, d_n = _newton_rows(best_w[sub].reshape(len(sub), -1), Bt,
                                                             y[sub].reshape(len(sub), -1), lam_s)
                        shape = (-1, *[1] * (w.dim() - 1))
                        cand = cand.to(y.dtype).view(len(sub), *w.shape[1:])
                        ok = tried & (p_n < best_p[sub])  # float64 objectives (the Newton point's is exact)
                        best_f[sub] = torch.where(ok, p_n.to(y.dtype), best_f[sub])
                        best_p[sub] = torch.where(ok, p_n, best_p[sub])
                        best_d[sub] = torch.maximum(best_d[sub], d_n)  # a dual value is valid anywhere
                        best_w[sub] = torch.where(ok.view(shape), cand, best_w[sub])
                        # FISTA continues from the Newton point, momentum reset
                        wa[near] = torch.where(ok.view(shape), cand, wa[near])
                        va[near] = torch.where(ok.view(shape), cand, va[near])
                        ta[near] = torch.where(ok, torch.ones_like(ta[near]), ta[near])
                        w[rows], v[rows], t[rows] = wa, va, ta
                gap = _relative_gap(best_p, best_d).to(y.dtype)
                history.append(best_f.clone())
                window = 20 if final else 5  # x check iterations
                stalled = torch.zeros_like(active)
                if len(history) > window:
                    old = history[-1 - window]
                    stalled = (old - best_f) <= stall_tol * best_f.abs() * (1 if final else 1e3)
                now = active & (gap > stage_tol) & ~stalled
                if not bool(now.any()):
                    active = now
                    break
                if physics.shared and not torch.equal(now, active):
                    rows = now.nonzero().squeeze(1)
                    wa, va, ta = w[rows], v[rows], t[rows]
                active = now
                frozen = not bool(active[rows].all())
                bar.update(total + it - bar.n)
                bar.set_postfix(stage=f"{si + 1}/{len(stages)}", running=int(active.sum()), refresh=False)
                if state is not None and state.due():
                    state.save(key, {"stage": si, "total": total, "it": it, "ran": ran, "w": w, "v": v, "t": t,
                                     "active": active, "best_w": best_w, "best_f": best_f, "best_p": best_p, "best_d": best_d, "history": torch.stack(history)})
        w = best_w
        final_dual = best_d if final else None
        total += it
        bar.update(total - bar.n)
        if total >= max_iter:
            break
    bar.close()
    primal, _, dual = rel_gap(w, lam)
    if final_dual is not None:  # the best dual point of the last stage (same lambda)
        dual = torch.maximum(dual, final_dual)
    gap = _relative_gap(primal, dual)
    # A final polish: images that stopped (stagnation or max_iter) above tol and above POLISH_GAP but
    # near the optimum take support Newton steps once, also where FISTA ended before its first
    # scheduled ones. Only where Newton steps are scheduled at all (Bt formed), and if their cost
    # (~4.67 m^3 flops each at |J| ~ m) is at most the FISTA work the batch has had (4 m n per
    # image-iteration).
    polish = (gap > max(tol, POLISH_GAP)) & (gap <= NEWTON_GAP)
    if (Bt is not None and bool(polish.any())
            and 4.67 * m ** 3 * int(polish.sum()) <= float(ran.sum()) * 4 * m * n):
        sub = polish.nonzero().squeeze(1)
        ys, ws = y[sub].reshape(len(sub), -1).double(), w[sub].reshape(len(sub), -1)
        cand, tried, _, d_n = _newton_rows(ws, Bt, ys, lam, passes=POLISH_PASSES)
        cand = cand.to(w.dtype)  # the point returned, at the data's precision; compared in float64
        p_c, _ = _primal(ys, cand.double(), Bt, lam)
        ok = tried & (p_c < _primal(ys, ws.double(), Bt, lam)[0])
        w[sub] = torch.where(ok[:, None], cand, ws).view(len(sub), *w.shape[1:])
        primal[sub] = torch.where(ok, p_c, primal[sub])
        dual[sub] = torch.maximum(dual[sub], d_n)  # a dual value is valid anywhere
        gap = _relative_gap(primal, dual)
    gap = gap.to(y.dtype)
    x = basis.synthesis(w)
    if clip:
        x = x.clamp(-1, 1)
    return LassoResult(x, w, lasso_objective(y, physics, basis, w, alpha), gap, total, ran)


HOMOTOPY_MAX_M = 1000  # solver="auto": the homotopy up to this m (its work grows like m^3 per image)
HOMOTOPY_REFRESH = 200  # steps between exact re-factorisations (and the points a run can resume from)
GRAM_BYTES = 2.0e9  # largest B^T B (float64) the homotopy forms; above, its entries are computed as needed
HOMOTOPY_GRAM_MIN_M = 200  # the homotopy forms B^T B (2 n^2 m flops) only above this m; at or below it a step's
# entries (B^T B)[j, J] come from B's gathered columns (b K m flops), cheaper over a path of a few hundred steps
HOMOTOPY_BYTES = 1.0e9  # largest (B, m, m) float64 inverse held at once: larger batches run in chunks
HOMOTOPY_GATHER = 1.0  # B_J d_J from the gathered rows B^T[J] while rows x slots < this x n (they read less
# than all of B); above, as one product with all of B^T (0: always the product)
HOMOTOPY_F32 = True  # a step's two products with B in float32 for alpha above ADMM_MAX_ALPHA (the DCT's); the rest
# stays float64, the correlations are recomputed exactly every HOMOTOPY_REFRESH steps, and an image whose final
HOMOTOPY_RECHECK = 1e-7  # certified gap exceeds this is solved again with float64 products
HOMOTOPY_ROWS_BYTES = 1.0e9  # the support slots' rows of B^T (b, m, m; float64, plus float32 for float32 products)
# are held and updated as coefficients enter, where they fit in this; else gathered (or a product) per step
HOMOTOPY_LAZY = 32  # rank-one inverse updates held as pending terms and applied to the inverse in one
# batched product every this many steps (1: each at once); a step then reads the inverse once, not three times
HOMOTOPY_SYMMETRIC = True  # products with the (symmetric) inverse as a row vector times it, its columns as its rows
# (``_LazyInverse(symmetric=True)``: float64, 64 x 512 x 512, 4.2 against 7.2 ms a product)


def homotopy_applies(physics: Physics, max_m: float | None = None) -> bool:
    """Whether the homotopy runs on this operator: an explicit matrix shared by all images that B
    can be formed from (``dense_matrix``), with m <= ``max_m`` (None: ``HOMOTOPY_MAX_M`` as it is
    set when called, i.e. whether ``solver="auto"`` takes it; ``math.inf``: any m)."""
    max_m = HOMOTOPY_MAX_M if max_m is None else max_m
    img_shape = getattr(physics, "img_shape", None)
    return (bool(getattr(physics, "shared", False)) and img_shape is not None and physics.m <= max_m
            and _explicit_matrix(physics, tuple(img_shape)) is not None)


SOLVERS = ("auto", "fista", "homotopy", "admm")


def check_solver_name(solver, what: str = "Lasso solver") -> None:
    """Raise the one error for a solver name that is not one of ``SOLVERS`` (``what``: how the
    caller names the setting, e.g. "lasso_solver" in a config)."""
    if solver not in SOLVERS:
        raise InvganError(f"unknown {what} {solver!r}: use {', '.join(SOLVERS)}")


ADMM_MAX_ALPHA = 1e-3  # solver="auto" above HOMOTOPY_MAX_M: ADMM for alpha at most this (near basis pursuit for
# images in [-1, 1], such as the wavelet's paper alpha 1e-5, where FISTA stalls uncertified), FISTA above it
ADMM_WIDE_MIN_BATCH = 16  # ... and where m is large against n (admm_gram_form), only for batches of at least this many
# images: its setup (at m = 10000 about 10 s) is shared by the batch (against FISTA: m = 10000, 64 faces 1.27x, 32
# faces 1.15x, 16 faces about even; m = 7500, 64 faces 1.85x, 16 faces 1.21x)
ADMM_MIN_M = 500  # solver="auto" for alpha above ADMM_MAX_ALPHA (the DCT's): ADMM from this m (its w-step by Woodbury
# at every m; at m = 7500 and 10000, 64 faces, 1.85x and 1.27x faster than FISTA), the homotopy below it


def choose_solver(solver: str, physics: Physics, alpha: float | None = None, batch: int | None = None) -> str:
    """The solver ``solver`` ("auto", "fista", "homotopy" or "admm") runs on ``physics`` with l1
    weight ``alpha``. "auto", for an explicit shared matrix (``homotopy_applies`` at any m):

    - alpha <= ``ADMM_MAX_ALPHA`` (near basis pursuit, the wavelet's): the exact homotopy up to
      m = ``HOMOTOPY_MAX_M``, ADMM above;
    - alpha above it (the DCT's): ADMM from m = ``ADMM_MIN_M`` (its w-step by Woodbury at every m,
      with float32 factorisations from ``ADMM_SETUP_F32_M``) up to m = n (FISTA from there: A A^T is
      singular), the homotopy below; where m is large against n (``admm_gram_form``) ADMM's setup pays
      off only over a batch: FISTA for a ``batch`` of fewer than ``ADMM_WIDE_MIN_BATCH`` images;
    - alpha not given: the homotopy up to ``HOMOTOPY_MAX_M``, FISTA above.

    Any other operator: FISTA."""
    check_solver_name(solver)
    if solver != "auto":
        return solver
    if not homotopy_applies(physics, max_m=math.inf):
        return "fista"
    m = physics.m
    if alpha is not None and alpha > ADMM_MAX_ALPHA and m >= ADMM_MIN_M:
        n = math.prod(physics.img_shape)
        if m >= n:  # A A^T singular: Woodbury's m x m factors do not serve
            return "fista"
        if admm_gram_form(m, n) and batch is not None and batch < ADMM_WIDE_MIN_BATCH:
            return "fista"
        return "admm"
    if m <= HOMOTOPY_MAX_M:
        return "homotopy"
    return "admm" if alpha is not None and alpha <= ADMM_MAX_ALPHA else "fista"


def check_dense(physics: Physics, solver: str = "homotopy") -> None:
    """Raise the one error for a solver that needs B = A Psi formed ("homotopy", "admm") on an
    operator it cannot run on (any m)."""
    if not homotopy_applies(physics, max_m=math.inf):
        raise InvganError(f"the {solver} Lasso solver needs an operator that is an explicit matrix shared by all "
                          f"images (such as gaussian), with m * n <= {DENSE_LIMIT:.0e}; {type(physics).__name__} "
                          f"is not: use solver fista or auto")


def lasso_homotopy(y: torch.Tensor, physics: Physics, basis="dct", alpha: float | None = None,
                   clip: bool = True, progress: bool = False, state: SolveState | None = None,
                   max_steps: int | None = None) -> LassoResult:
    """The exact Lasso solution by the homotopy (LARS-Lasso) path, batched over images.

    Each image's solution path w(lam) is piecewise linear in lam (Osborne, Presnell & Turlach
    2000; Efron et al. 2004): it starts at w = 0 for lam >= lam_max = ||B^T y||_inf and changes
    direction only where a coefficient enters or leaves the support. The solver follows it from
    lam_max down to the target lam = m alpha one such event per step: on the support J with signs
    s the direction is (B_J^T B_J)^-1 s, whose inverse is updated by one rank-one term per event
    (float64; the terms are held pending and applied together every ``HOMOTOPY_LAZY`` steps, and the
    inverse is re-factorised exactly every ``HOMOTOPY_REFRESH`` steps); a step costs two products
    with B (in float32 with ``HOMOTOPY_F32`` where alpha > ``ADMM_MAX_ALPHA``, the correlations then
    recomputed exactly in float64 at each re-factorisation) and a scan of the n correlations in
    float64. At the end the solution on each final support is computed exactly (Cholesky with
    iterative refinement) and certified by the float64 duality gap (1e-8 or less where measured); an
    image whose gap exceeds ``HOMOTOPY_RECHECK`` (its float32 path took an event out of order) is
    solved again with float64 products. A support holds at most m coefficients (at m, B_J is square
    and no further coefficient can enter).

    It needs B = A Psi formed once (``dense_matrix``: an explicit matrix shared by all images) and
    holds its Gram B^T B (n x n, float64; where that exceeds ``GRAM_BYTES`` its entries are computed
    as needed, one more product per step) and one (m, m) inverse per image: it is the fast choice
    for m up to about ``HOMOTOPY_MAX_M``; the steps number about 1.5 m per image.

    Parameters
    ----------
    y : torch.Tensor
        (B, m) measurements under ``physics``.
    physics : invgan.physics.Physics
        An explicit-matrix operator such as ``GaussianCS``, shared by all images.
    basis : {"dct", "wavelet"} or basis object
    alpha : float, optional
        The l1 weight; default the paper's for a named basis.
    clip : bool
        Clip x = Psi w to [-1, 1].
    state : invgan.resume.SolveState, optional
        Save the path as it goes (at re-factorisation points) and resume from it.
    max_steps : int, optional
        Stop every image after this many steps (its point is then certified as it is).

    Returns
    -------
    LassoResult
        ``iterations``: steps in all; ``image_iterations``: (B,) steps per image; ``gap``: the
        certified relative duality gaps.
    """
    with flush_denormal():
        return _lasso_homotopy(y, physics, basis, alpha, clip, progress, state, max_steps)


class _Gram:
    """Entries of B^T B (float64): from the formed Gram where it fits in ``GRAM_BYTES`` and m is above
    ``HOMOTOPY_GRAM_MIN_M``, else computed from B's gathered columns when asked."""

    def __init__(self, Bd, Btd):
        m, n = Bd.shape
        self.Bd, self.Btd = Bd, Btd
        self.G = Btd @ Bd if 8 * n * n <= GRAM_BYTES and m > HOMOTOPY_GRAM_MIN_M else None
        self.diag = self.G.diagonal() if self.G is not None else Bd.pow(2).sum(0)
        self.dtype, self.device = Bd.dtype, Bd.device

    def schur(self, j, g, q, rows=None):  # an entering b_j's Schur complement ||b_j||^2 - g^T q (q = Gi g)
        return self.diag[j] - (g * q).sum(1)

    def entries(self, j, idx, rows=None):  # (b,), (b, K) -> (b, K): (B^T B)[j, idx] per row; ``rows``: B^T[idx]
        if self.G is not None:                 # (b, K, m) if the caller holds it
            return self.G[j[:, None], idx]  # reads b x K entries, not b whole rows
        return torch.bmm(self.Btd[idx] if rows is None else rows, self.Btd[j][..., None]).squeeze(-1)

    def sub(self, idx):  # (b, K) -> (b, K, K): B_J^T B_J on the slots
        if self.G is not None:
            return self.G[idx[:, :, None], idx[:, None, :]]
        BJ = self.Btd[idx]  # (b, K, m)
        return BJ @ BJ.transpose(1, 2)


def _support_solution(G, c0, idx, used, sgn, lamb, inverse: bool = True):
    """Per row, the inverse of B_J^T B_J on the support slots (zero elsewhere; None unless
    ``inverse``) and the exact solution w_J = (B_J^T B_J)^-1 (B_J^T y - lam s) at its lam,
    scattered to (b, n); float64. ``ok``: the factorisation succeeded (else a 1e-12 ridge was
    added to it)."""
    f64 = G.dtype
    uf = used.to(f64)
    mask = uf[:, :, None] * uf[:, None, :]
    GJ = G.sub(idx) * mask + torch.diag_embed(1 - uf)
    L, info = torch.linalg.cholesky_ex(GJ)
    ok = info == 0
    if not bool(ok.all()):
        ridge = 1e-12 * GJ.diagonal(dim1=1, dim2=2).amax(1)
        L2, _ = torch.linalg.cholesky_ex(GJ + ridge[:, None, None] * torch.eye(GJ.shape[1], dtype=f64, device=G.device))
        L = torch.where(ok[:, None, None], L, L2)
    Gi = torch.cholesky_inverse(L) * mask if inverse else None
    rhs = ((c0.gather(1, idx) - lamb[:, None] * sgn) * uf)[..., None]
    wJ = torch.cholesky_solve(rhs, L)
    for _ in range(2):  # iterative refinement: B_J is close to square near basis pursuit
        wJ = wJ + torch.cholesky_solve(rhs - GJ @ wJ, L)
    wJ = wJ.squeeze(-1)
    w = torch.zeros(c0.shape, dtype=f64, device=G.device).scatter_add_(1, idx, wJ * uf)
    return Gi, w, ok


class _LazyInverse:
    """Per row, the inverse of B_J^T B_J on the support slots, held as Gi0 + V^T diag(C) V: the last
    rank-one updates (at most ``rank``) are kept as pending terms and applied to Gi0 together, in one
    batched product, when ``rank`` have gathered. A product with the inverse then reads Gi0 (b, K, K)
    once per step instead of reading it and reading and writing it again for every update (the
    step's largest memory traffic at large m). ``rank`` = 1 applies every update at once."""

    def __init__(self, Gi: torch.Tensor, rank: int, symmetric: bool = False):
        self.G0, self.rank, self.k = Gi, max(1, int(rank)), 0
        # symmetric: G0 is (the eps-path's), so G0 x = (x^T G0)^T, the row-vector product reading G0 in its own
        # layout (float32, 64 x 512 x 512: 1.75 against 6.8 ms), and column p is row p (contiguous)
        self.symmetric = symmetric
        self.V = Gi.new_zeros(Gi.shape[0], self.rank, Gi.shape[1])  # pending vectors, one per row
        self.C = Gi.new_zeros(Gi.shape[0], self.rank)  # their coefficients

    def _pending(self, out, proj):  # out + V^T diag(C) proj, proj (b, k): the pending terms' share
        V = self.V[:, :self.k]
        return out + torch.bmm(V.transpose(1, 2), (self.C[:, :self.k] * proj)[..., None]).squeeze(-1)

    def matvec(self, x):  # (b, K) -> (b, K)
        out = (torch.bmm(x[:, None, :], self.G0).squeeze(1) if self.symmetric
               else torch.bmm(self.G0, x[..., None]).squeeze(-1))
        return self._pending(out, torch.bmm(self.V[:, :self.k], x[..., None]).squeeze(-1)) if self.k else out

    def column(self, p):  # (b,) slots -> (b, K): column p of each row's inverse
        rr = torch.arange(len(p), device=p.device)
        out = self.G0[rr, p, :] if self.symmetric else self.G0[rr, :, p]
        return self._pending(out, self.V[rr, :self.k, p]) if self.k else out

    def rows(self, r):  # (len(r), K, K): the inverse of rows r, its pending terms applied (the others' left pending)
        V = self.V[r, :self.k]
        return torch.baddbmm(self.G0[r], V.transpose(1, 2) * self.C[r, None, :self.k], V) if self.k else self.G0[r]

    def add(self, v, coef):  # one rank-one term per row (coef 0: none)
        self.V[:, self.k] = v
        self.C[:, self.k] = coef
        self.k += 1
        if self.k == self.rank:
            self.flush()

    def flush(self):
        if self.k:
            V = self.V[:, :self.k]
            self.G0.baddbmm_(V.transpose(1, 2) * self.C[:, None, :self.k], V)
            self.V[:, :self.k] = 0
            self.k = 0

    def zero(self, rows, slots):  # the slot of a coefficient that left: its row and column are 0
        self.G0[rows, slots, :] = 0
        self.G0[rows, :, slots] = 0
        self.V[rows, :, slots] = 0

    def grow(self, extra: int):
        self.G0 = torch.nn.functional.pad(self.G0, (0, extra, 0, extra))
        self.V = torch.nn.functional.pad(self.V, (0, extra))

    def keep(self, rows):
        self.G0, self.V, self.C = self.G0[rows], self.V[rows], self.C[rows]


def _rank_one_update(G, Gi: _LazyInverse, idx, used, enter, leave, j_in, p_in, p_out, rows=None):
    """The inverse of B_J^T B_J after one event per row: entering (coefficient j_in into slot p_in)
    v = Gi g - e_p with g = B_J^T b_j and coefficient 1 / Schur complement; leaving (slot p_out)
    v = Gi e_p with -1 / Gi_pp; Gi += coef v v^T (added to ``Gi``'s pending terms). Returns (v, coef)."""
    rr = torch.arange(len(idx), device=idx.device)
    g = G.entries(j_in, idx, rows) * (used & enter[:, None])
    q = Gi.matvec(g)
    schur = G.schur(j_in, g, q, rows)
    q[rr, p_in] -= 1
    col = Gi.column(p_out)
    v = torch.where(enter[:, None], q, col)
    coef = torch.where(enter, 1 / schur, torch.where(leave, -1 / col[rr, p_out], 0.0))
    coef = torch.where(torch.isfinite(coef), coef, 0.0)
    Gi.add(v, coef)
    return v, coef


def _move_support(idx, used, active, last, w, d, Gi: _LazyInverse, ei, li, p_in, j_in, p_out):
    """In place, one path event per row: rows ``ei`` take coefficient j_in into free slot p_in;
    rows ``li`` drop the coefficient in slot p_out (its w, direction and inverse row and column
    zeroed; ``last`` remembers it so it does not re-enter at once)."""
    idx[ei, p_in[ei]] = j_in[ei]
    used[ei, p_in[ei]] = True
    active[ei, j_in[ei]] = True
    last[ei] = -1
    jl, pl = idx[li, p_out[li]], p_out[li]
    used[li, pl] = False
    active[li, jl] = False
    w[li, jl] = 0
    d[li, pl] = 0
    Gi.zero(li, pl)
    last[li] = jl


class _RowsGram:
    """Entries of B^T B from the support slots' held rows of B^T (``rows``, (b, K, m)) and B^T (n, m), in B^T's
    precision: what ``_rank_one_update`` reads on the eps-path (no n x n Gram)."""

    def __init__(self, Bt: torch.Tensor):
        self.Bt = Bt

    def entries(self, j, idx, rows):  # (as a row vector times rows^T: 2.2 against 7.0 ms, 64 x 500 x 500 float32)
        return torch.bmm(self.Bt[j][:, None, :], rows.transpose(1, 2)).squeeze(1)

    def schur(self, j, g, q, rows):  # as ||b_j - B_J q||^2, not ||b_j||^2 - g^T q: near a square B_J (the eps-path's
        # supports fill m) the difference cancels (0.015 of ||b_j||^2 at 499 of 500), which float32 does not survive;
        # the norm's error is second order in q's
        return (self.Bt[j] - torch.bmm(q[:, None, :], rows).squeeze(1)).double().pow(2).sum(1).to(q.dtype)


EPS_PATH_CAP = 0.968  # the eps-path's start keeps at most this x m of w0's largest coefficients (and m - 1 - m / 32)
EPS_PATH_COMPACT = 0.75  # finished rows leave the path's batch once its live rows are down to this part of it
# (0.5, 0.9: no faster)
EPS_PATH_REFINE = 6  # most iterative refinements of the eps-path's final solve (residuals in float64)


def _eps_path(Bd, Btd, Brows, Bright, Y, lam, w0, max_steps, onednn=False):
    """The exact Lasso from a nearby point, by the eps-path (a warm-started homotopy; ADMM's z after a few
    hundred iterations, where its support misses a few of the optimum's coefficients and holds a few
    extra).

    w0 is the exact solution of the Lasso with the linear term - (1 - eps) u^T w added at eps = 0, for the
    u that makes it so (on w0's support u_j = c_j - lam sign(w0_j), off it u_j = c_j, so that every inactive
    correlation starts at 0; c = B^T (y - B w0)); the path follows that solution as eps goes from 0 to 1, one support
    event (a coefficient entering or leaving) per step, batched over rows, with the inverse of B_J^T B_J
    updated by one rank-one term per step, as the lambda-path does (``_homotopy_chunk``). A coefficient at
    zero with a direction against its sign leaves at once. The path's products, its Gram and inverse are
    float32 (from the held rows of B^T on the support, ``_RowsGram``: no n x n Gram); w and the correlations
    are float64. At eps = 1 each row's solution on its final support and signs is solved by iterative
    refinement with float64 residuals, the path's inverse as the preconditioner.

    Bd (m, n) and Btd (n, m) float64; Brows (n, m): B^T in the path's precision (its Gram, inverse and
    directions: float32, or float64 where float32 fails, near a square B_J); Bright: B applied from the right to
    rows (``x @ Bright``: B in float32 or float64, or an ``OneDNNRight``); Y (b, m) float64, w0 (b, n);
    ``onednn``: the supports' Grams by oneDNN (float32 Brows).
    Returns w (b, n) float64 and steps (b,) (rows that reached ``max_steps`` return the exact solution on
    their support then, and their certificate tells; rows whose factorisation failed, or whose support came
    within one of m in float32, return w0 with ``steps`` -1)."""
    m, n = Bd.shape
    b, dev, f64, f32 = Y.shape[0], Y.device, torch.float64, Brows.dtype  # (f32: the path's precision)
    adt = torch.float32 if isinstance(Bright, OneDNNRight) else Bright.dtype
    inf = float("inf")
    w0 = w0.to(f64)
    c0 = Y @ Bd  # B^T y
    cnt = (w0 != 0).sum(1)
    cap = min(m - 1 - m // 32, int(EPS_PATH_CAP * m))
    if bool((cnt > cap).any()):  # B_J must have full column rank: the largest cap coefficients
        thr = w0.abs().topk(cap, 1).values[:, -1:]
        w0 = torch.where((cnt <= cap)[:, None] | (w0.abs() >= thr), w0, 0.0)
        cnt = (w0 != 0).sum(1)
    act0 = w0 != 0
    Kc = min(m, max(64, int(cnt.max()) + 32))
    idx = torch.argsort(act0.to(torch.int8), dim=1, descending=True, stable=True)[:, :Kc]
    used = act0.gather(1, idx)
    sgn = torch.sign(w0.gather(1, idx)) * used
    c = c0 - (w0 @ Btd) @ Bd
    S = torch.zeros_like(w0).scatter_add_(1, idx, sgn * used)
    # the perturbation: on the support what makes w0 optimal; off it all of c, so that every inactive correlation
    # starts at 0, strictly inside [-lam, lam] (not with those beyond it at the edge, where each entered at eps = 0 and
    # many left again at once: 64 val faces at m = 500, 21.6 steps on average and 74 at most against 16.6 and 36, and
    # 3 faces whose supports reached m - 1, where the float32 inverse failed, against none)
    u = torch.where(act0, c - lam * S, c)
    R = Brows[idx]  # (b, Kc, m): the slots' rows of B^T
    uf = used.to(f32)
    mask = uf[:, :, None] * uf[:, None, :]
    if onednn and f32 == torch.float32:  # B_J^T B_J per row by oneDNN (64 x 500 x 500 float32: 50 against 97 ms
        GJ = torch.stack([onednn_linear(R[i], R[i]) for i in range(b)])
    else:
        GJ = torch.bmm(R, R.transpose(1, 2))  # as one batched product)
    L, info = torch.linalg.cholesky_ex(GJ.mul_(mask).add_(torch.diag_embed(1 - uf)))
    del GJ
    Gi = _LazyInverse(torch.cholesky_inverse(L) * mask, HOMOTOPY_LAZY, symmetric=True)
    del L
    G = _RowsGram(Brows)
    w, h, active = w0.clone(), c - u, act0.clone()
    eps = torch.zeros(b, dtype=f64, device=dev)
    last = torch.full((b,), -1, dtype=torch.long, device=dev)
    steps = torch.zeros(b, dtype=torch.long, device=dev)
    steps[info != 0] = -1
    uJ = (u.gather(1, idx) * used).to(f32)
    d = Gi.matvec(uJ)  # dw_J / d eps
    rows = (info == 0).nonzero().squeeze(1)
    # each row's final support, signs and inverse (for the refinement), written as it finishes
    o_idx = torch.zeros(b, m, dtype=torch.long, device=dev)
    o_used = torch.zeros(b, m, dtype=torch.bool, device=dev)
    o_sgn = torch.zeros(b, m, dtype=f64, device=dev)
    o_Gi = torch.zeros(b, m, m, dtype=f32, device=dev)
    w_out = w0.clone()
    if len(rows) < b:  # (a failed factorisation: rare)
        idx, used, sgn, d, uJ, R, w, h, active, u, eps, last = (
            t[rows] for t in (idx, used, sgn, d, uJ, R, w, h, active, u, eps, last))
        Gi.keep(rows)
    live = torch.ones(len(rows), dtype=torch.bool, device=dev)  # rows still on their path
    for it in range(max_steps + 1):
        if not bool(live.any()):
            break
        if Kc < m and bool(used.all(1).any()):  # a support fills the slots: more of them
            grow = min(m, 2 * Kc) - Kc
            idx, used, sgn, d, uJ = (torch.nn.functional.pad(t, (0, grow)) for t in (idx, used, sgn, d, uJ))
            R = torch.nn.functional.pad(R, (0, 0, 0, grow))
            Gi.grow(grow)
            Kc += grow
        dJ = d * used
        a = torch.bmm(dJ[:, None, :], R).squeeze(1).to(adt) @ Bright  # B^T B_J d_J; e = u - a = dh / d eps
        g_in, j_in = _kernels.eps_entering(h, a, u, active, lam, last)
        g_in = torch.where(used.all(1) & (Kc == m), inf, g_in.clamp_min(0))
        wJ = w.gather(1, idx)
        dd = d.to(f64)
        # a coefficient leaves where it reaches 0, and at once where it is 0 with a direction against its sign (an
        # entered or started coefficient the path would otherwise carry with the wrong sign)
        g_out, p_out = torch.where(used & ((wJ * dd < 0) | ((wJ == 0) & (sgn * dd < 0))), (-wJ / dd).nan_to_num(0.0),
                                   inf).min(1)
        gam = torch.minimum(torch.minimum(g_in, g_out), 1 - eps).masked_fill_(~live, 0.0)
        end = (1 - eps <= gam) | (it == max_steps)
        leave, p_in = live & ~end & (g_out <= g_in), (~used).to(torch.int8).argmax(1)
        enter = live & ~end & ~leave
        w.scatter_add_(1, idx, gam[:, None] * dJ.to(f64))
        _kernels.eps_move(h, a, u, gam)
        eps = eps + gam
        v, coef = _rank_one_update(G, Gi, idx, used, enter, leave, j_in, p_in, p_out, R)
        u_old = uJ.clone()
        ei, li = enter.nonzero().squeeze(1), leave.nonzero().squeeze(1)
        sgn[ei, p_in[ei]] = torch.sign(h[ei, j_in[ei]])
        uJ[ei, p_in[ei]] = u[ei, j_in[ei]].to(f32)
        sgn[li, p_out[li]] = 0
        uJ[li, p_out[li]] = 0
        d += coef[:, None] * v * (v * torch.where(enter[:, None], uJ, u_old)).sum(1, keepdim=True)
        _move_support(idx, used, active, last, w, d, Gi, ei, li, p_in, j_in, p_out)
        R[ei, p_in[ei]] = Brows[j_in[ei]]
        steps[rows[~end & live]] += 1
        if f32 == torch.float32:  # a support within one of m (B_J about square): float32's inverse is too far off
            square = (live & ~end & (used.sum(1) >= m - 1)).nonzero().squeeze(1)  # (the caller's float64 path)
            if len(square):
                steps[rows[square]] = -1
                live[square] = False
        fin = (end & live).nonzero().squeeze(1)
        if len(fin):  # finished rows: their support, signs, inverse and point out; they stay in the batch (still)
            r = rows[fin]  # until a quarter of it has finished (each compaction copies the inverses and held rows)
            o_idx[r, :Kc], o_used[r, :Kc], o_sgn[r, :Kc] = idx[fin], used[fin], sgn[fin]
            o_Gi[r, :Kc, :Kc] = Gi.rows(fin)
            w_out[r] = w[fin]
            live[fin] = False
            nlive = int(live.sum())
            if nlive <= EPS_PATH_COMPACT * len(rows):
                keep = live.nonzero().squeeze(1)
                rows = rows[keep]
                Gi.keep(keep)
                idx, used, sgn, d, uJ, R, w, h, active, u, eps, last, live = (
                    t[keep] for t in (idx, used, sgn, d, uJ, R, w, h, active, u, eps, last, live))
    # each finished row: the exact solution on its final support and signs, (B_J^T B_J) w_J = B_J^T y - lam s, by
    # iterative refinement (float64 residuals from two products with B; the path's inverse applied in float32)
    done = (steps >= 0).nonzero().squeeze(1)
    if len(done):
        every = len(done) == b  # (no copies of the inverses where every row finished)
        ix, uf64, Gf = ((o_idx, o_used.to(f64), o_Gi) if every else (o_idx[done], o_used[done].to(f64), o_Gi[done]))
        rhs = ((c0 if every else c0[done]).gather(1, ix) - lam * (o_sgn if every else o_sgn[done])) * uf64
        scale = rhs.abs().amax(1)
        # from the path's own point on its support (its float32 directions leave it about 1e-6 off: one refinement
        # fewer than from 0)
        w_best = w_out[done]
        wJ = w_best.gather(1, ix) * uf64
        res = rhs - ((w_best @ Btd) @ Bd).gather(1, ix) * uf64
        best = res.abs().amax(1)  # each row's largest residual entry at its best point so far
        for _ in range(EPS_PATH_REFINE):  # (all rows each time: a (b, K, K) gather of the refining ones cost more)
            wJ += torch.bmm(res.to(f32)[:, None, :], Gf).squeeze(1).to(f64) * uf64
            wd = torch.zeros(len(done), n, dtype=f64, device=dev).scatter_add_(1, ix, wJ)
            res = rhs - ((wd @ Btd) @ Bd).gather(1, ix) * uf64
            size = res.abs().amax(1)
            better = size < best
            best = torch.where(better, size, best)
            w_best[better] = wd[better]
            # until no row's residual falls any more or each is at float64's level (a row whose residual grows has
            # the wrong support or an inverse too far off: its best point stays, and its certificate tells)
            if not bool((better & (size > 1e-12 * scale)).any()):
                break
        w_out[done] = w_best
    return w_out, steps


def _homotopy_chunk(B, Bt, G, Y, lam, bar=None, saved=None, save=None, max_steps=None, products=None):
    """Follow the path of every row of Y (b, m) from its lam_max down to ``lam``.

    B (m, n) and Bt (n, m) in float64, G the float64 ``_Gram``. ``products``: B and Bt in the
    precision of a step's two products with them (default B and Bt: float64); everything else is
    float64 and the correlations are recomputed exactly at every re-anchoring. ``saved``: a state
    from ``save`` to resume from (it holds the path at a re-anchoring point, so the resumed run
    repeats the uninterrupted one step for step). Returns w (b, n) float64 (the exact solution on
    each row's final support and signs), steps (b,), ok (b,) (False: a factorisation needed a
    ridge) and the final state."""
    m, n = B.shape
    b, K, dev, f64 = Y.shape[0], m, Y.device, G.dtype
    Bd, Btd = B.to(f64), Bt.to(f64)
    Bp, Btp = products if products is not None else (Bd, Btd)
    pdt = Bp.dtype
    c0 = Y.to(f64) @ Bd  # B^T y
    if saved is None:  # full-size path state; the running rows' is copied back at each refresh
        lam0 = c0.abs().amax(1)
        st = {"idx": torch.zeros(b, K, dtype=torch.long, device=dev),
              "used": torch.zeros(b, K, dtype=torch.bool, device=dev),
              "sgn": torch.zeros(b, K, dtype=f64, device=dev),
              "last": torch.full((b,), -1, dtype=torch.long, device=dev),
              "steps": torch.zeros(b, dtype=torch.long, device=dev),
              "done": lam0 <= lam, "lamb": lam0.clamp_min(lam), "Kc": torch.tensor(min(K, 64))}
        j0 = c0.abs().argmax(1)
        st["idx"][:, 0] = j0
        st["used"][:, 0] = ~st["done"]
        st["sgn"][:, 0] = torch.where(st["done"], 0.0, torch.sign(c0.gather(1, j0[:, None]).squeeze(1)))
    else:
        st = saved
    rows = (~st["done"]).nonzero().squeeze(1)
    # the working arrays hold Kc slots (grown by doubling as supports grow): the (b, Kc, Kc) inverse
    # is what a step reads and writes, so it is kept no larger than the supports need
    Kc = int(st["Kc"])
    idx, used, sgn = (st[k][rows, :Kc] for k in ("idx", "used", "sgn"))
    last, steps, lamb = (st[k][rows] for k in ("last", "steps", "lamb"))
    ok_all = torch.ones(b, dtype=torch.bool, device=dev)
    inf = float("inf")
    while len(rows):
        # re-anchor exactly (also where a resumed run starts): inverse on the support, w, correlations
        Gi, w, ok = _support_solution(G, c0[rows], idx, used, sgn, lamb)
        ok_all[rows] &= ok
        # a coefficient that has just entered is zero on the path: rounding must not give it the
        # wrong sign (it would leave again at once)
        S = torch.zeros_like(w).scatter_add_(1, idx, sgn * used)
        w = torch.where(w * S < 0, 0.0, w)
        c = c0[rows] - (w @ Btd) @ Bd
        # (scatter_add: free slots hold index 0 too, and must not overwrite a used slot's mark)
        active = torch.zeros(len(rows), n, dtype=torch.int32, device=dev).scatter_add_(1, idx, used.int()) > 0
        d = (Gi @ sgn[..., None]).squeeze(-1)  # direction of w_J as lam decreases
        Gi = _LazyInverse(Gi, HOMOTOPY_LAZY, symmetric=HOMOTOPY_SYMMETRIC)
        # without a formed Gram (small m) the slots' rows of B^T, B^T[idx] (b, Kc, m), are held and updated as
        # coefficients enter, rather than gathered twice per step (for the Gram's entries and for B_J d_J)
        hold = G.G is None or len(rows) * K * m * (8 if pdt == f64 else 12) <= HOMOTOPY_ROWS_BYTES
        if hold:
            BJd = Btd[idx]
            BJp = BJd if pdt == f64 else Btp[idx]
        for _ in range(HOMOTOPY_REFRESH):
            if Kc < K and bool(used.all(1).any()):  # a support fills the slots: double them
                grow = min(K, 2 * Kc) - Kc
                idx, used, sgn, d = (torch.nn.functional.pad(t, (0, grow)) for t in (idx, used, sgn, d))
                Gi.grow(grow)
                if hold:  # the new slots hold index 0, as gathered
                    BJd = torch.cat([BJd, Btd[idx[:, Kc:]]], 1)
                    BJp = BJd if pdt == f64 else torch.cat([BJp, Btp[idx[:, Kc:]]], 1)
                Kc += grow
            dJ = d * used
            if hold:  # B_J d_J from the held rows of B^T
                u = torch.bmm(dJ[:, None, :].to(pdt), BJp).squeeze(1)
            elif len(rows) * Kc < HOMOTOPY_GATHER * n:  # few rows: from the support's rows of B^T, gathered
                u = torch.bmm(dJ[:, None, :].to(pdt), Btp[idx]).squeeze(1)
            else:
                u = torch.zeros(len(rows), n, dtype=pdt, device=dev).scatter_add_(1, idx, dJ.to(pdt)) @ Btp
            a = u @ Bp  # B^T B_J d_J (in the products' precision; used in float64); a_J = s
            # the next coefficient to enter: |c_j - g a_j| = lam - g over the inactive j, except the one that just
            # left (it does not re-enter at once); one fused pass over (rows, n) (``invgan._kernels``)
            g_in, j_in = _kernels.entering(c, a, active, lamb, last)
            g_in = g_in.clamp_min(0)
            # with m coefficients in the support no further one enters (B_J is square: c_j = lam a_j)
            g_in = torch.where(used.all(1) & (Kc == K), inf, g_in)
            # the next coefficient to leave: w_j + g d_j = 0
            wJ = w.gather(1, idx)
            g_out, p_out = torch.where(used & (wJ * d < 0), -wJ / d, inf).min(1)
            g_end = lamb - lam
            gam = torch.minimum(torch.minimum(g_in, g_out), g_end)
            end = g_end <= gam
            leave = ~end & (g_out <= g_in)
            p_in = (~used).to(torch.int8).argmax(1)
            enter = ~end & ~leave
            w.scatter_add_(1, idx, gam[:, None] * dJ)
            _kernels.step_correlations(c, a, gam)  # c -= gam a
            lamb = torch.where(end, torch.full_like(lamb, lam), lamb - gam)
            v, coef = _rank_one_update(G, Gi, idx, used, enter, leave, j_in, p_in, p_out,
                                       BJd if hold else None)
            s_old = sgn.clone()
            sgn[enter, p_in[enter]] = torch.sign(c[enter, j_in[enter]])
            sgn[leave, p_out[leave]] = 0
            d += coef[:, None] * v * (v * torch.where(enter[:, None], sgn, s_old)).sum(1, keepdim=True)
            ei, li = enter.nonzero().squeeze(1), leave.nonzero().squeeze(1)
            _move_support(idx, used, active, last, w, d, Gi, ei, li, p_in, j_in, p_out)
            if hold:  # an entering coefficient's row into its slot (a slot left keeps its row, as idx does)
                BJd[ei, p_in[ei]] = Btd[j_in[ei]]
                if BJp is not BJd:
                    BJp[ei, p_in[ei]] = Btp[j_in[ei]]
            steps += 1
            if bar is not None:
                bar.update(1)
            if max_steps is not None:
                end = end | (steps >= max_steps)
            if bool(end.any()):  # finished rows leave the batch
                fin, keep = end.nonzero().squeeze(1), (~end).nonzero().squeeze(1)
                for k, v_ in (("idx", idx), ("used", used), ("sgn", sgn)):
                    st[k][rows[fin], :Kc] = v_[fin]
                for k, v_ in (("last", last), ("steps", steps), ("lamb", lamb)):
                    st[k][rows[fin]] = v_[fin]
                st["done"][rows[fin]] = True
                rows, idx, used, sgn, last, steps, lamb = (t[keep] for t in (rows, idx, used, sgn, last, steps, lamb))
                Gi.keep(keep)
                w, c, d, active = w[keep], c[keep], d[keep], active[keep]
                if hold:
                    BJd = BJd[keep]
                    BJp = BJd if pdt == f64 else BJp[keep]
                if not len(rows):
                    break
        for k, v_ in (("idx", idx), ("used", used), ("sgn", sgn)):
            st[k][rows, :Kc] = v_
        for k, v_ in (("last", last), ("steps", steps), ("lamb", lamb)):
            st[k][rows] = v_
        st["Kc"] = torch.tensor(Kc)
        if save is not None and len(rows):
            save(st)
    # every row: the exact solution on its final support and signs, at its final lam
    _, out, ok = _support_solution(G, c0, st["idx"], st["used"], st["sgn"], st["lamb"], inverse=False)
    return out, st["steps"], ok_all & ok, st


def check_solver(solver: str, physics: Physics) -> None:
    """Raise the one error for a named solver that cannot run on ``physics`` (before any work)."""
    check_solver_name(solver)
    if solver in ("homotopy", "admm"):
        check_dense(physics, solver)


def lasso_solve(y: torch.Tensor, physics: Physics, basis="dct", alpha: float | None = None, solver: str = "auto",
                tol: float = 1e-6, max_iter: int = 10000, clip: bool = True, progress: bool = False,
                state: SolveState | None = None, w0: torch.Tensor | None = None) -> tuple[LassoResult, str]:
    """The Lasso by ``solver`` ("auto": ``choose_solver`` with this alpha): ``lasso_homotopy``,
    ``lasso_admm`` or ``lasso_fista`` (``tol`` and ``max_iter`` for the last two; ``w0``, a warm
    start, for FISTA only). Returns the result and the solver that ran; for a named basis with no
    ``alpha`` the choice is made at the paper's alpha, the one that is solved (as ``Lasso(basis)``)."""
    alpha = resolve_alpha(basis, alpha)
    solver = choose_solver(solver, physics, alpha, batch=y.shape[0])
    if solver == "homotopy":
        return lasso_homotopy(y, physics, basis, alpha, clip=clip, progress=progress, state=state), solver
    if solver == "admm":
        return lasso_admm(y, physics, basis, alpha, tol=tol, max_iter=max_iter, clip=clip, progress=progress,
                          state=state), solver
    return lasso_fista(y, physics, basis, alpha, tol=tol, max_iter=max_iter, clip=clip, progress=progress,
                       state=state, w0=w0), solver


def _lasso_homotopy(y, physics, basis, alpha, clip, progress, state, max_steps):
    from tqdm import tqdm

    basis, alpha, img_shape = _check_inputs(y, physics, basis, alpha, 1.0)
    check_dense(physics, "homotopy")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise InvganError(f"max_steps must be a whole number >= 1, got {max_steps!r}")
    Bm = dense_matrix(physics, basis, img_shape)
    m, nb, dev = physics.m, y.shape[0], y.device
    lam = m * alpha
    Bd = Bm.to(y.dtype).double()  # the problem's B, held in float64 (a step's two products with it may run in
    Btd = Bd.T.contiguous()        # float32: HOMOTOPY_F32, with the float64 re-run where they went astray)
    G = _Gram(Bd, Btd)  # B^T B (n, n), float64, formed if it fits in GRAM_BYTES
    Y = y.reshape(nb, -1)
    key = None
    if state is not None:
        key = {"solver": "lasso-homotopy-2", "basis": getattr(basis, "name", type(basis).__name__), "alpha": alpha,
               "max_steps": max_steps, "refresh": HOMOTOPY_REFRESH, "f32": HOMOTOPY_F32, "recheck": HOMOTOPY_RECHECK,
               "physics": type(physics).__name__, "m": m, "y": fingerprint(y)}
    saved = state.load(key, dev) if state is not None else None
    chunk = max(1, int(HOMOTOPY_BYTES // (8 * m * m)))
    bar = tqdm(desc=f"lasso-{getattr(basis, 'name', 'basis')} homotopy", unit="step", disable=not progress,
               leave=False)
    states = list(saved["chunks"]) if saved else []

    def solve(Yc, ci, products):  # chunk ci of the run's chunks (the states' order), resumable
        def save(st):
            if state.due():
                state.save(key, {"chunks": states[:ci] + [st]})

        prior = states[ci] if ci < len(states) else None
        w, s, ok, st = _homotopy_chunk(Bd, Btd, G, Yc, lam, bar, prior, save if state is not None else None,
                                       max_steps, products)
        states[ci:ci + 1] = [st]  # finished: a later chunk's saves keep it
        return w, s, ok

    # near basis pursuit (alpha <= ADMM_MAX_ALPHA: the wavelet's) float32 products took path events out of order
    # on 2 of 16 faces at m = 500, and re-running those costs more than float32 saves: float64 throughout there
    fast = (Bd.float(), Btd.float()) if HOMOTOPY_F32 and alpha > ADMM_MAX_ALPHA else None
    starts = range(0, nb, chunk)
    outs, steps, oks = zip(*[solve(Y[i:i + chunk], ci, fast) for ci, i in enumerate(starts)]) if nb else ((), (), ())
    w, steps, ok = torch.cat(outs), torch.cat(steps), torch.cat(oks)
    primal, dual = _primal_dual(Y.double(), w, Bd, Btd, lam)
    gap = _relative_gap(primal, dual)
    if fast is not None and max_steps is None:  # images the float32 products led astray: again in float64
        # (as chunks after the first pass's, so that a killed run resumes them too)
        redo = (gap > HOMOTOPY_RECHECK).nonzero().squeeze(1)
        for ci, i in enumerate(range(0, len(redo), chunk), start=len(starts)):
            rows = redo[i:i + chunk]
            w[rows], steps[rows], ok[rows] = solve(Y[rows], ci, None)
        if len(redo):
            primal[redo], dual[redo] = _primal_dual(Y[redo].double(), w[redo], Bd, Btd, lam)
            gap = _relative_gap(primal, dual)
    bar.close()
    gap = gap.to(y.dtype)
    w = w.to(y.dtype).reshape(nb, *img_shape)
    x = basis.synthesis(w)
    if clip:
        x = x.clamp(-1, 1)
    return LassoResult(x, w, lasso_objective(y, physics, basis, w, alpha), gap, int(steps.max()) if nb else 0, steps)


ADMM_RHO = 0.3  # ADMM's penalty in the scaled problem 1/2 ||y - B w||^2 + lam ||w||_1 near basis pursuit (alpha at
# most ADMM_MAX_ALPHA: measured best of 0.03 to 2.4 on the wavelet at m = 2500 and 5000)
ADMM_RHO_LAM = 2.0  # ... and above ADMM_MAX_ALPHA (the DCT's alpha 0.1) rho = this x lam: the best rho grows with lam
# there (measured on the DCT, 16 val faces, tol 1e-4: 1.5 to 4 lam tried at m = 200, 500, 1000 and 2500) ...
ADMM_RHO_LAM_WIDE = 4.0  # ... and grows faster than lam where m is a large part of n: this x lam from m / n =
ADMM_RHO_WIDE = (0.25, 0.4)  # the second of these, log-linearly in m / n from ADMM_RHO_LAM at the first (64 val faces,
# DCT, tol 1e-4, a certificate at every iteration: mean iterations to 1e-4 at 2 / 3 / 4 / 6 x lam, m = 2500: 132 /
# 106 / 96 (a tail to 192) / -; 5000: 58 / 48 / 43 / -; 7500: 42 / - / 28 / 25; 10000: 34 / - / 23 / 20. Above
# about 6 x lam (m = 5000) to 12 x lam (7500, 10000) some faces stall at float32's rounding floor, and at m = 2500
# 3 x lam put that floor above tol 1e-5 for 3 of 64 faces: 0.83x at 1e-5 against 2 x lam, so 2 x lam stays there,
# to m = 3072 at 64x64 RGB)
ADMM_RHO_WIDER = (0.6, 6.0)  # ... and from this m / n this x lam (log-linearly from ADMM_RHO_LAM_WIDE at
# ADMM_RHO_WIDE[1]). 64 val faces, mean (largest) iterations at 4 against 6 x lam: m = 10000 tol 1e-4 24.0 (26)
# against 23.6 (24), tol 1e-5 31.5 (34) against 27.1 (31); m = 7500 tol 1e-4 28.7 (32) against 25.7 (29), tol 1e-5
# 37.4 (70) against 32.4 (37); with the residual dual points (tol 1e-4) m = 10000 27.8 (31) against 23.8 (26), 8 x
# lam 23.6 (24), 10 x lam 23.9 (33), m = 7500 32.2 (34) against 26.5 (29). At m = 5000 (m / n 0.41, 4.1 x lam
# here) 6 x lam gave a tail: 38.7 mean but 66 largest against 41.8 and 47
ADMM_RELAX = 1.7  # over-relaxation (Eckstein & Bertsekas; 1.5 to 1.8 is the usual range)
ADMM_CHECK = 100  # most iterations between certificates (and stopping tests)
ADMM_FIRST_CHECK = 60  # the first certificate after this many iterations, the second as many later; then the next
ADMM_CHECK_MIN = 20  # ... where the running images' median is predicted to reach tol from its gap's last rate of
# fall (log-linear), at least ADMM_CHECK_MIN and at most ADMM_CHECK iterations on (a certificate costs about 6
# iterations; at m = 2500 on the DCT most images finish near 140 iterations, where fixed checks at every 100 ran 200)
#: The w-step (B^T B + rho I)^-1 v costs 2 m (2 n + m) flops per image by Woodbury and 2 n^2 with the
#: n x n inverse formed once (B^T B: 2 n^2 m flops, then its Cholesky and inverse); the n x n form is
#: used where Woodbury costs more than this many times as much and the inverse fits in GRAM_BYTES
#: (at n = 12288: m >= 5937, the sweep's 7500 and 10000).
ADMM_GRAM_WORK = 1.2
ADMM_X_MAX_ALPHA = 1e-3  # the Woodbury w-step as two products with X = L^-1 B (m x n, one triangular solve, m^2 n flops
# to form) for alpha at most this, where ADMM runs thousands of iterations (near basis pursuit); above it (the DCT's
# alpha, tens to hundreds of iterations) with B and M = (B B^T + rho I)^-1, whose extra (m, m) product per iteration
# costs less than forming X there (wavelet m = 2500, 16 faces: 1.35x; DCT m = 5000, 64 faces: 0.91x with X)
ADMM_SPACING = 20  # iterations between the dual points that the extrapolation combines
ADMM_PROBES = 2  # a run's first this many checks certify only ADMM_PROBE_ROWS of its images (evenly spread), where
ADMM_PROBE_ROWS = 8  # it has more: they give the rate of fall that places the next check, which then certifies all.
# Few images finish there (m = 4000 to 7500, DCT, 64 faces: none at the first two checks, at iterations 20 and 22; m =
# 10000: 1 of 64), and a full check at m = 10000 costs about as much as 4 iterations of the batch
ADMM_F32 = True  # the iterations' products in float32 (the certificates stay float64): half the work and memory
# traffic; the w-step is written so that float32 loses nothing to cancellation (``lasso_admm``)
ADMM_NEWTON = True  # support Newton steps (``support_newton``) at some checks (alpha above ADMM_MAX_ALPHA only)
ADMM_NEWTON_GAP = 2e-4  # ... for the images whose relative gap is at most this (2e-3 tried more, failed, cost more)
ADMM_NEWTON_WORK = 10.0  # ... at the first check after every ceil(this x m^2 / n / ADMM_CHECK) x ADMM_CHECK
# iterations (m = 500: 300, m = 1000: 900, at n = 12288)
ADMM_SHORT_M = 4000  # above ADMM_X_MAX_ALPHA from this m runs are short (tens of iterations; at m = 2500 about 140, where
# the checks below cost more than they saved, 0.86x and 0.83x at tol 1e-4 and 1e-5 on 64 faces): there
ADMM_FIRST_CHECK_SHORT = 20  # ... the first check after this many (also with the float32 factors, ADMM_SETUP_F32_M, where
# the second comes as many later), the second ADMM_SHORT_STEP later, and each next
ADMM_SHORT_STEP = 2  # one where the median is predicted to reach tol, at least this many on: at any iteration, with a dual
# point of its own (m = 10000, 64 faces, 4 lam: 20 to 26 iterations, 23 on average, where dual points every
# ADMM_SPACING would certify at 40)
ADMM_SETUP_F32_M = 2500  # from this m, above ADMM_X_MAX_ALPHA, ADMM's m x m factorisations are made in float32 (A A^T,
# its Cholesky factors and inverses: at m = 10000 about 40 s of float64 against FISTA's whole 64-face run)
ADMM_RESIDUAL_DUAL = True  # with the float32 set-up (ADMM_SETUP_F32_M) and tol >= ADMM_RESIDUAL_DUAL_TOL the dual
# points are the residuals at ADMM's w, y - B w = rho (B B^T + rho I)^-1 (y - B q), from the w-step's own product
# M B q (no second factorisation, B B^T + ridge I, and no product or solves per dual point); else the least-squares
# preimages of rho u (P = (B B^T)^-1). The residuals lag the preimages (on 8 val faces at m = 10000, float64, their
# gap about 4x the preimages' at every iteration; extrapolating consecutive ones did worse) and, made from
# float32's M B q (a difference of two near vectors), they floor near a relative gap of 1e-5: at tol 1e-5, 64 val
# faces, m = 10000 they took 41.0 mean iterations (107 largest) against the preimages' 31.5 (34), 19.5 against 15.2 s
ADMM_RESIDUAL_DUAL_TOL = 1e-4  # (at tol 1e-4, m = 10000, 6 x lam: 23.8 mean iterations against 23.6, one
# factorisation fewer; m = 2500: the same iterations and bits)
ADMM_RESIDUAL_EXTRAPOLATE = True  # ... and, where runs are not short (ADMM_SHORT_M), the extrapolation of the last six
# consecutive ones as a second dual point (64 val faces, tol 1e-4: at m = 2500 140.0 mean iterations, 140 largest,
# against 141.6 and 160 without; where runs are short it cost a float64 product per check for 0 to 2 iterations:
# at m = 10000 the same 23.8, at 5000 41.5 against 43.8 with 8 checks against 6, 5.60 against 5.07 s)
CHOLESKY_SOLVE_BLOCK = 512  # columns per block of the float32 solves with a Cholesky factor by oneDNN
# (``_CholeskyInverse``; at m = 10000, 64 rows: 46, 48, 53 ms with 512, 1024, 2048)
ADMM_GRAM_BLOCK_ONEDNN = 1280  # rows per block of the float32 set-up's A A^T by oneDNN (``_gram_rows``; at m = 10000:
# 1024 rows 4.26 s, 1280 4.06, 2048 4.31)
ADMM_SPARSE_MAX_M = 1500  # above ADMM_X_MAX_ALPHA and up to this m, the product B q of the iteration as B z - B u:
# B z by ``_kernels.SparseProduct`` from z's few nonzeros (about 490 of 12,288 per row at m = 500), B u carried along
# in m-space (below) and made exactly at every ADMM_SPACING: one dense product per iteration instead of two
EPS_PATH = True  # above ADMM_X_MAX_ALPHA (the DCT's alpha) for m up to EPS_PATH_MAX_M: after EPS_PATH_AT iterations
# ADMM's z starts the eps-path (``_eps_path``) to the exact optimum; the images it certifies stop there, the rest go on
EPS_PATH_AT = 200  # (64 val faces at m = 500, tol 1e-4, against no path, paired, two rounds: from 150 / 175 / 200 /
# 250 iterations 1.74x / 1.90x / 1.95x / 1.83x; at 200 ADMM's support differs from the optimum's in about 21
# coefficients, the path takes 24.7 steps on average, 66 at most)
EPS_PATH_MAX_M = 750  # (the set-up, a Gram and inverse of each image's support, grows like m^3: 64 val faces, tol 1e-4,
# from 200 iterations, m = 700 1.45x, m = 1000 0.80x the time without the path)
EPS_PATH_MAX_FRACTION = 0.06  # ... and m / n up to this (measured at 64x64 RGB only, m / n = 0.04 to 0.057; where m is
# a larger part of n ADMM's runs are shorter: on small images it could finish before EPS_PATH_AT)
EPS_PATH_STEPS = 250  # the path's most steps per image (64 faces at m = 500, from 200 iterations: 66 at most)
ADMM_STALL = 10  # this x ADMM_CHECK iterations in which the running images' largest certified gap falls by less
# than 1%: the float32 iterations have reached their rounding floor, and the images left go on in float64
ADMM_STALL_SHORT = 30  # ... where runs are short (ADMM_SHORT_M): falls by less than half in this many iterations (a
# run that is not stuck halves its gap every 3 to 15 iterations there; float32's floor, near 1e-5 at m = 10000, shows
# as a slow creep). There the float64 iterations first take the float32 factors as they are (lifted to float64: no
# new factorisation, at m = 10000 about 50 s of float64 work), and only a second stall (ADMM_STALL x ADMM_CHECK
# iterations) makes the float64 ones


def _addmm_(v: torch.Tensor, c: torch.Tensor, W, alpha: float) -> torch.Tensor:
    """v += alpha c W in place, W a tensor or a matrix applied from the right (``OneDNNRight``)."""
    return v.addmm_(c, W, alpha=alpha) if torch.is_tensor(W) else v.add_(c @ W, alpha=alpha)


class _CholeskyInverse:
    """(L L^T)^-1 applied from the right to rows, ``c @ this`` = c L^-T L^-1, by two triangular solves
    (it stands where the formed inverse would in a product). Solved as (L L^T)^-1 c^T from the left, on
    c's transpose (a view): L^-1 first, then L^-T, both reading L as it is stored (at m = 10000, float32:
    99 against 119 ms for 64 rows and 54 against 136 ms for 6 rows with the right-hand solves on c).

    With ``onednn`` (a float32 L on the CPU) the two solves are blocked instead, ``CHOLESKY_SOLVE_BLOCK``
    columns at a time: each block's update from the blocks solved before it is one product by oneDNN
    (``onednn_linear``) with a row-major copy of L's panel left of it (for L^-1) or of L^T's right of it
    (for L^-T), made on the first use (L's size again, once), and only the block's own small triangle is
    solved by LAPACK. At m = 10000, 64 rows: 46 against 85 ms (6 rows: 15 against 35), with float32's
    relative error (4e-7 against 3e-7 from float64's solves)."""

    def __init__(self, L: torch.Tensor, onednn: bool = False):
        self.L = L
        self.onednn = onednn and L.dtype == torch.float32 and L.device.type == "cpu"
        self._panels = None

    def panels(self):
        if self._panels is None:
            L, bs = self.L, CHOLESKY_SOLVE_BLOCK
            starts = range(0, L.shape[0], bs)
            self._panels = ([L[j:j + bs, :j].contiguous() for j in starts],  # L's rows of block j, left of it
                            [L[j + bs:, j:j + bs].T.contiguous() for j in starts],  # L^T's, right of it
                            [L[j:j + bs, j:j + bs].contiguous() for j in starts])  # the diagonal blocks
        return self._panels

    def __rmatmul__(self, c: torch.Tensor) -> torch.Tensor:
        if not self.onednn:
            t = torch.linalg.solve_triangular(self.L, c.T, upper=False)  # L t = c^T
            return torch.linalg.solve_triangular(self.L.T, t, upper=True).T  # L^T s^T = t
        left, right, diag = self.panels()
        bs, m = CHOLESKY_SOLVE_BLOCK, self.L.shape[0]
        x = torch.empty_like(c)  # x = c L^-T: x L^T = c, block by block from the first
        for k, j in enumerate(range(0, m, bs)):
            r = c[:, j:j + bs] - onednn_linear(x[:, :j], left[k]) if j else c[:, j:j + bs]
            x[:, j:j + bs] = torch.linalg.solve_triangular(diag[k], r.T, upper=False).T
        s = torch.empty_like(c)  # s = x L^-1: s L = x, block by block from the last
        for k in reversed(range(len(diag))):
            j = k * bs
            r = x[:, j:j + bs] - onednn_linear(s[:, j + bs:], right[k]) if j + bs < m else x[:, j:j + bs]
            s[:, j:j + bs] = torch.linalg.solve_triangular(diag[k].T, r.T, upper=True).T
        return s


def _gram_rows(B: torch.Tensor, block: int = 2048, mirror: bool = True, onednn: bool = False,
               parts: int | None = None) -> torch.Tensor:
    """B B^T (m, m) from its lower block rows only (half the product's flops), mirrored; with
    ``mirror=False`` only its lower triangle (and diagonal) is set, the rest is left unset: enough for a
    Cholesky factorisation, which reads the lower triangle only (``_cholesky_lower_``). ``onednn``: the
    block products by oneDNN (float32 on the CPU, where ``invgan.runtime.onednn_products``; at m = 10000,
    n = 12288: 4.1 s against MKL's 7.6 s on the README's AMD EPYC, with 1280-row blocks). With oneDNN a
    block row's part left of its diagonal block is one product and the diagonal block is made in ``parts``
    row slices (``GRAM_DIAG_PARTS``), each up to the diagonal only, so that less of the block's upper half
    is computed and thrown away (at m = 10000, 1280-row blocks: 3.1 to 3.4 s against 3.2 to 3.7 s; the
    same bits, as oneDNN's sums do not depend on the product's shape there; MKL's float64 ones do, by
    1e-14, so its block rows stay one product each)."""
    m = B.shape[0]
    parts = GRAM_DIAG_PARTS if parts is None else parts
    K = torch.empty(m, m, dtype=B.dtype, device=B.device)
    for i in range(0, m, block):
        e = min(i + block, m)
        if not onednn:
            K[i:e, :e] = B[i:e] @ B[:e].T
            continue
        if i:  # (oneDNN reads B's rows where they are: ``onednn_linear``)
            K[i:e, :i] = onednn_linear(B[i:e], B[:i])
        step = -(-(e - i) // parts)
        for s in range(i, e, step):  # the diagonal block's row slices, each up to the diagonal
            t = min(s + step, e)
            K[s:t, i:t] = onednn_linear(B[s:t], B[i:t])
    if not mirror:
        return K
    for i in range(0, m, block):  # the upper triangle from the lower, in place, block by block (exactly symmetric)
        K[:i, i:i + block] = K[i:i + block, :i].T
        d = K[i:i + block, i:i + block]
        d.copy_(d.tril() + d.tril(-1).T)
    return K


def _cholesky_lower_(K: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """The lower Cholesky factor L of K (m, m; symmetric positive definite, only its lower triangle
    read), made in K's own memory, its upper triangle then set to 0. On the CPU in float32 or float64
    by LAPACK's potrf in place (scipy's LAPACK), with the upper triangle zeroed row block by row block:
    no copy of K and no strided pass over it, which ``torch.linalg.cholesky`` makes (at m = 10000 in
    float32: 1.5 s against 2.0 s, and 0.4 GB less). Raises ``torch.linalg.LinAlgError`` as
    ``torch.linalg.cholesky`` does where K is not positive definite. Elsewhere (another device or
    dtype, a non-contiguous K): ``torch.linalg.cholesky``, K left as it was."""
    if K.device.type != "cpu" or K.dtype not in (torch.float32, torch.float64) or not K.is_contiguous():
        return torch.linalg.cholesky(K)
    from scipy.linalg import lapack

    a = K.numpy().T  # K row-major = K^T column-major: its lower triangle is this array's upper one
    potrf = lapack.spotrf if K.dtype == torch.float32 else lapack.dpotrf
    U, info = potrf(a, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        raise torch.linalg.LinAlgError(f"linalg.cholesky: The factorization could not be completed because the "
                                       f"input is not positive-definite (the leading minor of order {info} is "
                                       f"not positive-definite).")
    if not np.shares_memory(U, a):  # (scipy copied: take its result)
        K.copy_(torch.from_numpy(U.T))
    for i in range(0, K.shape[0], block):  # the strict upper triangle, row block by row block
        K[i:i + block, i + block:] = 0
        d = K[i:i + block, i:i + block]
        d.copy_(d.tril())
    return K


def _shifted_cholesky_(K: torch.Tensor, shift: float) -> torch.Tensor:
    """The lower Cholesky factor of K + shift I, made in K's own memory (``_cholesky_lower_``)."""
    K.diagonal().add_(shift)
    return _cholesky_lower_(K)


def _shifted_factors(K: torch.Tensor, rho: float, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The lower Cholesky factors of K + rho I and of K + ridge I (K symmetric, its lower triangle read,
    as ``_gram_rows(mirror=False)`` leaves it), each made in place (``_shifted_cholesky_``): the first in a
    copy of K, the second in K's own memory. ADMM's w-step factor and its dual points' one."""
    return _shifted_cholesky_(K.clone(), rho), _shifted_cholesky_(K, ridge)


class _SetupCache:
    """ADMM's set-up for one operator and basis, kept for the next solve on them: B = A Psi and, where
    the set-up is float32 (``ADMM_SETUP_F32_M``: the DCT's alpha from m = 2500), the factorisations made
    from it (A A^T + rho I's Cholesky factor and the dual points' one, with their solves' panels), under
    the settings they were made with (rho, block, oneDNN). One slot: a solve on another
    operator, basis or dtype empties it first (so no two set-ups are held at once), and it empties
    itself when the operator's matrix is freed or changed in place. Everything in it is made from B
    alone by the same code in the same order, so a solve gives the same bits with or without it (what
    it saves is the time: at m = 10000 with the DCT, A A^T and two Cholesky factorisations, 7 of 16 s
    for 64 faces). ``clear_setup_cache()`` empties it."""

    slot: dict = {}

    @classmethod
    def entry(cls, physics, basis, img_shape, dtype) -> dict | None:
        """The slot's entries for this problem (a dict to fill; emptied first if it held another), or
        None where the problem cannot be told apart from another (a basis other than invgan's own)."""
        A = getattr(physics, "matrix", None)
        if type(basis) not in (DCTBasis, HaarBasis) or not torch.is_tensor(A):
            return None
        key = (type(basis).__name__, tuple(basis.shape), getattr(basis, "level", None), tuple(img_shape), dtype,
               A.device, A.dtype, tuple(A.shape))
        slot = cls.slot
        if slot and (slot["ref"]() is not A or slot["version"] != A._version or slot["key"] != key):
            slot.clear()
        if not slot:
            slot.update(key=key, version=A._version, entries={},
                        ref=weakref.ref(A, lambda _, s=slot: s.clear()))
        return slot["entries"]


def clear_setup_cache() -> None:
    """Free ADMM's kept set-up (``_SetupCache``: B = A Psi and its float32 factorisations, at m = 10000
    with the DCT about 2.1 GB; B alone, 0.5 GB, for the float64 set-ups)."""
    _SetupCache.slot.clear()


def admm_rho(alpha: float, lam: float, fraction: float = 0.0) -> float:
    """ADMM's default penalty for l1 weight ``alpha`` (lam = m alpha in the scaled problem) and
    ``fraction`` = m / n: ``ADMM_RHO`` near basis pursuit (alpha <= ``ADMM_MAX_ALPHA``), else c x lam with
    c = ``ADMM_RHO_LAM`` up to m / n = ``ADMM_RHO_WIDE[0]``, ``ADMM_RHO_LAM_WIDE`` from ``ADMM_RHO_WIDE[1]``,
    log-linear in m / n between."""
    if alpha <= ADMM_MAX_ALPHA:
        return ADMM_RHO
    knots = ((ADMM_RHO_WIDE[0], ADMM_RHO_LAM), (ADMM_RHO_WIDE[1], ADMM_RHO_LAM_WIDE), ADMM_RHO_WIDER)
    c = knots[0][1]
    for (lo, c_lo), (hi, c_hi) in zip(knots, knots[1:]):  # log-linear in m / n between two knots
        if fraction > lo:
            c = c_lo + min(math.log(fraction / lo) / math.log(hi / lo), 1.0) * (c_hi - c_lo)
    return c * lam


def admm_gram_form(m: int, n: int) -> bool:
    """Whether ADMM's w-step uses the formed n x n inverse (True) or Woodbury's m x m one."""
    return 8 * n * n <= GRAM_BYTES and m * (2 * n + m) > ADMM_GRAM_WORK * n * n


def lasso_admm(y: torch.Tensor, physics: Physics, basis="dct", alpha: float | None = None,
               tol: float = 1e-6, max_iter: int = 10000, rho: float | None = None, relax: float = ADMM_RELAX,
               clip: bool = True, progress: bool = False, state: SolveState | None = None) -> LassoResult:
    """The Lasso by ADMM with one cached factorisation, batched over images, with a certified gap.

    For an explicit-matrix operator B = A Psi (``dense_matrix``) the w-step of ADMM (Boyd et al.
    2011, section 6.4), (B^T B + rho I)^-1 v, is by Woodbury (v - B^T (B B^T + rho I)^-1 B v) / rho,
    and B B^T = A A^T because Psi is orthonormal: one m x m Cholesky L L^T = B B^T + rho I, shared by
    every image, and X = L^-1 B turn an iteration into two products with X (B^T (B B^T + rho I)^-1 B =
    X^T X; above ``ADMM_X_MAX_ALPHA``, where runs are short, with B and (B B^T + rho I)^-1 instead, and
    from m = ``ADMM_SETUP_F32_M`` with A A^T and these factors made in float32 for the float32
    iterations). Near basis pursuit, where m is large against n (``admm_gram_form``: at 64x64 RGB from
    m = 5937), the n x n inverse (B^T B + rho I)^-1 is formed once instead and an iteration is one
    product with it.
    Over-relaxed (``relax``), then z = soft(w + u, lam / rho), u += w - z. The w-step is computed as
    (B^T B + rho I)^-1 (B^T y + rho q) = w_y + q - X^T X q, q = z - u, with w_y the
    same for every iteration (push-through identity): no term is amplified by ||B||^2 / rho, so with
    ``ADMM_F32`` its two products run in float32 (the n x n form: q (I - X^T X),
    one product; above ``ADMM_X_MAX_ALPHA`` up to m = ``ADMM_SPARSE_MAX_M``, B q = B z - B u with B z from
    z's few nonzeros and B u carried along in m-space, so one dense product); the certificates are float64, and images still running when the largest certified
    gap stops falling (``ADMM_STALL`` x ``ADMM_CHECK`` iterations; where runs are short, ``ADMM_SHORT_M``, when
    it does not halve in ``ADMM_STALL_SHORT``, first with the float32 factors lifted) go on in float64. Near basis pursuit (the
    wavelet's small alpha at large m) this converges where FISTA stalls: at m = 2500 (4 val faces)
    its objective is within 3e-6 of the exact optimum after 5,000 iterations, FISTA's certified gap
    is still 0.09 after 10,000.

    The certificate: ADMM's scaled dual u gives rho u, a subgradient of lam ||.||_1 at the limit;
    its least-squares preimage theta = (B B^T)^-1 B rho u (a second cached Cholesky) is a dual point,
    and so is the extrapolation of the last six such points taken ``ADMM_SPACING`` iterations apart
    (Anderson-type, as celer extrapolates residuals; Massias et al. 2018). At each check (the first
    after ``ADMM_FIRST_CHECK`` iterations, then where the running images' median gap is predicted to
    reach ``tol``, 20 to ``ADMM_CHECK`` iterations on; where runs are short, ``ADMM_SHORT_M``, from
    ``ADMM_FIRST_CHECK_SHORT`` on at any iteration, ``ADMM_SHORT_STEP`` apart at least, each with a dual point
    of its own) the better of them, scaled into the dual
    feasible set, bounds the optimum from below. With the float32 set-up at tol >= ``ADMM_RESIDUAL_DUAL_TOL``
    (``ADMM_RESIDUAL_DUAL``) the dual points are the residuals at ADMM's w instead, y - B w = rho (B B^T +
    rho I)^-1 (y - B q), from the w-step's own product: no second factorisation; an image stops when its relative duality gap
    (float64) at z is at most ``tol``, or after ``max_iter`` iterations. The certificates, and the
    dual points' extrapolation, are float64.

    Above ``ADMM_X_MAX_ALPHA`` where m is at most ``EPS_PATH_MAX_M`` and ``EPS_PATH_MAX_FRACTION`` of n (at 64x64
    RGB, m = 500 to 737), the first check comes after ``EPS_PATH_AT`` iterations and starts the eps-path from z
    (``_eps_path``, a warm-started homotopy): each image it takes to its exact optimum (certified gaps of 1e-10
    and below on 64 val faces at m = 500) stops there, any other goes on as above. There ADMM's certificate
    would need 520 to 1,120 iterations (m = 500), its support after 200 is a few tens of coefficients off.

    Parameters
    ----------
    y : torch.Tensor
        (B, m) measurements under ``physics``.
    physics : invgan.physics.Physics
        An explicit-matrix operator such as ``GaussianCS``, shared by all images.
    basis : {"dct", "wavelet"} or basis object
    alpha : float, optional
        The l1 weight; default the paper's for a named basis.
    tol : float
        Relative duality-gap tolerance.
    max_iter : int
        Iterations at most.
    rho : float, optional
        ADMM's penalty for the scaled objective (lam = m alpha); default ``admm_rho(alpha, lam, m / n)``.
    relax : float
        Over-relaxation, in (0, 2).
    state : invgan.resume.SolveState, optional
        Save the run as it goes and resume from it.

    Returns
    -------
    LassoResult
        ``gap``: certified relative duality gaps; ``image_iterations``: (B,) iterations per image.
    """
    with flush_denormal():
        return _lasso_admm(y, physics, basis, alpha, tol, max_iter, rho, relax, clip, progress, state)


def _lasso_admm(y, physics, basis, alpha, tol, max_iter, rho, relax, clip, progress, state):
    from tqdm import tqdm

    basis, alpha, img_shape = _check_inputs(y, physics, basis, alpha, tol)
    check_dense(physics, "admm")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise InvganError(f"max_iter must be a whole number >= 1, got {max_iter!r}")
    if rho is None:
        rho = admm_rho(alpha, physics.m * alpha, physics.m / math.prod(img_shape))
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise InvganError(f"rho must be a finite number > 0, got {rho}")
    if not (math.isfinite(relax) and 0 < relax < 2):
        raise InvganError(f"relax must be in (0, 2), got {relax}")
    m, nb, dev, f64 = physics.m, y.shape[0], y.device, torch.float64
    lam = m * alpha
    kept = _SetupCache.entry(physics, basis, img_shape, y.dtype)  # (the last solve's set-up, if it was this problem's)
    B0 = kept.get("B0") if kept is not None else None
    if B0 is None:
        B0 = dense_matrix(physics, basis, img_shape).to(y.dtype)
        if kept is not None:
            kept["B0"] = B0
    B = B0.double()  # (m, n), the problem's B in float64
    n = B.shape[1]
    Y = y.reshape(nb, -1).double()
    # the w-step's B^T (B B^T + rho I)^-1 B = X^T X with X = L^-1 B: as the n x n W = I - X^T X, or per iteration as
    # a chain of products, (X^T, X) or (B^T, (B B^T + rho I)^-1, B) (``working``)
    W = X = M = None
    gram = admm_gram_form(m, n) and (alpha <= ADMM_X_MAX_ALPHA or m >= n)  # (m >= n: A A^T singular)
    # above ADMM_X_MAX_ALPHA (tens of iterations at large m) the m x m factorisations cost more than the iterations
    # from m = ADMM_SETUP_F32_M: they are made in float32 for the float32 iterations, and in float64 only if
    # the run goes on in float64
    setup32 = ADMM_F32 and not gram and alpha > ADMM_X_MAX_ALPHA and ADMM_SETUP_F32_M <= m < n
    # B^T: with the float32 set-up (short runs, large m) a view, not a float64 copy in B^T's layout (at m = 10000 a
    # 1 GB transposed copy, 1.2 s): its products (the float64 certificates) take either layout, and the float32
    # iterations' B^T is the float32 B's view (``working``), whose oneDNN form is then B itself with no copy
    bt_view = setup32  # (kept as made: setup32 turns False where the run goes on with the float64 factors)
    Bt = B.T if bt_view else B.T.contiguous()
    onednn = ADMM_F32 and onednn_products(dev)  # the float32 iterations' products by oneDNN (invgan.runtime)

    def exact_setup():  # M (or X, W), P = (B B^T)^-1 for the dual points, w_y; float64
        # B B^T = A A^T from half the block products, its lower triangle only (what the factorisations read; at
        # m = 10000 the full product was 22 s of float64), its diagonal shifted in place for the two factors, each
        # made in place (``_shifted_factors``: no identity or shifted copies, 0.8 GB each at m = 10000)
        K = _gram_rows(B, mirror=False)
        L, Lp = _shifted_factors(K, rho, 1e-12 * float(K.diagonal().mean()))  # B B^T + rho I = L L^T; B B^T + ridge
        W_ = X_ = M_ = None
        if gram:  # W = rho (B^T B + rho I)^-1, n x n: one product per iteration instead of two (formed by a
            X_ = torch.linalg.solve_triangular(L, B, upper=False)  # triangular solve and one product: 1.26x faster
            W_ = _gram_rows(X_.T).neg_()  # at m = 10000 than with (B B^T + rho I)^-1 formed and two products); X^T X
            W_.diagonal().add_(1.0)  # from half its block products, mirrored in place (the full one: 29 s at m = 10000)
            X_ = None
        elif alpha <= ADMM_X_MAX_ALPHA:
            X_ = torch.linalg.solve_triangular(L, B, upper=False)
        else:
            M_ = torch.cholesky_inverse(L)
        P_ = torch.cholesky_inverse(Lp)  # (B B^T)^-1, for the dual points, formed in float64 (applied by float32
        del Lp  # triangular solves instead, near basis pursuit they certified hundreds of iterations later)
        # (B^T B + rho I)^-1 B^T y = B^T (B B^T + rho I)^-1 y, the w-step's fixed part (the solves on L as it is
        # stored: cholesky_solve would copy it into its own layout first)
        return W_, X_, M_, P_, (Y @ _CholeskyInverse(L)) @ B, None

    def float32_setup():  # M, P and w_y from float32 factorisations (relative errors about 1e-6: the iterations'
        B32 = B0.float()  # fixed point moves by as little; the certificates stay exact, float64). M and P are
        # applied by two triangular solves each, as fast as the product with the inverse (at m = 10000, 64 rows: 89
        # against 90 ms), without forming it. K's lower triangle only (the factorisations read no more), its
        # diagonal shifted in place: at m = 10000 no m x m identity, no mirrored or shifted copies (about 1.5 s)
        # (the products by oneDNN where the iterations' are; both factors made in place: ``_cholesky_lower_``)
        # (kept for the next solve of this problem, ``_SetupCache``: the same factors, made from B alone)
        block = ADMM_GRAM_BLOCK_ONEDNN if onednn else 2048
        made_key = ("float32", rho, block, onednn)  # (M's factor, and P's where a solve needed it)
        made = kept.get(made_key) if kept is not None else None
        if made is None or (not resid and made[1] is None):
            K = _gram_rows(B32, block=block, mirror=False, onednn=onednn)
            ridge = 1e-6 * float(K.diagonal().mean())
            if made is not None:  # M's factor kept (by a solve with the residual dual points): P's, in K's memory
                made = (made[0], _CholeskyInverse(_shifted_cholesky_(K, ridge), onednn))
            elif resid:  # B B^T + rho I's factor only, in K's own memory (the same bits as in a copy)
                made = (_CholeskyInverse(_shifted_cholesky_(K, rho), onednn), None)
            else:
                made = tuple(_CholeskyInverse(F, onednn) for F in _shifted_factors(K, rho, ridge))
            if kept is not None:  # (with the solves' panels, once made)
                kept[made_key] = made
        # (w_y's solve by M too: cholesky_solve would copy L into its own layout first; a kept P unused with the
        # residual dual points: the same dual points as a first solve)
        M_, P_ = made[0], (None if resid else made[1])
        ym_ = Y.to(B32.dtype) @ M_  # (B B^T + rho I)^-1 y, rows (for the residual dual points)
        return None, None, M_, P_, (ym_ @ B32).double(), ym_.double()

    # the residual dual points (ADMM_RESIDUAL_DUAL) with the float32 set-up: while P is None (the float64 factors of a
    # second stall bring P back, and the preimages with it)
    resid = ADMM_RESIDUAL_DUAL and setup32 and tol >= ADMM_RESIDUAL_DUAL_TOL
    W, X, M, P, wy, ym = float32_setup() if setup32 else exact_setup()
    # B q = B z - B u in the float32 iterations (``working``): on the Woodbury step with M formed (not X, not the
    # n x n form, not the float32 factors applied by triangular solves)
    sparse_bq = ADMM_F32 and alpha > ADMM_X_MAX_ALPHA and m <= ADMM_SPARSE_MAX_M and torch.is_tensor(M)
    # the eps-path from ADMM's z after EPS_PATH_AT iterations (the first check; no probe checks)
    path_at = (EPS_PATH_AT if EPS_PATH and sparse_bq and m <= EPS_PATH_MAX_M and m <= EPS_PATH_MAX_FRACTION * n
               and max_iter > EPS_PATH_AT else 0)
    pathed = False  # (the path has run)
    z, u = torch.zeros(nb, n, dtype=f64, device=dev), torch.zeros(nb, n, dtype=f64, device=dev)
    best_z = torch.zeros_like(z)
    best_p = torch.full((nb,), math.inf, dtype=f64, device=dev)
    best_d = torch.full((nb,), -math.inf, dtype=f64, device=dev)
    ran = torch.zeros(nb, dtype=torch.long, device=dev)
    # support Newton steps every `newton_every` checks (0: none), for the images whose gap is at most
    # ADMM_NEWTON_GAP. A step's cost per image grows like m^3, an iteration's like m n, so the spacing grows like
    # m^2 / n (measured: at m = 1000 a step costs about 0.1 s per image, more than ADMM then needs to finish). Not
    # near basis pursuit: there the support fills all m slots and B_J is square, so they cannot certify
    newton_every = (math.ceil(ADMM_NEWTON_WORK * m * m / n / ADMM_CHECK) if ADMM_NEWTON and alpha > ADMM_MAX_ALPHA
                    else 0)
    it, key, saved, low = 0, None, None, ADMM_F32
    # large m, larger alpha: tens of iterations, checks at any iteration (ADMM_SHORT_STEP), each with its own dual point
    short = alpha > ADMM_X_MAX_ALPHA and m >= ADMM_SHORT_M
    first_check = ADMM_FIRST_CHECK_SHORT if short or setup32 else ADMM_FIRST_CHECK  # (float32 factors: from m = 2500)
    first_check = path_at or first_check
    res_extrap = resid and ADMM_RESIDUAL_EXTRAPOLATE and not short
    next_check, last_it, next_newton = first_check, 0, newton_every * ADMM_CHECK
    last_gap = torch.full((nb,), math.inf, dtype=f64, device=dev)  # each image's gap at the last certificate
    # the probe checks left (ADMM_PROBE_ROWS of the running images; the rest run on uncertified); none before the path
    probes = 0 if path_at else ADMM_PROBES
    probe_ids = torch.linspace(0, nb - 1, ADMM_PROBE_ROWS, device=dev).round().long().unique()
    if state is not None:
        key = {"solver": "lasso-admm-3", "basis": getattr(basis, "name", type(basis).__name__), "alpha": alpha,
               "tol": tol, "max_iter": max_iter, "rho": rho, "relax": relax, "check": ADMM_CHECK,
               "first_check": first_check, "check_min": ADMM_CHECK_MIN,
               "spacing": ADMM_SPACING, "probes": [ADMM_PROBES, ADMM_PROBE_ROWS], "f32": ADMM_F32, "stall": ADMM_STALL,
               "newton": newton_every,
               "newton_gap": ADMM_NEWTON_GAP, "physics": type(physics).__name__, "m": m, "y": fingerprint(y),
               **({"setup32": 3} if setup32 else {}),  # (2: A A^T by oneDNN where the products are, factors in place;
               # 3: the factors' solves blocked, by oneDNN there)
               **({"resid": int(res_extrap) + 1} if resid else {}),
               **({"sparse_bq": True} if sparse_bq else {}),
               **({"short": ADMM_SHORT_STEP} if short else {}),
               **({"onednn": 2} if onednn else {}),  # (its rounding: not MKL's bits; 2: the dual points by it too)
               **({"eps_path": [path_at, EPS_PATH_CAP, EPS_PATH_STEPS, EPS_PATH_REFINE]} if path_at else {})}
        saved = state.load(key, dev)
    history = []  # the last dual points theta of the running rows
    lifted = False  # float64 iterations with the float32 factors (short runs' first stall)

    def lift():  # the float32 factors in float64, and w_y (and M y) from them in float64
        L = M.L.double()
        ym_ = torch.cholesky_solve(Y.T, L).T
        return _CholeskyInverse(L), (_CholeskyInverse(P.L.double()) if P is not None else None), ym_ @ B, ym_

    floor, floor_it = math.inf, 0  # the lowest largest gap so far, and the iteration it was reached at
    if saved:  # saved at a check, after the finished rows left
        z, u, best_z, best_p, best_d, ran, it, last_gap = (saved[k] for k in ("z", "u", "best_z", "best_p", "best_d",
                                                                                "ran", "it", "last_gap"))
        it, history, low = int(it), list(saved["history"].unbind(0)), bool(saved["low"])
        floor, floor_it = float(saved["floor"]), int(saved["floor_it"])
        next_check, last_it, next_newton, probes = (int(saved[k]) for k in ("next_check", "last_it", "next_newton",
                                                                              "probes"))
        lifted = bool(saved.get("lifted", False))
        pathed = bool(saved.get("pathed", False))
        if setup32 and not low:  # saved after the switch to float64: its factors
            if lifted:
                M, P, wy, ym = lift()
            else:
                W, X, M, P, wy, ym = exact_setup()
                setup32 = False

    def working(low):  # the iterations' operands: float32 copies, or the float64 ones
        cast = (lambda t: t.float() if torch.is_tensor(t) else t) if low else (lambda t: t)  # (a _CholeskyInverse
        # is float32 already)
        # B^T cast once for all its uses, and B in float32 from B0 (a no-op where y is float32; the same bits as
        # B's cast, B = B0 in float64; at m = 10000 the casts were 1.9 s, B^T cast twice or three times)
        Bc = B0.float() if low else B
        Btc = Bc.T if low and bt_view else cast(Bt)  # (the same values as B^T's cast)
        chain = None  # the Woodbury w-step's products: X^T X q = (q X^T) X, or ((q B^T) M) B
        if X is not None:
            Xc = cast(X)
            chain = (Xc.T, Xc)
        elif M is not None:
            chain = (Btc, cast(M), Bc)
        Wc = cast(W) if W is not None else None
        BtR = Btc  # B^T applied from the right to rows: the dual points' (rho u) B^T, sparse-bq's exact B u
        if low and onednn:
            chain = tuple(OneDNNRight(t) if torch.is_tensor(t) else t for t in chain) if chain else None
            Wc = OneDNNRight(Wc) if Wc is not None else None
            BtR = OneDNNRight(Bc.T)  # by oneDNN too: its form of B^T is the float32 B itself (no copy)
        # above ADMM_X_MAX_ALPHA at small m (z mostly zero), the float32 iterations' B q = B z - B u: B z from z's
        # nonzeros, B u carried along in m-space (``sparse_bq``)
        sp = _kernels.SparseProduct(Btc) if low and sparse_bq else None
        return {"Bt": Btc, "BtR": BtR, "P": cast(P), "wyr": cast(relax * wy), "W": Wc,
                "rym": cast(rho * ym) if ym is not None and P is None else None,
                "chain": chain, "sp": sp, "rwb": cast(relax * (wy @ Bt)) if sp is not None else None}

    ops = working(low)

    def dual_point(ua):  # B theta = rho u in the least-squares sense (float64)
        return (((rho * ua) @ ops["BtR"]) @ ops["P"]).double()

    def residual_point(c):  # y - B w = rho (M y - M B q), c = M B q of the last w-step (rows; float64)
        return ops["rym"][rows].double().sub_(c.double(), alpha=rho)

    def _path_rows(zr, Yr):  # the eps-path from zr: float32, then float64 (B_J's inverse) for the rows it leaves
        # above tol (near a square B_J; none of 64 val faces at m = 500 since the start puts the inactive correlations
        # at 0, 3 before); returns the points and their primal and dual values
        path = _eps_path(B, Bt, ops["Bt"].contiguous(), ops["chain"][2], Yr, lam, zr, EPS_PATH_STEPS, onednn=onednn)[0]
        p_n, d_n = _primal_dual(Yr, path, B, Bt, lam)
        again = (_relative_gap(p_n, d_n) > tol).nonzero().squeeze(1)
        if len(again):
            w2 = _eps_path(B, Bt, Bt, ops["chain"][2], Yr[again], lam, zr[again], EPS_PATH_STEPS)[0]
            p2, d2 = _primal_dual(Yr[again], w2, B, Bt, lam)
            ok = p2 < p_n[again]
            path[again] = torch.where(ok[:, None], w2, path[again])
            p_n[again] = torch.where(ok, p2, p_n[again])
            d_n[again] = torch.maximum(d_n[again], d2)
        return path, p_n, d_n

    gap = _relative_gap(best_p, best_d)
    rows = (gap > tol).nonzero().squeeze(1) if it else torch.arange(nb, device=dev)
    # the running rows' z, u and relax w_y
    za, ua, wyr = z[rows].to(ops["Bt"].dtype), u[rows].to(ops["Bt"].dtype), ops["wyr"][rows]
    sp = ops["sp"]
    if sp is not None:  # Bz = B z and Bu = B u of the running rows (rows x m), rwb = relax B w_y
        rwb = ops["rwb"][rows]
        if saved and "Bu" in saved:  # as the run that saved had them (B u carried along since its last exact one)
            Bz, Bu = saved["Bz"].to(za.dtype), saved["Bu"].to(za.dtype)
        else:
            Bz, Bu = sp.product(za), ua @ ops["BtR"]
    bar = tqdm(total=max_iter, initial=it, desc=f"lasso-{getattr(basis, 'name', 'basis')} admm", unit="it",
               disable=not progress, leave=False)
    thr = lam / rho
    while it < max_iter and len(rows):
        # w = (B^T B + rho I)^-1 (B^T y + rho q) = w_y + q - B^T (B B^T + rho I)^-1 B q, q = z - u; over-relaxed
        # wr = relax w + (1 - relax) z; then v = wr + u, z = soft(v, lam / rho) and u + wr - z = v - z (_soft_split).
        # Written as one product whose output is v itself (addmm) and three elementwise passes: the elementwise work
        # of the plain form (about ten passes over (b, n)) cost more than its products at m = 500
        if sp is not None:
            # B q = B z - B u with B z from z's nonzeros; then B u for the next iteration without a product over
            # n: B v = B z + (1 - relax) B u + relax B w_y - relax B B^T M B q, and B B^T M = I - rho M (M =
            # (B B^T + rho I)^-1), so B u' = B v - B z' = (1 - relax) B z + B u + relax B w_y + relax rho c - B z'
            # with c = M B q (an error in B u shrinks by I - relax rho M per iteration, and B u is made exactly
            # from u at every ADMM_SPACING)
            c = (Bz - Bu) @ ops["chain"][1]
            v = _addmm_(torch.add(za, ua, alpha=1 - relax).add_(wyr), c, ops["chain"][2], -relax)
            za, ua, Bz_new = sp.split(v, thr)
            Bu.add_(Bz, alpha=1 - relax).add_(rwb).add_(c, alpha=relax * rho).sub_(Bz_new)
            Bz = Bz_new
        else:
            q = za - ua
            if W is not None:  # w = w_y + q W
                v = _addmm_(torch.add(ua, za, alpha=1 - relax).add_(wyr), q, ops["W"], relax)
            else:  # v = z + (1 - relax) u + relax w_y - relax X^T X q
                c = q
                for t in ops["chain"][:-1]:
                    c = c @ t
                v = _addmm_(torch.add(za, ua, alpha=1 - relax).add_(wyr), c, ops["chain"][-1], -relax)
            za, ua = _soft_split(v, thr)
        it += 1
        at_res = ops["rym"] is not None  # (the residual dual points: c is M B q, in both w-step forms here)
        if at_res and res_extrap and it > min(next_check, max_iter) - (EXTRAPOLATION + 1):  # (the last EXTRAPOLATION
            # + 1 before a check: all it combines)
            history.append(residual_point(c))
            del history[:-(EXTRAPOLATION + 1)]
        elif not at_res and it % ADMM_SPACING == 0:  # B theta = rho u in the least-squares sense
            if sp is not None:
                Bu = ua @ ops["BtR"]  # B u made exactly
                history.append(((rho * Bu) @ ops["P"]).double())
            else:
                history.append(dual_point(ua))
            del history[:-(EXTRAPOLATION + 1)]
        if it < next_check and it < max_iter:
            continue
        ran[rows] = it
        Yr, zd = Y[rows], za.double()
        # a probe check (ADMM_PROBES): the certificates of ADMM_PROBE_ROWS of the running rows only (positions pr)
        # (the same images at each probe, while they run; the last iteration's check is a full one)
        pr = torch.isin(rows, probe_ids).nonzero().squeeze(1) if probes > 0 and it < max_iter else rows[:0]
        probe = 0 < len(pr) < len(rows)
        probes = max(probes - 1, 0)
        sel = (lambda t: t[pr]) if probe else (lambda t: t)
        cr = sel(rows)  # the rows certified at this check
        # the primal at z; the dual at theta (and at its extrapolation), float64. Not at z's scaled residual as
        # well (FISTA's dual point; one more product with B): on 64 val faces at m = 500 to 10000 (DCT) and 16 at
        # m = 1000 and 2500 (wavelet) the same iterations, certificates and objectives without it
        Yc, zc = sel(Yr), sel(zd)
        primal, _ = _primal(Yc, zc, Bt, lam)
        dual = torch.full_like(primal, -math.inf)
        thetas = ([sel(history[-1] if res_extrap else residual_point(c))] if at_res  # (the residual at this w)
                  else [sel(history[-1])] if it % ADMM_SPACING == 0 else [dual_point(sel(ua))])  # (short runs: their own)
        thetas += [_extrapolate([sel(h) for h in history])] if len(history) == EXTRAPOLATION + 1 else []
        for t in thetas:
            dual = torch.maximum(dual, _dual_value(t, t @ B, Yc, lam))
        better = primal < best_p[cr]
        best_z[cr] = torch.where(better[:, None], zc, best_z[cr])
        best_p[cr] = torch.minimum(primal, best_p[cr])
        best_d[cr] = torch.maximum(dual, best_d[cr])
        z[rows], u[rows] = zd, ua.double()
        if path_at and not pathed and it >= path_at and not probe:
            pathed = True
            # the eps-path from z to each image's exact optimum, kept where its objective is lower (as a Newton step's)
            cand, p_n, d_n = _path_rows(zd, Yr)
            ok = p_n < best_p[rows]
            best_z[rows] = torch.where(ok[:, None], cand, best_z[rows])
            best_p[rows] = torch.where(ok, p_n, best_p[rows])
            best_d[rows] = torch.maximum(best_d[rows], d_n)
        if newton_every and it >= next_newton and not probe:
            next_newton = it + newton_every * ADMM_CHECK
            # support Newton steps (as FISTA's) for rows whose gap says their support is nearly found:
            # the exact solution on z's support and signs, kept where its objective is lower
            g = _relative_gap(best_p[rows], best_d[rows])
            near = ((g > tol) & (g <= ADMM_NEWTON_GAP)).nonzero().squeeze(1)
            if len(near):
                sub = rows[near]
                cand, tried, p_n, d_n = _newton_rows(zd[near], Bt, Yr[near], lam)
                ok = tried & (p_n < best_p[sub])
                best_z[sub] = torch.where(ok[:, None], cand, best_z[sub])
                best_p[sub] = torch.where(ok, p_n, best_p[sub])
                best_d[sub] = torch.maximum(best_d[sub], d_n)  # a dual value is valid anywhere
        gap = _relative_gap(best_p, best_d)  # (inf for rows not certified yet: they run on)
        keep = (gap[rows] > tol).nonzero().squeeze(1)
        if len(keep) < len(rows):
            rows, za, ua, wyr = rows[keep], za[keep], ua[keep], wyr[keep]
            if sp is not None:
                Bz, Bu, rwb = Bz[keep], Bu[keep], rwb[keep]
            history = [h[keep] for h in history]
        if len(rows):
            known = rows[torch.isfinite(gap[rows])]  # (after a probe: the probe rows still running)
            top, switched = (float(gap[known].max()) if len(known) else math.inf), False
            quick = short and low  # (the float32 iterations of a short run)
            if probe:  # (the stall test on full checks only: a probe's largest gap is a few images')
                pass
            elif top < (0.5 if quick else 0.99) * floor:
                floor, floor_it = top, it
            elif (low or lifted) and it - floor_it >= (ADMM_STALL_SHORT if quick else ADMM_STALL * ADMM_CHECK):
                floor, floor_it, switched = top, it, True  # float32's rounding floor: the rest in float64, from here
                if quick and setup32:  # first with the float32 factors lifted to float64
                    low, lifted = False, True
                    M, P, wy, ym = lift()
                else:
                    low, lifted = False, False
                    if setup32:  # with the float64 factorisations
                        W, X, M, P, wy, ym = exact_setup()
                        setup32 = False
                ops = working(low)
                za, ua, wyr, sp = za.double(), ua.double(), ops["wyr"][rows], ops["sp"]  # (None: the dense products)
            # the next certificate: where the running images' median is predicted to reach tol
            step = ADMM_SHORT_STEP if short else first_check  # (short runs: also right after a switch)
            known = known[torch.isfinite(last_gap[known])]  # (rates from the rows certified at both checks)
            if last_it and not (short and switched) and len(known):
                g_now = gap[known].clamp_min(1e-300).log()
                rate = (g_now - last_gap[known].log()) / (it - last_it)  # per iteration
                need = torch.where(rate < 0, (math.log(tol) - g_now) / rate, math.inf)
                step = min(max(float(need.median()), ADMM_SHORT_STEP if short else ADMM_CHECK_MIN),
                           ADMM_STALL_SHORT if short else ADMM_CHECK)
            # where a new dual point is made (short runs: anywhere, the check makes its own)
            next_check = it + (math.ceil(step) if short else ADMM_SPACING * math.ceil(step / ADMM_SPACING))
        last_gap[rows] = gap[rows]
        last_it = it
        bar.update(it - bar.n)
        shown = gap[torch.isfinite(gap)]  # (after a probe: the images certified so far)
        bar.set_postfix(running=len(rows), gap=f"{float(shown.max()) if len(shown) else math.inf:.1e}", refresh=False)
        if state is not None and state.due() and len(rows):  # the run goes on as if it had not saved
            state.save(key, {"z": z, "u": u, "best_z": best_z, "best_p": best_p, "best_d": best_d, "ran": ran,
                             "it": torch.tensor(it), "low": torch.tensor(low), "last_gap": last_gap,
                             "lifted": torch.tensor(lifted), "pathed": torch.tensor(pathed),
                             "floor": torch.tensor(floor, dtype=f64), "floor_it": torch.tensor(floor_it),
                             "next_check": torch.tensor(next_check), "last_it": torch.tensor(last_it),
                             "next_newton": torch.tensor(next_newton), "probes": torch.tensor(probes),
                             "history": torch.stack(history) if history else z.new_zeros(0, len(rows), m),
                             **({"Bz": Bz, "Bu": Bu} if sp is not None else {})})
    bar.close()
    gap = _relative_gap(best_p, best_d).to(y.dtype)
    w = best_z.to(y.dtype).reshape(nb, *img_shape)
    x = basis.synthesis(w)
    if clip:
        x = x.clamp(-1, 1)
    return LassoResult(x, w, lasso_objective(y, physics, basis, w, alpha), gap, it, ran)


def explicit_matrix(physics: Physics, basis, y_shape, device="cpu", dtype=torch.float32) -> np.ndarray:
    """Dense B = A Psi (m, n): row i is Psi^T A^T e_i. Only for reference solves."""
    m = int(np.prod(y_shape))
    e = torch.eye(m, device=device, dtype=dtype).reshape(m, *y_shape)
    rows = []
    for chunk in e.split(256):
        rows.append(basis.analysis(physics.A_adjoint(chunk)).flatten(1).double().cpu())
    return torch.cat(rows).numpy()


def lasso_cvxpy(y: torch.Tensor, physics: Physics, basis="dct", alpha: float | None = None,
                solver: str = "CLARABEL", clip: bool = True) -> LassoResult:
    """Reference: the same problem solved exactly by cvxpy, one image at a time."""
    import cvxpy as cp

    basis, alpha, img_shape = _check_inputs(y, physics, basis, alpha, 1.0)
    B = explicit_matrix(physics, basis, tuple(y.shape[1:]), y.device, y.dtype)
    m = physics.m
    ws = []
    for yi in y.flatten(1).double().cpu().numpy():
        w = cp.Variable(B.shape[1])
        prob = cp.Problem(cp.Minimize(cp.sum_squares(yi - B @ w) / (2 * m) + alpha * cp.norm1(w)))
        prob.solve(solver=solver)
        if w.value is None:
            raise RuntimeError(f"cvxpy failed: {prob.status}")
        ws.append(w.value)
    w = torch.tensor(np.stack(ws), dtype=y.dtype, device=y.device).reshape(y.shape[0], *img_shape)
    x = basis.synthesis(w)
    if clip:
        x = x.clamp(-1, 1)
    obj = lasso_objective(y, physics, basis, w, alpha)
    return LassoResult(x, w, obj, torch.zeros_like(obj), 0)
