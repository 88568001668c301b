"""Lasso solvers tried for issue 15 and not adopted: the measurements behind the README's notes.

Same problem as ``invgan cs`` (CelebA val faces, Gaussian A seed 0, noise seed 1, paper alpha),
objective 1/2 ||y - B w||^2 + lam ||w||_1 with B = A Psi and lam = m alpha (the scaled form the
solvers use). Reference: invgan's exact homotopy path.

    python scripts/lasso_experiments.py support -m 500 --basis dct --images 16
        how far FISTA's support is from the exact one after k iterations (what a warm start gets)
    python scripts/lasso_experiments.py warm -m 500 --basis dct --images 16 --fista 200
        the eps-homotopy from a FISTA point (the point made exact for a perturbed problem,
        then the perturbation removed along a piecewise-linear path): steps and certificate;
        with --admm K from ADMM's point after K iterations instead
    python scripts/lasso_experiments.py admm -m 2500 --basis wavelet --images 4 --iters 5000 --exact
        ADMM with one cached factorisation of B B^T + rho I (= A A^T + rho I), over-relaxed (or
        --fast): certified gap with three dual points against iterations, and the distance to the
        exact optimum (what invgan.lasso.lasso_admm does, unbatched by rows)
    python scripts/lasso_experiments.py screen -m 500 --basis dct --images 16
        gap-safe screening at FISTA points: how many coefficients the safe test can remove
    python scripts/lasso_experiments.py homotopy -m 2500 --basis wavelet --images 20
        the exact path above HOMOTOPY_MAX_M, in one batch: seconds per image, steps, certificate
    python scripts/lasso_experiments.py dual -m 10000 --basis wavelet --images 4
        near basis pursuit: FISTA from two starts (zero with continuation, and the minimum-norm
        least-squares point), their objectives against each other, and the certified gap with
        the residual's dual point and with the subgradient's projection onto B's row space
    python scripts/lasso_experiments.py pdas -m 2500 --basis wavelet --images 4 --fista 2000
        primal-dual active set (semismooth Newton) steps with an exact line search from a FISTA
        point: active-set sizes, step lengths and the certified gap after each step
    python scripts/lasso_experiments.py ssnal -m 500 --basis dct --images 8 --eta 0.8
        a semismooth Newton augmented Lagrangian on the dual (Li, Sun & Toh 2018), batched, with
        lambda continuation (factor --eta): Newton steps, the largest active set, the certified
        gap, the seconds, and the homotopy's seconds and objective on the same faces
    python scripts/lasso_experiments.py anderson -m 500 --basis dct --images 16 --every 0 5 10
        ADMM as lasso_admm iterates it (float32, v = z + u the whole state), with every K iterations
        an Anderson extrapolation of v over the last K + 1 (kept where its fixed-point residual is
        lower than the last step's; one more evaluation each time): per image the iterations to a
        certified 1e-4 (dual at the residual and at the preimage of rho u, every 20 iterations)
        and the evaluations of the iteration that took
    python scripts/lasso_experiments.py newton -m 500 --basis dct --images 64 --at 400 480
        support Newton steps (invgan.lasso._newton_rows) from ADMM's point after k iterations:
        seconds, and how many faces they end at a certified 1e-4
    python scripts/lasso_experiments.py rho-oracle -m 500 --basis dct --images 16 --c 0.5 1 1.5 2 3 4 6
        lasso_admm at rho = c lam for each c: mean and largest iterations to a certified 1e-4, and the
        mean if each image had its own best c (what a per-image rho could gain at most)
    python scripts/lasso_experiments.py continuation -m 500 --basis dct --images 16
        ADMM (rho = 2 lam, float64, u carried over) warm-started by short runs at larger lam: per image
        the iterations until z has the exact solution's signs and an objective within 1e-6
    python scripts/lasso_experiments.py event-search --images 64
        the homotopy's entering-step search (as _homotopy_chunk writes it, two branches) against the
        one-branch form g_j = (lam - s c_j) / (1 - s a_j), s = sign(c_j - lam a_j), on synthetic
        (images, 12,288) float64 states: whether they agree bit for bit, and ms per search
    python scripts/lasso_experiments.py lipschitz -m 10000
        FISTA's step size: ||A||^2 by invgan.lasso.operator_norm_sq (power iteration, up to 100
        iterations) against Lanczos (scipy.sparse.linalg.eigsh, tol 1e-3), with seconds and matvecs
    python scripts/lasso_experiments.py sparse-product -m 500 --basis dct --images 64 --at 300
        at ADMM's point after k iterations (about 490 nonzeros per row of z): B z as the dense product
        against torch's CSR product (and its to_sparse_csr), in ms; what a one-product iteration needs
    python scripts/lasso_experiments.py working-set -m 500 --basis dct --images 64
        celer's scheme, batched: per face a working set (its support and the coefficients nearest to
        their constraint, doubled from 64), coordinate descent on the set's Gram (numba), the
        certificate over all n: outer rounds, epochs, support sizes and seconds against lasso_admm
    python scripts/lasso_experiments.py newton-trigger -m 500 --basis dct --images 64 --maxch -1 0 2
        ADMM (as admm_map) with support Newton steps (invgan.lasso._newton_rows, --passes) for the
        faces whose signs changed in at most --maxch coefficients over the last 20 iterations (-1:
        none): mean and largest iterations to a certified 1e-4, Newton tries and their seconds
    python scripts/lasso_experiments.py projected-dual -m 500 --basis dct --images 64 --at 300 350 400
        at ADMM's point after k iterations: the certified gap with the residual's dual point, and with
        that residual projected onto {theta: B_J^T theta = lam sign(z_J)}, J = supp(z) (one J x J solve)
    python scripts/lasso_experiments.py lazy-window -m 500 --basis dct --images 64 --at 100 200 300 400 500
        ADMM's coefficients that stay below the threshold evolve linearly, v' = (1 - relax) v + relax B_j^T e
        (e = (B B^T + rho I)^-1 (y - B q), m-space), so over a window of t iterations from k0 they are
        v(k0) (1 - relax)^t + B_j^T (sums of e), known without a product over n. A coefficient needs its
        product only if it could cross: its distance to the threshold at most ||B_j|| ||D_t|| (Cauchy-Schwarz,
        D_t the m-space drift of e). Per window the share of coefficients a face must watch (the support
        and those near the threshold), and a fused numba kernel (the watched coefficients' products, the
        split and B z in one pass over B^T's rows) timed against the dense product with SparseProduct.split
    python scripts/lasso_experiments.py adaptive-rho -m 500 --images 16 --modes fixed:1.7 fixed:1 spectral:1 balance:1.7
        ADMM (float64, the Woodbury w-step through B B^T's eigendecomposition, so that every face may have
        its own rho at no extra cost) with a fixed rho = 2 lam, with the spectral adaptive rho of Xu,
        Figueiredo & Goldstein (2017; every 2 iterations, correlation threshold 0.2) or with residual
        balancing (Boyd et al. 2011, 3.4.1; mu 10, tau 2, every 10): mean and largest iterations to a
        certified 1e-4 (dual at the residual and at the preimage of rho u, every --every iterations)
    python scripts/lasso_experiments.py dual-lag -m 500 --basis dct --images 16 --span 8
        ADMM as adaptive-rho's fixed rho, against the exact optimum P* (the homotopy): after k iterations the
        primal excess (P(z) - P*) / P* and the dual lag (P* - D) / P* of the best of its dual points (the
        residual, the preimage of rho u, their extrapolation); with --span N, for the first N faces also the
        best dual point in the span of those candidates and the last six of each kind (cvxpy): what any
        combination of ADMM's own dual points could certify; with --one-solve, how many faces one exact
        solve on z's support and signs (no line search) certifies

These are experiments, not library code: they print, they are not tested.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from invgan.bases import make_basis
from invgan.data import load_images
from invgan.lasso import (ADMM_RELAX, ADMM_SPACING, EXTRAPOLATION, PAPER_ALPHA, _dual_value, _eps_path, _extrapolate,
                          _Gram, _line_search, _newton_rows, _primal_dual, _relative_gap, _soft_split, _support_solution,
                          admm_rho, dense_matrix, lasso_homotopy, operator_norm_sq)
from invgan.metrics import mse_per_image
from invgan.physics import GaussianCS
from invgan.runtime import OneDNNRight

INF = float("inf")


def faces(m, nimg):
    """The nimg lowest val faces x, the operator p and the measurements y of `invgan cs -m M`."""
    x = load_images(None, partition="val", limit=nimg, progress=False).tensor()
    p = GaussianCS(m, (3, 64, 64), noise_std=0.01, seed=0)
    return x, p, p(x, torch.Generator().manual_seed(1))


def problem(m, basis_name, nimg):
    _, p, y = faces(m, nimg)
    B = dense_matrix(p, make_basis(basis_name, 64), (3, 64, 64)).double()
    return p, y, B, B.T.contiguous(), y.reshape(nimg, -1).double(), m * PAPER_ALPHA[basis_name]


def certificate(Y, B, Bt, lam, w, w_dual=None):
    """Relative duality gap (float64) at primal w; dual from the better of w's and w_dual's residual."""
    primal, dual = _primal_dual(Y, w, B, Bt, lam)
    if w_dual is not None:
        dual = torch.maximum(dual, _primal_dual(Y, w_dual, B, Bt, lam)[1])
    return (primal - dual) / primal, primal


def fista(p, B, Bt, Y, lam, iters):
    """Plain batched FISTA in float32, step 1/L (||A Psi||^2 = ||A||^2: Psi is orthonormal)."""
    Bf, Btf, Yf = B.float(), Bt.float(), Y.float()
    L = operator_norm_sq(p, tuple(p.img_shape), "cpu") * 1.01
    w = torch.zeros(Y.shape[0], B.shape[1])
    z, t, c0 = w.clone(), 1.0, Yf @ Bf
    for _ in range(iters):
        wn = z + (c0 - (z @ Btf) @ Bf) / L
        wn = torch.sign(wn) * (wn.abs() - lam / L).clamp_min(0)
        tn = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z, w, t = wn + ((t - 1) / tn) * (wn - w), wn, tn
    return w.double()


def cmd_support(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    wh = lasso_homotopy(y, p, a.basis).w.reshape(a.images, -1).double()
    S = wh != 0
    print(f"m={a.m} {a.basis}: exact support {S.sum(1).float().mean():.0f} of m={a.m} (mean over {a.images} faces)")
    for it in (100, 300, 1000, 3000):
        t = time.time()
        S0 = fista(p, B, Bt, Y, lam, it) != 0
        print(f"  FISTA {it:5d} its ({time.time() - t:.1f} s): support {S0.sum(1).float().mean():.0f}, "
              f"missed {(S & ~S0).sum(1).float().mean():.1f}, extra {(S0 & ~S).sum(1).float().mean():.1f}")


def cmd_warm(a):
    """The eps-path (``invgan.lasso._eps_path``, since session 29 what ``lasso_admm`` runs at m <= 750) from
    FISTA's or ADMM's point; ``--precision`` the path's (its Gram, inverse and directions)."""
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    t = time.time()
    if a.admm:  # from ADMM's point after a.admm iterations, as lasso_admm iterates (``admm_points``)
        w0 = next(admm_points(B, Bt, Y, lam, a.basis, [a.admm]))[2].double()
    else:
        w0 = fista(p, B, Bt, Y, lam, a.fista)
    t_start = time.time() - t
    rows = Bt.float().contiguous() if a.precision == "f32" else Bt
    t = time.time()
    w, steps = _eps_path(B, Bt, rows, OneDNNRight(B.float()), Y, lam, w0, a.max_steps, onednn=a.precision == "f32")
    t_path = time.time() - t
    gap, primal = certificate(Y, B, Bt, lam, w)
    t = time.time()
    h = lasso_homotopy(y, p, a.basis)
    t_h = time.time() - t
    ph = certificate(Y, B, Bt, lam, h.w.reshape(a.images, -1).double())[1]
    start = f"ADMM {a.admm} its" if a.admm else f"FISTA {a.fista} its"
    print(f"m={a.m} {a.basis}, {a.images} faces: {start} {t_start:.1f} s, eps-path ({a.precision}) {t_path:.1f} s, "
          f"steps max {int(steps.max())} mean {steps.double().mean():.1f} (cap {a.max_steps}; -1: left to the "
          f"float64 path), largest gap {gap.max():.1e}, median {gap.median():.1e}, "
          f"objective vs homotopy {((primal - ph) / ph).max():+.1e}; homotopy {t_h:.1f} s, "
          f"{int(h.iterations)} steps")


def cmd_screen(a):
    """Gap-safe sphere screening (Fercoq, Gramfort & Salmon 2015) at FISTA points: how many
    coefficients the test keeps (the rest are provably zero at the optimum)."""
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    exact = lasso_homotopy(y, p, a.basis).w.reshape(a.images, -1).double() != 0
    norms = B.norm(dim=0)
    for it in (50, 100, 200, 400, 800):
        w = fista(p, B, Bt, Y, lam, it)
        primal, dual = _primal_dual(Y, w, B, Bt, lam)
        gap = (primal - dual).clamp_min(0)
        corr = (Y - w @ Bt) @ B
        scale = torch.clamp(lam / corr.abs().amax(1), max=1.0)  # the dual point _primal_dual scores: scale r
        # the dual is 1-strongly concave: theta* lies within sqrt(2 gap) of theta, so |b_j^T theta*| < lam there
        keep = scale[:, None] * corr.abs() + (2 * gap).sqrt()[:, None] * norms[None] >= lam
        print(f"  FISTA {it:4d} its: largest relative gap {(gap / primal).max():.2e}, kept {keep.sum(1).float().mean():.0f} "
              f"of {B.shape[1]} (largest {int(keep.sum(1).max())}), exact coefficients screened out "
              f"{int((exact & ~keep).sum())} (must be 0)")


def cmd_admm(a):
    """ADMM with cached (B B^T + rho I)^-1 (B B^T = A A^T), over-relaxed or restarted-fast (Goldstein
    et al. 2014): every --every iterations the certified gap with three dual points (the z-step's
    residual, the preimage of rho u, that preimage extrapolated over six points --spacing apart),
    and with --exact the distance to the homotopy's exact optimum (primal above it, support)."""
    from invgan.lasso import _extrapolate

    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    exact = lasso_homotopy(y, p, a.basis).w.reshape(a.images, -1).double() if a.exact else None
    t = time.time()
    eye = torch.eye(a.m, dtype=torch.float64)
    K = B @ Bt
    Minv = torch.cholesky_inverse(torch.linalg.cholesky(K + a.rho * eye))  # (A A^T + rho I)^-1
    P = torch.cholesky_inverse(torch.linalg.cholesky(K))  # (A A^T)^-1: the dual points' preimage
    c0 = Y @ B
    z, u = torch.zeros_like(c0), torch.zeros_like(c0)
    zh, uh = z.clone(), u.clone()
    alpha = torch.ones(a.images, 1, dtype=torch.float64)
    cprev = torch.full((a.images, 1), INF, dtype=torch.float64)
    hist = []
    for k in range(1, a.iters + 1):
        zold, uold = z, u
        if a.fast:  # Goldstein et al. 2014, Algorithm 8 (restart when the combined residual grows)
            w = c0 + a.rho * (zh - uh)
            w = (w - ((w @ Bt) @ Minv) @ B) / a.rho
            z = torch.sign(w + uh) * ((w + uh).abs() - lam / a.rho).clamp_min(0)
            u = uh + w - z
            ck = (u - uh).pow(2).sum(1, keepdim=True) + (z - zh).pow(2).sum(1, keepdim=True)
            good = ck < 0.999 * cprev
            an = (1 + torch.sqrt(1 + 4 * alpha * alpha)) / 2
            zh = torch.where(good, z + (alpha - 1) / an * (z - zold), zold)
            uh = torch.where(good, u + (alpha - 1) / an * (u - uold), uold)
            z, u = torch.where(good, z, zold), torch.where(good, u, uold)
            alpha = torch.where(good, an, torch.ones_like(an))
            cprev = torch.where(good, ck, cprev / 0.999)
        else:
            v = c0 + a.rho * (z - u)
            w = (v - ((v @ Bt) @ Minv) @ B) / a.rho  # (B^T B + rho I)^-1 v by Woodbury
            wr = a.relax * w + (1 - a.relax) * z
            z = torch.sign(wr + u) * ((wr + u).abs() - lam / a.rho).clamp_min(0)
            u = u + wr - z
        if k % a.spacing == 0:
            hist = (hist + [((a.rho * u) @ Bt) @ P])[-6:]
        if k % a.every == 0 or k == a.iters:
            primal, d_res = _primal_dual(Y, z, B, Bt, lam)
            d_u = _dual_value(hist[-1], hist[-1] @ B, Y, lam) if hist else d_res
            d_x = _dual_value(e := _extrapolate(hist), e @ B, Y, lam) if len(hist) == 6 else d_u
            gaps = [f"{float(((primal - d) / primal).max()):.1e}" for d in (d_res, d_u, torch.maximum(d_u, d_x))]
            line = f"  it {k}: largest gap, dual point residual / rho u / extrapolated: {' / '.join(gaps)}"
            if exact is not None:
                ps = _primal_dual(Y, exact, B, Bt, lam)[0]
                S, Sz = exact != 0, z != 0
                line += (f"; primal above the optimum {float(((primal - ps) / ps).max()):.1e}, support missing "
                         f"{float((S & ~Sz).sum(1).float().mean()):.0f} extra {float((Sz & ~S).sum(1).float().mean()):.0f}"
                         f" (optimum {float(S.sum(1).float().mean()):.0f})")
            print(line + f", {time.time() - t:.0f} s", flush=True)


def cmd_homotopy(a):
    """The exact path on these faces in one batch (time, steps, certificate, error)."""
    x, p, y = faces(a.m, a.images)
    t = time.time()
    r = lasso_homotopy(y, p, a.basis, progress=True)
    dt = time.time() - t
    mse = mse_per_image(r.x, x)
    print(f"homotopy m={a.m} {a.basis}, {a.images} faces: {dt:.0f} s ({dt / a.images:.2f} s/image), "
          f"{r.image_iterations.float().mean():.0f} steps per image, largest gap {r.gap.max():.1e}, "
          f"MSE {mse.mean():.4f}")


def cmd_dual(a):
    """Is an uncertified large-m FISTA point far from the optimum, or is its certificate weak?"""
    from invgan.lasso import lasso_fista

    x, p, y = faces(a.m, a.images)
    basis = make_basis(a.basis, 64)
    lam = a.m * PAPER_ALPHA[a.basis]
    B = dense_matrix(p, basis, (3, 64, 64)).double()
    Y = y.reshape(a.images, -1).double()
    chol = torch.linalg.cholesky(B @ B.T)  # B B^T = A A^T: one factorisation per operator
    w_ls = (torch.cholesky_solve(Y.T, chol).T @ B).float().view(x.shape)  # B^T (B B^T)^-1 y: minimum norm
    runs = {}
    for name, w0 in (("cold", None), ("least-squares start", w_ls)):
        t = time.time()
        r = lasso_fista(y, p, a.basis, tol=1e-4, w0=w0)
        runs[name] = r.w.reshape(a.images, -1).double()
        print(f"FISTA, {name}: {time.time() - t:.0f} s, iterations per image {r.image_iterations.tolist()}, "
              f"certified gaps {[f'{g:.1e}' for g in r.gap.tolist()]}, MSE {mse_per_image(r.x, x).mean():.5f}",
              flush=True)
    (primal, dual_r), (p1, _) = (_primal_dual(Y, w, B, B.T, lam) for w in runs.values())
    print(f"relative objective difference of the two runs, per image: "
          f"{[f'{v:+.1e}' for v in ((p1 - primal) / primal).tolist()]}")
    w = runs["cold"]
    r = Y - w @ B.T
    g = torch.where(w != 0, lam * torch.sign(w), (r @ B).clamp(-lam, lam))  # the subgradient FISTA's point implies
    th = torch.cholesky_solve((g @ B.T).T, chol).T  # B^T th: g projected onto B's row space
    dual_th = _dual_value(th, th @ B, Y, lam)  # th scaled into the dual feasible set
    print(f"cold run: support {(w != 0).sum(1).tolist()} (m = {a.m}); certified gap with the residual "
          f"{[f'{v:.1e}' for v in ((primal - dual_r) / primal).tolist()]}, with the projected subgradient "
          f"{[f'{v:.1e}' for v in ((primal - dual_th) / primal).tolist()]} "
          f"(its max |B^T theta| / lam {[round(v, 3) for v in ((th @ B).abs().amax(1) / lam).tolist()]})")


def cmd_pdas(a):
    """Primal-dual active set (semismooth Newton on w = soft(w + B^T r, lam)) from a FISTA point,
    near basis pursuit: each step solves the Lasso on J = {|w + B^T r| > lam} exactly (Cholesky of
    B_J^T B_J from the shared Gram B^T B, |J| capped below m) and takes an exact line search on the
    true objective towards it."""
    from invgan.lasso import lasso_fista

    x, p, y = faces(a.m, a.images)
    basis = make_basis(a.basis, 64)
    lam = a.m * PAPER_ALPHA[a.basis]
    B = dense_matrix(p, basis, (3, 64, 64)).double()
    Y = y.reshape(a.images, -1).double()
    G, c0 = B.T @ B, Y @ B
    t = time.time()
    r = lasso_fista(y, p, a.basis, tol=1e-4, max_iter=a.fista)
    w = r.w.reshape(a.images, -1).double()
    print(f"FISTA {time.time() - t:.0f} s, iterations {r.image_iterations.tolist()}; support {(w != 0).sum(1).tolist()} "
          f"(m = {a.m}); certified gaps {[f'{g:.1e}' for g in certificate(Y, B, B.T, lam, w)[0].tolist()]}", flush=True)
    cap = a.m - 1 - a.m // 64
    for it in range(a.steps):
        u = w + (c0 - w @ G)  # w + B^T r
        J = u.abs() > lam
        target = w.clone()
        for i in range(a.images):
            j = J[i].nonzero().squeeze(1)
            if len(j) > cap:
                j = j[u[i, j].abs().topk(cap).indices]
            L, info = torch.linalg.cholesky_ex(G[j][:, j])
            if info == 0:
                target[i] = 0
                target[i, j] = torch.cholesky_solve((c0[i, j] - lam * torch.sign(u[i, j]))[:, None], L).squeeze(1)
        d = target - w
        lo = _line_search(w, d, G, c0, lam)  # exact, on 1/2 w'Gw - c0'w + lam |w|_1 (the objective up to a constant)
        w = w + lo[:, None] * d
        print(f"step {it}: |J| {J.sum(1).tolist()}, step lengths {[round(v, 3) for v in lo.tolist()]}, certified gaps "
              f"{[f'{g:.1e}' for g in certificate(Y, B, B.T, lam, w)[0].tolist()]}", flush=True)


def cmd_ssnal(a):
    """SSNAL (Li, Sun & Toh 2018) on the dual of 1/2 ||y - B w||^2 + lam ||w||_1, batched over images:
    the augmented Lagrangian's inner problem in the dual residual xi is minimised by semismooth Newton,
    its system (I + sigma B_J B_J^T) solved by Woodbury with B_J^T B_J gathered from B^T B (J: the
    coefficients the prox keeps). From w = 0 nearly every coefficient is in J (|B^T y| > lam), so
    lambda starts at eta lam_max and falls by eta each time a stage's certified gap is below 1e-2; at
    each fall the dual point is scaled to stay feasible. sigma grows 5x while a stage is unconverged."""
    from invgan.lasso import _relative_gap, _soft

    p, y, B, Bt, Y, lam_target = problem(a.m, a.basis, a.images)
    f64, b = torch.float64, a.images
    t0 = time.time()
    G = Bt @ B
    sigma0 = 1.0 / float(torch.linalg.eigvalsh(B @ Bt)[-1])
    t_prep, t = time.time() - t0, time.time()
    sig = torch.full((b,), sigma0, dtype=f64)
    w, xi = torch.zeros(b, B.shape[1], dtype=f64), -Y.clone()
    Btxi = xi @ B
    lamv = torch.clamp(Btxi.abs().amax(1) * a.eta, min=lam_target)
    best_w, best_p, best_d = w.clone(), torch.full((b,), INF, dtype=f64), torch.full((b,), -INF, dtype=f64)
    rows, newton, k_max = torch.arange(b), 0, 0
    for outer in range(a.outer):
        if not len(rows):
            break
        wr, xr, Yr, sr, Bx, lam = w[rows], xi[rows], Y[rows], sig[rows][:, None], Btxi[rows], lamv[rows]

        def psi(Bx_, xr_):  # the inner objective (up to a constant) and the prox point
            q = _soft(wr - sr * Bx_, sr * lam[:, None])
            return 0.5 * xr_.pow(2).sum(1) + (Yr * xr_).sum(1) + q.pow(2).sum(1) / (2 * sr[:, 0]), q
        ps, q = psi(Bx, xr)
        g0 = None
        for _ in range(20):  # Newton steps on the inner problem
            grad = xr + Yr - q @ Bt
            gn = grad.norm(dim=1)
            g0 = gn if g0 is None else g0
            done = gn <= 0.1 * torch.minimum((q - wr).norm(dim=1) / sr[:, 0], g0) + 1e-12 * Yr.norm(dim=1)
            if bool(done.all()):
                break
            J = q != 0
            K = int(J.sum(1).max())
            newton, k_max = newton + 1, max(k_max, K)
            idx = torch.argsort(J.to(torch.int8), dim=1, descending=True, stable=True)[:, :K]
            uf = torch.gather(J, 1, idx).to(f64)
            GJ = G[idx[:, :, None], idx[:, None, :]] * (uf[:, :, None] * uf[:, None, :]) + torch.diag_embed(uf / sr + 1 - uf)
            rhs = torch.gather(grad @ B, 1, idx) * uf
            s = torch.cholesky_solve(rhs[:, :, None], torch.linalg.cholesky(GJ))[:, :, 0] * uf
            d = -(grad - torch.zeros_like(wr).scatter_(1, idx, s) @ Bt)  # -(I + sigma B_J B_J^T)^-1 grad
            d = torch.where(done[:, None], torch.zeros_like(d), d)
            Bd, slope, step = d @ B, (grad * d).sum(1), torch.ones(len(rows), dtype=f64)
            for _ in range(40):  # Armijo backtracking
                pn, qn = psi(Bx + step[:, None] * Bd, xr + step[:, None] * d)
                ok = pn <= ps + 1e-4 * step * slope + 1e-14 * ps.abs()
                if bool(ok.all()):
                    break
                step = torch.where(ok, step, step / 2)
            xr, Bx, ps, q = xr + step[:, None] * d, Bx + step[:, None] * Bd, pn, qn
        w[rows], xi[rows], Btxi[rows] = q, xr, Bx
        primal, dual = _primal_dual(Yr, q, B, Bt, lam)
        dual = torch.maximum(dual, _dual_value(-xr, -Bx, Yr, lam))
        better = primal < best_p[rows]
        best_w[rows] = torch.where(better[:, None], q, best_w[rows])
        best_p[rows], best_d[rows] = torch.minimum(primal, best_p[rows]), torch.maximum(dual, best_d[rows])
        gap = _relative_gap(best_p[rows], best_d[rows])
        final = lam <= lam_target
        conv = gap <= torch.where(final, a.tol, 1e-2)
        sig[rows] = torch.clamp(sig[rows] * torch.where(conv, 1.0, 5.0), max=1e6 * sigma0)
        nxt = rows[conv & ~final]  # the next stage: lambda falls, the dual point is scaled into its set
        if len(nxt):
            new = torch.clamp(lamv[nxt] * a.eta, min=lam_target)
            xi[nxt], Btxi[nxt] = xi[nxt] * (new / lamv[nxt])[:, None], Btxi[nxt] * (new / lamv[nxt])[:, None]
            lamv[nxt], best_p[nxt], best_d[nxt] = new, INF, -INF
        rows = rows[~(conv & final)]
    gap = _relative_gap(best_p, best_d)
    ts = time.time() - t
    print(f"ssnal: {ts:.1f} s ({ts / b:.3f} s/image; B^T B and sigma0 {t_prep:.1f} s), {newton} Newton steps, "
          f"largest active set {k_max}, largest certified gap {float(gap.max()):.1e}", flush=True)
    t = time.time()
    h = lasso_homotopy(y, p, a.basis)
    th = time.time() - t
    ph = _primal_dual(Y, h.w.reshape(b, -1).double(), B, Bt, lam_target)[0]
    rel = (best_p - ph) / ph
    print(f"homotopy: {th:.1f} s ({th / b:.3f} s/image); ssnal's objective against it {float(rel.min()):+.1e} "
          f"to {float(rel.max()):+.1e} (relative)")


def _woodbury(K, Y, rho):
    """ADMM's factorisation for rho: L L^T = K + rho I (K = B B^T), M = (K + rho I)^-1 and g = Y M, so that
    w_y = g B (float64)."""
    L = torch.linalg.cholesky(K + rho * torch.eye(K.shape[0], dtype=K.dtype))
    return L, torch.cholesky_inverse(L), torch.cholesky_solve(Y.T, L).T


def admm_map(B, Bt, Y, lam, rho, relax):
    """ADMM's iteration as lasso_admm runs it (float32, the Woodbury w-step with (B B^T + rho I)^-1),
    as a map of v = z + u (z = v - clip(v), u = clip(v): ``_soft_split``); the certificate at v (float64:
    the dual at z's residual and at the preimage of rho u); and the threshold lam / rho."""
    K = B @ Bt
    _, M, g = _woodbury(K, Y, rho)
    P = torch.cholesky_inverse(torch.linalg.cholesky(K + 1e-12 * float(K.diagonal().mean())
                                                     * torch.eye(K.shape[0], dtype=K.dtype)))
    wy = g @ B
    f = torch.float32
    Btf, Mf, Bf, wyr, Pf, thr = Bt.to(f), M.to(f), B.to(f), (relax * wy).to(f), P.to(f), lam / rho

    def step(v):
        z, u = _soft_split(v.clone(), thr)  # v stays as it is (Anderson keeps it)
        return torch.add(z, u, alpha=1 - relax).add_(wyr).addmm_(((z - u) @ Btf) @ Mf, Bf, alpha=-relax)

    def gap(v):
        z, u = _soft_split(v.clone(), thr)
        primal, dual = _primal_dual(Y, z.double(), B, Bt, lam)
        th = (((rho * u) @ Btf) @ Pf).double()
        return primal, torch.maximum(dual, _dual_value(th, th @ B, Y, lam))

    return step, gap, thr


def admm_points(B, Bt, Y, lam, basis, at):
    """ADMM as ``admm_map`` iterates it (the production rho for the basis) from v = 0: after each
    iteration count in ``at``, yields (iterations, v, z = soft(v) (float32), the certificate at v)."""
    step, gap, thr = admm_map(B, Bt, Y, lam, admm_rho(PAPER_ALPHA[basis], lam), ADMM_RELAX)
    v = torch.zeros(Y.shape[0], B.shape[1])
    for it in range(1, max(at) + 1):
        v = step(v)
        if it in at:
            yield it, v, _soft_split(v.clone(), thr)[0], gap


def cmd_anderson(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    step, gap, _ = admm_map(B, Bt, Y, lam, admm_rho(PAPER_ALPHA[a.basis], lam), ADMM_RELAX)
    for k in a.every:
        v = torch.zeros(a.images, B.shape[1])
        hist, extra, best_d = [], 0, torch.full((a.images,), -INF, dtype=torch.float64)
        done = torch.full((a.images,), -1)
        t = time.time()
        for it in range(1, a.iters + 1):
            vn = step(v)
            if k:
                hist = (hist + [vn])[-(k + 1):]
                if it % k == 0 and len(hist) == k + 1:
                    U = torch.stack([q - p_ for p_, q in zip(hist[:-1], hist[1:])], 1).double()
                    UU = U @ U.transpose(1, 2)
                    reg = 1e-8 * UU.diagonal(dim1=1, dim2=2).mean(1)
                    c = torch.linalg.solve(UU + reg[:, None, None] * torch.eye(k, dtype=torch.float64),
                                           torch.ones(a.images, k, 1, dtype=torch.float64))
                    ve = (torch.stack(hist[1:], 2) @ (c / c.sum(1, keepdim=True)).float()).squeeze(2)
                    fe = step(ve)
                    extra += 1
                    keep = (fe - ve).norm(dim=1) < (hist[-1] - hist[-2]).norm(dim=1)
                    vn, hist = torch.where(keep[:, None], fe, vn), []
            v = vn
            if it % 20 == 0:
                primal, dual = gap(v)
                best_d = torch.maximum(best_d, dual)
                done[((primal - best_d) <= 1e-4 * primal) & (done < 0)] = it
                if bool((done >= 0).all()):
                    break
        ran = done.float()
        print(f"  every {k}: iterations to 1e-4 mean {ran.mean():.0f}, largest {int(ran.max())} (-1: not in "
              f"{a.iters}); evaluations of the iteration {it + extra}; {time.time() - t:.1f} s", flush=True)


def cmd_newton(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    for it, _, z, _ in admm_points(B, Bt, Y, lam, a.basis, a.at):
        for passes in (2, 4):
            t = time.time()
            _, _, primal, dual = _newton_rows(z.double(), Bt, Y, lam, passes=passes)
            print(f"  after {it} iterations, {passes} passes: {time.time() - t:.2f} s, certified 1e-4 on "
                  f"{int((_relative_gap(primal, dual) <= 1e-4).sum())} of {a.images}", flush=True)


def cmd_rho_oracle(a):
    from invgan.lasso import lasso_admm

    _, p, y = faces(a.m, a.images)
    lam = a.m * PAPER_ALPHA[a.basis]
    its = {}
    for c in a.c:
        its[c] = lasso_admm(y, p, a.basis, tol=1e-4, rho=c * lam).image_iterations.double()
        print(f"  rho = {c} lam: iterations mean {float(its[c].mean()):.2f}, largest {int(its[c].max())}", flush=True)
    best = torch.stack(list(its.values())).min(0).values
    print(f"  each image at its own best c: mean {float(best.mean()):.2f}")


def _admm64(B, Bt, K, Y, lam, z, u, iters, check=None):
    """ADMM (rho = 2 lam, relax ADMM_RELAX, float64) from (z, u) for ``iters`` iterations; ``check(z)`` every
    10 iterations returns which rows are done, and the first such iteration per row is returned."""
    rho = 2 * lam
    _, M, g = _woodbury(K, Y, rho)
    wy = g @ B
    first = torch.full((Y.shape[0],), -1)
    for i in range(iters):
        c = ((z - u) @ Bt) @ M
        z, u = _soft_split(torch.add(z, u, alpha=1 - ADMM_RELAX).add_(ADMM_RELAX * wy).addmm_(c, B, alpha=-ADMM_RELAX),
                           lam / rho)
        if check is not None and (i + 1) % 10 == 0:
            first = torch.where((first < 0) & check(z), i + 1, first)
            if bool((first >= 0).all()):
                break
    return z, u, first


def cmd_continuation(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    K = B @ Bt
    ex = lasso_homotopy(y, p, a.basis).w.reshape(a.images, -1).double()
    obj = lambda w: 0.5 * ((Y - w @ Bt) ** 2).sum(1) + lam * w.abs().sum(1)  # noqa: E731
    p_ex, s_ex = obj(ex), torch.sign(ex)
    done = lambda z: (torch.sign(z) == s_ex).all(1) & ((obj(z) - p_ex) / p_ex < 1e-6)  # noqa: E731
    zero = torch.zeros_like(ex)
    *_, f = _admm64(B, Bt, K, Y, lam, zero, zero.clone(), a.iters, done)
    print(f"  cold: iterations mean {float(f.double().mean()):.1f}, largest {int(f.max())} (-1: not in {a.iters})")
    for scales, pre in (((2,), 100), ((2,), 200), ((4, 2), 100), ((1.5,), 150)):
        z, u = zero.clone(), zero.clone()
        for sc in scales:
            z, u, _ = _admm64(B, Bt, K, Y, sc * lam, z, u, pre)
        *_, f = _admm64(B, Bt, K, Y, lam, z, u, a.iters, done)
        tot = f.double() + pre * len(scales)
        print(f"  warm start from lam x {scales}, {pre} iterations each: then {float(f.double().mean()):.1f}, "
              f"in all mean {float(tot.mean()):.1f}, largest {int(tot.max())}", flush=True)


def cmd_event_search(a):
    b, n = a.images, 12288

    def two_branch(c, x, lb, active):
        return torch.minimum(torch.where(x < 1, (lb - c) / (1 - x), INF),
                             torch.where(x > -1, (lb + c) / (1 + x), INF)).masked_fill_(active, INF)

    def one_branch(c, x, lb, active):
        s = torch.addcmul(c, x, lb, value=-1).sign_()
        den = torch.addcmul(torch.ones((), dtype=c.dtype), s, x, value=-1)
        g = torch.addcmul(lb, s, c, value=-1).div_(den)
        odd = (den <= 0).nonzero(as_tuple=True)  # rounding left |c_j| >= lam: the two-branch formula there
        if len(odd[0]):
            g[odd] = two_branch(c[odd], x[odd], lb.expand_as(c)[odd], torch.zeros(len(odd[0]), dtype=torch.bool))
        return g.masked_fill_(active, INF)

    gen = torch.Generator().manual_seed(0)
    for scale_c, scale_a in ((0.99, 0.5), (0.99, 2.0), (1.01, 2.0)):  # the last: some |c_j| > lam
        lb = (torch.rand(b, 1, generator=gen, dtype=torch.float64) + 1)
        c = (torch.rand(b, n, generator=gen, dtype=torch.float64) * 2 - 1) * lb * scale_c
        x = torch.randn(b, n, generator=gen, dtype=torch.float64) * scale_a
        active = torch.rand(b, n, generator=gen) < 0.01
        old, new = two_branch(c, x, lb, active), one_branch(c, x, lb, active)
        same = bool(((old == new) | (old.isnan() & new.isnan())).all())
        times = []
        for f in (two_branch, one_branch):
            f(c, x, lb, active)
            t = time.perf_counter()
            for _ in range(20):
                f(c, x, lb, active)
            times.append((time.perf_counter() - t) / 20 * 1e3)
        print(f"  |c| <= {scale_c} lam, a ~ N(0, {scale_a}^2): bit for bit equal {same}; two branches {times[0]:.2f} ms, "
              f"one branch {times[1]:.2f} ms", flush=True)


def cmd_lipschitz(a):
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh

    p = GaussianCS(a.m, (3, 64, 64), noise_std=0.01, seed=0)
    t = time.perf_counter()
    power = operator_norm_sq(p, (3, 64, 64), "cpu")
    tp = time.perf_counter() - t
    count = [0]

    def matvec(v):
        count[0] += 1
        v = torch.from_numpy(np.asarray(v, dtype=np.float32).ravel())
        return (p.matrix.T @ (p.matrix @ v)).double().numpy()

    t = time.perf_counter()
    op = LinearOperator((p.n, p.n), matvec=matvec, dtype=np.float64)
    lanczos = float(eigsh(op, k=1, which="LA", tol=1e-3, ncv=20, v0=np.ones(p.n))[0][0])
    print(f"  m = {a.m}: power iteration {power:.5e} ({tp:.2f} s), Lanczos {lanczos:.5e} ({count[0]} matvecs, "
          f"{time.perf_counter() - t:.2f} s): the power iteration is {100 * (1 - power / lanczos):.2f}% low")


def ms(f, reps: int = 20) -> float:
    """Milliseconds per call of f, after one untimed call."""
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) / reps * 1e3


def cmd_sparse_product(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    _, _, z, _ = next(admm_points(B, Bt, Y, lam, a.basis, [a.at]))
    z = z.contiguous()
    Btf = Bt.float().contiguous()

    csr = z.to_sparse_csr()
    print(f"  after {a.at} iterations: {float((z != 0).sum(1).double().mean()):.0f} nonzeros per row of "
          f"{z.shape[1]}; dense z B^T {ms(lambda: z @ Btf):.2f} ms, to_sparse_csr {ms(lambda: z.to_sparse_csr()):.2f} "
          f"ms, CSR product {ms(lambda: csr @ Btf):.2f} ms (largest difference "
          f"{float((csr @ Btf - z @ Btf).abs().max()):.1e})")


def _cd_kernel():
    import numba as nb
    import numpy as np

    @nb.njit(parallel=True, cache=True)
    def cd(G, c, v, q, lam, yy, tol, max_epochs, used, epochs, gaps):  # pragma: no cover - compiled
        # per row: coordinate descent on 1/2 v'Gv - c'v + lam |v|_1 over its first used[i] slots, q = G v - c kept;
        # every 5 epochs the subproblem's relative gap (its dual at the scaled residual, from q alone)
        for i in nb.prange(G.shape[0]):
            p, ep, gap = used[i], 0, np.inf
            while ep < max_epochs:
                for j in range(p):
                    gjj = G[i, j, j]
                    if gjj <= 0:
                        continue
                    old = v[i, j]
                    zz, t = old - q[i, j] / gjj, lam / gjj
                    new = zz - t if zz > t else (zz + t if zz < -t else 0.0)
                    if new != old:
                        v[i, j] = new
                        for k in range(p):
                            q[i, k] += (new - old) * G[i, j, k]
                ep += 1
                if ep % 5 == 0:
                    cv, vq, l1, ginf = 0.0, 0.0, 0.0, 0.0
                    for k in range(p):
                        cv += c[i, k] * v[i, k]
                        vq += v[i, k] * q[i, k]
                        l1 += abs(v[i, k])
                        ginf = max(ginf, abs(q[i, k]))
                    rr, ry = yy[i] - cv + vq, yy[i] - cv  # ||r||^2 = y'y - 2 c'v + v'Gv, v'Gv = v'q + c'v
                    primal = 0.5 * rr + lam * l1
                    s = 1.0 if ginf <= lam else lam / ginf
                    gap = (primal - (s * ry - 0.5 * s * s * rr)) / primal
                    if gap <= tol:
                        break
            epochs[i], gaps[i] = ep, gap
    return cd


def cmd_working_set(a):
    from invgan.lasso import lasso_admm

    cd = _cd_kernel()
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    b, n = Y.shape[0], B.shape[1]
    yy = Y.pow(2).sum(1)
    cd(torch.eye(2, dtype=torch.float64)[None].numpy(), torch.zeros(1, 2, dtype=torch.float64).numpy(),
       torch.zeros(1, 2, dtype=torch.float64).numpy(), torch.zeros(1, 2, dtype=torch.float64).numpy(), 1.0,
       torch.ones(1, dtype=torch.float64).numpy(), 1e-4, 5, torch.full((1,), 2).numpy(),
       torch.zeros(1, dtype=torch.int64).numpy(), torch.zeros(1, dtype=torch.float64).numpy())  # compile
    t = time.time()
    w = torch.zeros(b, n, dtype=torch.float64)
    g = Y @ B  # B^T r at w = 0
    size, gap = torch.full((b,), 64), torch.full((b,), INF, dtype=torch.float64)
    for outer in range(1, a.outer + 1):
        nsupp = (w != 0).sum(1)
        size = torch.maximum(size, 2 * nsupp).clamp(max=min(n, a.m))
        score = torch.where(w != 0, torch.full_like(g, -INF), lam - g.abs())  # support first, then nearest
        idx = torch.topk(-score, int(size.max()), 1).indices
        BW = Bt[idx]
        G = BW @ BW.transpose(1, 2)
        c = (BW @ Y[..., None]).squeeze(-1)
        v = torch.gather(w, 1, idx).contiguous()
        q = ((G @ v[..., None]).squeeze(-1) - c).contiguous()
        ep, sg = torch.zeros(b, dtype=torch.int64), torch.zeros(b, dtype=torch.float64)
        sub_tol = float((0.3 * gap).clamp(min=a.tol / 10, max=1.0).min()) if outer > 1 else a.tol / 10
        cd(G.numpy(), c.numpy(), v.numpy(), q.numpy(), lam, yy.numpy(), sub_tol, a.epochs, size.numpy(),
           ep.numpy(), sg.numpy())
        w = torch.zeros_like(w).scatter_(1, idx, v)
        primal, dual = _primal_dual(Y, w, B, Bt, lam)
        gap = _relative_gap(primal, dual)
        g = (Y - w @ Bt) @ B
        print(f"  round {outer}: working set {int(size.max())}, epochs {int(ep.max())}, support mean "
              f"{float((w != 0).sum(1).double().mean()):.1f}, largest gap {float(gap.max()):.2e}", flush=True)
        if bool((gap <= a.tol).all()):
            break
    t_ws = time.time() - t
    t = time.time()
    ref = lasso_admm(y, p, a.basis, tol=a.tol)
    t_admm = time.time() - t
    primal_ref = _primal_dual(Y, ref.w.reshape(b, -1).double(), B, Bt, lam)[0]
    diff = (_primal_dual(Y, w, B, Bt, lam)[0] - primal_ref) / primal_ref
    print(f"  working sets: {t_ws / b:.3f} s/image, {outer} rounds, certified {int((gap <= a.tol).sum())} of {b}; "
          f"lasso_admm {t_admm / b:.3f} s/image; objective against it {float(diff.min()):+.1e} to "
          f"{float(diff.max()):+.1e}")


def cmd_newton_trigger(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    step, gap, thr = admm_map(B, Bt, Y, lam, admm_rho(PAPER_ALPHA[a.basis], lam), ADMM_RELAX)
    for maxch in a.maxch:
        v = torch.zeros(a.images, B.shape[1])
        done = torch.full((a.images,), -1)
        best_d = torch.full((a.images,), -INF, dtype=torch.float64)
        prev = tried_at = None
        tries, t_newton, t = 0, 0.0, time.time()
        for it in range(1, a.iters + 1):
            v = step(v)
            if it % 20:
                continue
            primal, dual = gap(v)
            best_d = torch.maximum(best_d, dual)
            done[((primal - best_d) <= 1e-4 * primal) & (done < 0)] = it
            z = _soft_split(v.clone(), thr)[0]
            sg = torch.sign(z).to(torch.int8)
            if maxch >= 0 and prev is not None:
                new = (sg != tried_at).any(1) if tried_at is not None else torch.ones_like(done, dtype=torch.bool)
                rows = (((sg != prev).sum(1) <= maxch) & new & (done < 0)).nonzero().squeeze(1)
                if len(rows):
                    t0 = time.time()
                    _, _, p_n, d_n = _newton_rows(z[rows].double(), Bt, Y[rows], lam, passes=a.passes)
                    t_newton += time.time() - t0
                    tries += len(rows)
                    done[rows[_relative_gap(p_n, d_n) <= 1e-4]] = it
                    tried_at = sg.clone() if tried_at is None else tried_at
                    tried_at[rows] = sg[rows]
            prev = sg
            if bool((done >= 0).all()):
                break
        ran = done.float()
        print(f"  maxch {maxch}: iterations to 1e-4 mean {ran.mean():.0f}, largest {int(ran.max())} (-1: not in "
              f"{a.iters}); Newton tries {tries}, {t_newton / a.images:.3f} s/image; {time.time() - t:.1f} s in all",
              flush=True)


def cmd_projected_dual(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    for it, v, z, gap in admm_points(B, Bt, Y, lam, a.basis, a.at):
        z = z.double()
        primal, dual = gap(v)  # the dual at z's residual and at the preimage of rho u (lasso_admm's, less extrapolation)
        r = Y - z @ Bt
        t = time.time()
        act = z != 0
        idx = torch.argsort(act.to(torch.int8), dim=1, descending=True, stable=True)[:, :int(act.sum(1).max())]
        am = torch.gather(act, 1, idx)
        BJ = Bt[idx] * am[..., None]
        G = BJ @ BJ.transpose(1, 2)
        G.diagonal(dim1=1, dim2=2).add_((~am).double())
        rhs = ((BJ @ r[..., None]).squeeze(-1) - lam * torch.sign(torch.gather(z, 1, idx))) * am
        L, _ = torch.linalg.cholesky_ex(G)
        th = r - (BJ.transpose(1, 2) @ torch.cholesky_solve(rhs[..., None], L)).squeeze(-1)
        proj = torch.maximum(dual, _dual_value(th, th @ B, Y, lam))
        secs = time.time() - t
        g0, g1 = _relative_gap(primal, dual), _relative_gap(primal, proj)
        print(f"  after {it} iterations: lasso_admm's dual points certify {int((g0 <= 1e-4).sum())} of {a.images} "
              f"(median gap {float(g0.median()):.1e}); projected {int((g1 <= 1e-4).sum())} (median "
              f"{float(g1.median()):.1e}, largest {float(g1.max()):.1e}), {secs / a.images:.3f} s/image", flush=True)


def _lazy_kernel():
    import numba as nb
    import numpy as np

    @nb.njit(parallel=True, cache=True, fastmath=True)
    def lazy(bounds, colptr, cols, faces, Bt, e, zc, uc, r, thr, acc):  # pragma: no cover - compiled
        # per watched (face, coefficient), in columns of B^T: v = z + (1 - r) u + r B_j^T e_face, its split, and
        # B z accumulated per thread (acc[t]); each row of B^T read once per iteration
        m = Bt.shape[1]
        for t in nb.prange(bounds.shape[0] - 1):
            a = acc[t]
            a[:] = 0
            for ci in range(bounds[t], bounds[t + 1]):
                row = Bt[cols[ci]]
                for p in range(colptr[ci], colptr[ci + 1]):
                    ef = e[faces[p]]
                    s = np.float32(0)
                    for k in range(m):
                        s += row[k] * ef[k]
                    v = zc[p] + (1 - r) * uc[p] + r * s
                    c = min(max(v, -thr), thr)
                    uc[p] = c
                    zz = v - c
                    zc[p] = zz
                    if zz != 0:
                        af = a[faces[p]]
                        for k in range(m):
                            af[k] += zz * row[k]
    return lazy


def cmd_lazy_window(a):
    import numpy as np

    from invgan import _kernels

    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    rho, r = admm_rho(PAPER_ALPHA[a.basis], lam), ADMM_RELAX
    _, M, g = _woodbury(B @ Bt, Y, rho)
    M, g = M.float(), g.float()  # w_y = g B
    Bf, Btf, thr = B.float().contiguous(), Bt.float().contiguous(), lam / rho
    colnorm = Bf.norm(dim=0) * (1 + 1e-5)
    n, W = B.shape[1], max(a.windows)
    z, u = torch.zeros(a.images, n), torch.zeros(a.images, n)
    win = None
    for it in range(1, max(a.at) + W + 1):
        e = g - ((z - u) @ Btf) @ M
        v = z + (1 - r) * u + r * (e @ Bf)
        if win is not None:
            t = it - win["k0"]
            win["D"] = (1 - r) * win["D"] + r * (e - win["e0"])
            win["Dmax"] = torch.maximum(win["Dmax"], win["D"].norm(dim=1))
            win["crossed"] |= (v.abs() > thr) & win["inact"]
            if t in a.windows:
                v0, tau = win["v0"], win["tau"]
                slack = thr - torch.maximum(torch.maximum(v0.abs(), tau.abs()), ((1 - r) * v0 + r * tau).abs()) - 1e-5 * thr
                watched = ~win["inact"] | (slack <= colnorm * win["Dmax"][:, None])
                print(f"  from {win['k0']}, window {t}: support {float((~win['inact']).double().mean()):.3f} of n, "
                      f"watched {float(watched.double().mean()):.3f}, crossed {float(win['crossed'].double().mean()):.4f}, "
                      f"||D|| {float(win['Dmax'].mean()):.1e}", flush=True)
                if t == W:
                    win["watched"] = watched
            if t == W:
                last, win = win, None
        if it in a.at:
            win = {"k0": it, "v0": v.clone(), "e0": e.clone(), "tau": e @ Bf, "D": torch.zeros_like(e),
                   "Dmax": torch.zeros(a.images), "inact": v.abs() <= thr,
                   "crossed": torch.zeros(a.images, n, dtype=torch.bool)}
        z, u = _soft_split(v, thr)
    # the fused kernel at the last window's watched sets, against what lasso_admm does per iteration
    watched = last["watched"]
    pairs = watched.T.nonzero()  # (j, face), by j
    ucols, counts = torch.unique_consecutive(pairs[:, 0], return_counts=True)
    colptr = torch.zeros(len(ucols) + 1, dtype=torch.int64)
    colptr[1:] = counts.cumsum(0)
    nt = torch.get_num_threads()
    bounds = torch.searchsorted(colptr, torch.linspace(0, int(colptr[-1]), nt + 1).long()).clamp(max=len(ucols))
    bounds[0], bounds[-1] = 0, len(ucols)
    zc, uc = z[pairs[:, 1], pairs[:, 0]].contiguous(), u[pairs[:, 1], pairs[:, 0]].contiguous()
    acc = torch.zeros(nt, a.images, a.m)
    kern = _lazy_kernel()
    e = (g - ((z - u) @ Btf) @ M).contiguous()
    sp = _kernels.SparseProduct(Btf)

    def fused():
        kern(*(x.numpy() for x in (bounds, colptr, ucols, pairs[:, 1].int(), Btf, e, zc.clone(), uc.clone())),
             np.float32(r), np.float32(thr), acc.numpy())

    def dense():
        sp.split(torch.add(z, u, alpha=1 - r).addmm_(e, Bf, alpha=r), thr)

    print(f"  at {max(a.at) + W}: {len(pairs) / a.images:.0f} watched per face ({len(ucols)} columns in all): fused "
          f"kernel {ms(fused):.2f} ms; dense product and SparseProduct.split {ms(dense):.2f} ms", flush=True)


def _admm_eig(B, Bt, Y, lam, rho, relax):
    """ADMM's state and step in float64 with the Woodbury w-step through K = B B^T = Q diag(ev) Q^T: w = q + s B,
    s = (K + rho I)^-1 (y - B q), q = z - u, for a per-face rho (b,); and K^-1 for the preimage dual point.
    Returns (step, duals)."""
    ev, Q = torch.linalg.eigh(B @ Bt)

    def solve(r, shift):  # (K + shift I)^-1 r per row, shift (b,) or 0
        return ((r @ Q) / (ev[None] + (shift[:, None] if torch.is_tensor(shift) else shift))) @ Q.T

    def step(z, ld, tau):  # ld: the unscaled dual (u = -ld / tau); returns w, lambda-hat, z', ld'
        q = z + ld / tau[:, None]
        w = q + solve(Y - q @ Bt, tau) @ B
        lhat = ld + tau[:, None] * (z - w)
        wh = relax * w + (1 - relax) * z
        v = wh - ld / tau[:, None]
        zn = torch.sign(v) * (v.abs() - (lam / tau)[:, None]).clamp_min(0)
        return w, lhat, zn, ld + tau[:, None] * (zn - wh)

    def duals(z, ld):  # the residual's and the preimage's dual values (scaled into the feasible set)
        primal, dres = _primal_dual(Y, z, B, Bt, lam)
        th = solve((-ld) @ Bt, 0.0)
        return primal, dres, th, _dual_value(th, th @ B, Y, lam)

    return step, duals


def cmd_adaptive_rho(a):
    _, _, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    b, n = Y.shape[0], B.shape[1]
    for spec in a.modes:
        mode, relax = spec.split(":")
        step, duals = _admm_eig(B, Bt, Y, lam, a.c * lam, float(relax))
        tau = torch.full((b,), a.c * lam, dtype=torch.float64)
        z, ld = torch.zeros(b, n, dtype=torch.float64), torch.zeros(b, n, dtype=torch.float64)
        done, best_d, k0, t0 = torch.full((b,), -1), torch.full((b,), -INF, dtype=torch.float64), None, time.time()
        for it in range(1, a.iters + 1):
            zold = z
            w, lhat, z, ld = step(z, ld, tau)
            if mode == "spectral":  # Xu et al. 2017 with A = I, B = -I: H's curvature from (w, lambda-hat),
                # G's from (-z, ld)
                if k0 is not None and it % 2 == 0:
                    def estimate(dl, dh):
                        ll, hl, hh = (dl * dl).sum(1), (dh * dl).sum(1), (dh * dh).sum(1)
                        sd, mg = ll / hl, hl / hh
                        cor = hl / (hh.sqrt() * ll.sqrt()).clamp_min(1e-300)
                        return torch.where(2 * mg > sd, mg, sd - mg / 2), cor
                    al, ac = estimate(lhat - k0[0], w - k0[1])
                    be, bc = estimate(ld - k0[2], k0[3] - z)
                    oka, okb = (ac > 0.2) & (al > 0), (bc > 0.2) & (be > 0)
                    new = torch.where(oka & okb, (al * be).clamp_min(0).sqrt(),
                                      torch.where(oka, al, torch.where(okb, be, tau)))
                    tau = torch.where(torch.isfinite(new) & (new > 0), new, tau)
                if k0 is None or it % 2 == 0:
                    k0 = (lhat, w, ld, z)
            elif mode == "balance" and it % 10 == 0:
                rp, sd = (w - z).norm(dim=1), (tau[:, None] * (z - zold)).norm(dim=1)
                tau = torch.where(rp > 10 * sd, tau * 2, torch.where(sd > 10 * rp, tau / 2, tau))
            if it % a.every == 0:
                primal, dres, _, dpre = duals(z, ld)
                best_d = torch.maximum(best_d, torch.maximum(dres, dpre))
                done = torch.where((done < 0) & (_relative_gap(primal, best_d) <= 1e-4), it, done)
                if bool((done >= 0).all()):
                    break
        d = done.double()
        print(f"  {mode}, relax {relax}: iterations to 1e-4 mean {d.mean():.1f}, largest {int(d.max())} (-1: not in "
              f"{a.iters}); rho / lam at the end, median {float(tau.median()) / lam:.3g}; {time.time() - t0:.1f} s",
              flush=True)


def cmd_dual_lag(a):
    p, y, B, Bt, Y, lam = problem(a.m, a.basis, a.images)
    exact = lasso_homotopy(y, p, a.basis).w.reshape(a.images, -1).double()
    pstar = _primal_dual(Y, exact, B, Bt, lam)[0]
    rho = admm_rho(PAPER_ALPHA[a.basis], lam)
    step, duals = _admm_eig(B, Bt, Y, lam, rho, ADMM_RELAX)
    tau = torch.full((a.images,), rho, dtype=torch.float64)
    z, ld = torch.zeros_like(exact), torch.zeros_like(exact)
    pre, res = [], []
    G = _Gram(B, Bt) if a.one_solve else None  # (the exact solves on z's supports: ``_support_solution``)
    for it in range(1, max(a.at) + 1):
        z, ld = step(z, ld, tau)[2:]
        if it % ADMM_SPACING and it not in a.at:
            continue
        primal, dres, th, dpre = duals(z, ld)  # (once per iteration that needs them)
        if it % ADMM_SPACING == 0:
            pre, res = (pre + [th])[-(EXTRAPOLATION + 1):], (res + [Y - z @ Bt])[-(EXTRAPOLATION + 1):]
        if it not in a.at:
            continue
        d = torch.maximum(dres, dpre)
        for hist in (pre, res):
            if len(hist) == EXTRAPOLATION + 1:
                e = _extrapolate(hist)
                d = torch.maximum(d, _dual_value(e, e @ B, Y, lam))
        lag = (pstar - d) / pstar
        line = (f"  after {it}: primal excess median {float(((primal - pstar) / pstar).median()):.1e}, dual lag median "
                f"{float(lag.median()):.1e}, largest {float(lag.max()):.1e}; support differs in "
                f"{float(((z != 0) ^ (exact != 0)).sum(1).double().median()):.0f} coefficients (median)")
        if a.one_solve:  # the exact Lasso on J = supp(z) with z's signs (one factorisation per face, no line search)
            act = z != 0
            idx = torch.argsort(act.to(torch.int8), dim=1, descending=True, stable=True)[:, :int(act.sum(1).max())]
            used = act.gather(1, idx)
            sgn = torch.sign(z.gather(1, idx)) * used
            w = _support_solution(G, Y @ B, idx, used, sgn, torch.full((a.images,), lam, dtype=torch.float64),
                                  inverse=False)[1]
            pw, dw = _primal_dual(Y, w, B, Bt, lam)
            kept = ((torch.sign(w) == torch.sign(z)) | (z == 0)).all(1)
            line += (f"; one exact solve on supp(z): certified 1e-4 on {int((_relative_gap(pw, dw) <= 1e-4).sum())} of "
                     f"{a.images}, signs all kept on {int(kept.sum())}")
        if a.span:
            import cvxpy as cp
            import numpy as np

            best = []
            for i in range(min(a.span, a.images)):
                cands = torch.stack([Y[i] - z[i] @ Bt, th[i]] + [h[i] for h in pre + res])
                c = cp.Variable(len(cands))
                t = cands.numpy().T @ c
                prob = cp.Problem(cp.Maximize(Y[i].numpy() @ t - 0.5 * cp.sum_squares(t)),
                                  [cp.abs((cands @ B).numpy().T @ c) <= lam])
                try:
                    prob.solve(solver="CLARABEL")
                    best.append((float(pstar[i]) - prob.value) / float(pstar[i]))
                except cp.error.SolverError:
                    pass
            if best:
                line += f"; the span's best dual lag median {float(np.median(best)):.1e} ({len(best)} faces)"
        print(line, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("support", "warm", "admm", "screen", "homotopy", "dual", "pdas", "ssnal", "anderson", "newton",
                 "rho-oracle", "continuation", "sparse-product", "event-search", "lipschitz", "working-set",
                 "newton-trigger", "projected-dual", "lazy-window", "adaptive-rho", "dual-lag"):
        s = sub.add_parser(name)
        s.add_argument("-m", type=int, default=500)
        s.add_argument("--basis", default="dct")
        s.add_argument("--images", type=int, default=16)
        if name == "warm":
            s.add_argument("--fista", type=int, default=200)
            s.add_argument("--admm", type=int, default=0, help="start from ADMM's point after this many iterations")
            s.add_argument("--max-steps", type=int, default=400)
            s.add_argument("--precision", choices=["f32", "f64"], default="f32")
        if name == "pdas":
            s.add_argument("--fista", type=int, default=2000)
            s.add_argument("--steps", type=int, default=10)
        if name == "admm":
            s.add_argument("--rho", type=float, default=0.3)
            s.add_argument("--relax", type=float, default=1.7)
            s.add_argument("--iters", type=int, default=3000)
            s.add_argument("--every", type=int, default=500)
            s.add_argument("--spacing", type=int, default=20)
            s.add_argument("--fast", action="store_true", help="restarted fast ADMM instead of over-relaxation")
            s.add_argument("--exact", action="store_true", help="also the homotopy's exact optimum (slow at m = 2500)")
        if name == "ssnal":
            s.add_argument("--eta", type=float, default=0.8, help="lambda's factor from stage to stage")
            s.add_argument("--tol", type=float, default=1e-8)
            s.add_argument("--outer", type=int, default=300)
        if name == "rho-oracle":
            s.add_argument("--c", type=float, nargs="+", default=[0.5, 1, 1.5, 2, 3, 4, 6], help="rho / lam")
        if name == "continuation":
            s.add_argument("--iters", type=int, default=3000)
        if name == "sparse-product":
            s.add_argument("--at", type=int, default=300)
        if name == "anderson":
            s.add_argument("--every", type=int, nargs="+", default=[0, 5, 10], help="K (0: plain ADMM)")
            s.add_argument("--iters", type=int, default=3000)
        if name == "newton":
            s.add_argument("--at", type=int, nargs="+", default=[400, 480], help="ADMM iterations before the steps")
        if name == "working-set":
            s.add_argument("--tol", type=float, default=1e-4)
            s.add_argument("--outer", type=int, default=40)
            s.add_argument("--epochs", type=int, default=10000)
        if name == "newton-trigger":
            s.add_argument("--maxch", type=int, nargs="+", default=[-1, 0, 2], help="-1: no Newton steps")
            s.add_argument("--passes", type=int, default=2)
            s.add_argument("--iters", type=int, default=3000)
        if name == "projected-dual":
            s.add_argument("--at", type=int, nargs="+", default=[300, 350, 400])
        if name == "lazy-window":
            s.add_argument("--at", type=int, nargs="+", default=[100, 200, 300, 400, 500], help="window starts")
            s.add_argument("--windows", type=int, nargs="+", default=[5, 10, 20, 40], help="window lengths")
        if name == "adaptive-rho":
            s.add_argument("--modes", nargs="+", default=["fixed:1.7", "fixed:1", "spectral:1", "balance:1.7"],
                           help="rule:relax, rule fixed, spectral or balance")
            s.add_argument("--c", type=float, default=2.0, help="the starting (and fixed) rho / lam")
            s.add_argument("--every", type=int, default=10, help="iterations between certificates")
            s.add_argument("--iters", type=int, default=3000)
        if name == "dual-lag":
            s.add_argument("--at", type=int, nargs="+", default=[100, 200, 300, 400, 500, 600, 700])
            s.add_argument("--span", type=int, default=0, help="faces for the span's best dual point (cvxpy)")
            s.add_argument("--one-solve", action="store_true", help="also one exact solve on z's support and signs")
    a = ap.parse_args(argv)
    {"support": cmd_support, "warm": cmd_warm, "admm": cmd_admm, "screen": cmd_screen,
     "homotopy": cmd_homotopy, "dual": cmd_dual, "pdas": cmd_pdas, "ssnal": cmd_ssnal, "anderson": cmd_anderson,
     "newton": cmd_newton, "rho-oracle": cmd_rho_oracle, "continuation": cmd_continuation,
     "sparse-product": cmd_sparse_product, "event-search": cmd_event_search,
     "lipschitz": cmd_lipschitz, "working-set": cmd_working_set, "newton-trigger": cmd_newton_trigger,
     "projected-dual": cmd_projected_dual, "lazy-window": cmd_lazy_window, "adaptive-rho": cmd_adaptive_rho,
     "dual-lag": cmd_dual_lag}[a.cmd](a)


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
