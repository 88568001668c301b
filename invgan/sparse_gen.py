"""Sparse-Gen (Dhar, Grover & Ermon, ICML 2018): a generator's output plus a sparse deviation.

    x = G(z) + Psi w,    min_{z, w}  mean_m (y - A (G(z) + Psi w))^2 + z_reg ||z||^2 + lam_nu ||w||_1

with Psi an orthonormal basis (DCT or Haar wavelet, ``invgan.bases``). CSGM's error stops
falling once m is large, because G(z) cannot leave the generator's range; the deviation Psi w
can, and it is sparse (compressible) in the basis, so it is recovered the way the Lasso recovers
an image, but only for what the generator misses.

``sparse_gen_reconstruct`` minimises the joint objective by block coordinate descent from a
latent-only start z0 (a CSGM solution, w = 0):

- w-step: for fixed z the problem in w is exactly the Lasso 1/(2m) ||r - A Psi w||^2 + alpha ||w||_1
  on the residual measurements r = y - A G(z), with alpha = lam_nu / 2; it is solved by
  ``invgan.lasso`` (the exact homotopy path for explicit-matrix operators up to
  ``HOMOTOPY_MAX_M``, else certified FISTA);
- z-step: for fixed w, CSGM's objective on y - A Psi w, by per-latent L-BFGS from the current z
  (``invgan.latent.lbfgs_latents``).

Each step is kept, image by image, only where it lowers the joint objective, so the result's
objective is never above the latent-only start's (``SparseGenResult.start_objective``).

The deviation's weight follows a fixed rule (``deviation_alpha``), not a per-cell tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from invgan.errors import InvganError, check_int, check_number
from invgan.physics import Physics

#: the deviation rule's constants (``deviation_kappa``): chosen on the first 16 of the 64 lowest CelebA
#: val ids at m = 500, 1000, 2500, 5000 and 10000 (scripts/sparse_gen_experiments.py kappa; README,
#: "Sparse-Gen"), where the best fixed kappa was >= 1, ~0.3, ~0.1, <= 0.03 and <= 0.03
RULE_C, RULE_P = 0.013, 1.5


def deviation_kappa(m: int, n: int) -> float:
    """kappa(m) = RULE_C * (n/m - 1)^RULE_P: the fraction of the universal threshold the rule uses.

    (n - m)/m is the number of directions A does not measure per direction it does: the aliasing
    that hides the deviation under the residual's noise-like part. It is large at small m (kappa
    > 1: the deviation stays 0 unless it stands out of the residual) and falls to 0 as m nears n
    (kappa -> 0: basis pursuit on the residual, which recovers it)."""
    return RULE_C * max(n / m - 1.0, 0.0) ** RULE_P


def deviation_alpha(r: torch.Tensor, n: int, noise_std: float = 0.0, kappa: float | None = None,
                    m: int | None = None) -> torch.Tensor:
    """Per image, the l1 weight alpha of the deviation's Lasso (lam_nu = 2 alpha in the objective).

    alpha = sqrt(2 log(n) / m) * max(kappa * rms(r), noise_std),   kappa = deviation_kappa(m, n)

    where r (B, m) is the start's residual y - A G(z0), n the number of coefficients and m the
    measurements. sqrt(2 log(n) / m) * s is the universal threshold of the Lasso's correlations
    B^T r / m (the largest of n) when r is noise of standard deviation s; with s = rms(r) and
    kappa = 1 it is one step of the scaled Lasso (Sun & Zhang 2012) from the latent-only fit. The
    threshold never falls below the measurement noise's (``noise_std``), so where G(z0) explains
    the measurements down to the noise, w stays 0. It uses only the measurements, never the
    images. ``kappa``: a fixed value instead of ``deviation_kappa``. ``m``: the operator's number of
    measurements (default: r's size per image); rms(r) = ||r|| / sqrt(m). Returns (B,) float64.
    """
    m = r.flatten(1).shape[1] if m is None else int(m)
    kappa = deviation_kappa(m, n) if kappa is None else kappa
    rms = (r.detach().flatten(1).double().pow(2).sum(1) / m).sqrt()
    floor = max(float(noise_std), 1e-12)
    return math.sqrt(2 * math.log(n) / m) * torch.maximum(kappa * rms, torch.full_like(rms, floor))


@dataclass
class SparseGenResult:
    """``x``: (B, C, H, W) clip(G(z) + Psi w, -1, 1); ``generated``: G(z) (B, C, H, W); ``z``: (B, k);
    ``w``: deviation coefficients (B, C, H, W); ``objective``: (B,) joint objective at the end;
    ``start_objective``: (B,) at the latent-only start (w = 0); ``history``: the objective's mean
    after every step; ``latent_steps``: generator passes per image after the start;
    ``lasso_gap``: (B,) the kept w-step's certified relative duality gap; ``alpha``: (B,) the l1 weights."""

    x: torch.Tensor
    generated: torch.Tensor
    z: torch.Tensor
    w: torch.Tensor
    objective: torch.Tensor
    start_objective: torch.Tensor
    history: list
    latent_steps: int
    lasso_gap: torch.Tensor
    alpha: torch.Tensor


def joint_objective(y, physics: Physics, g, z, v, w, z_reg: float, alpha: torch.Tensor) -> torch.Tensor:
    """(B,) mean_m (y - A(g + v))^2 + z_reg ||z||^2 + 2 alpha ||w||_1, with g = G(z), v = Psi w and
    alpha (B,) or a float."""
    from invgan.csgm import csgm_objective

    a = torch.as_tensor(alpha, dtype=g.dtype, device=g.device)
    return csgm_objective(y, physics, g + v, z, z_reg) + 2 * a * w.flatten(1).abs().sum(1).to(g.dtype)


def lasso_per_image(r: torch.Tensor, physics: Physics, basis, alpha: torch.Tensor, tol: float = 1e-6,
                    solver: str = "auto", progress: bool = False, w0: torch.Tensor | None = None):
    """The Lasso 1/(2m) ||r_b - A Psi w||^2 + alpha_b ||w||_1 for every image b with its own alpha_b,
    in one batched solve: image b's problem, scaled by c_b = a0 / alpha_b (r_b c_b, w c_b), is the
    problem with the common weight a0 = mean(alpha). ``w0``: a warm start for FISTA (the homotopy
    path and ADMM start at 0 and take none). Returns (w, Psi w, relative gaps (B,)), unclipped."""
    from invgan.lasso import choose_solver, lasso_solve

    alpha = torch.as_tensor(alpha, dtype=torch.float64).flatten()
    a0 = float(alpha.mean())
    solver = choose_solver(solver, physics)  # (no alpha: "auto" keeps FISTA and its warm start above the homotopy)
    c = (a0 / alpha).to(r.dtype).to(r.device)
    shape = (-1,) + (1,) * (r.dim() - 1)
    res, _ = lasso_solve(r * c.view(shape), physics, basis, a0, solver, tol=tol, clip=False, progress=progress,
                         w0=None if w0 is None else w0 * c.view((-1,) + (1,) * (w0.dim() - 1)))
    shape = (-1,) + (1,) * (res.x.dim() - 1)
    return res.w / c.view(shape), res.x / c.view(shape), res.gap.cpu()


def sparse_gen_reconstruct(y: torch.Tensor, physics: Physics, G, z0: torch.Tensor, basis="wavelet",
                           alpha=None, kappa: float | None = None, z_reg: float = 0.0, rounds: int = 2,
                           z_passes: int = 30, history: int = 10, first_step: float = 0.05,
                           lasso_solver: str = "auto", lasso_tol: float = 1e-6, z_clip: float | None = None,
                           progress: bool = False) -> SparseGenResult:
    """Sparse-Gen from a latent-only start: alternate exact w-steps and L-BFGS z-steps.

    Parameters
    ----------
    y : torch.Tensor
        (B, m) measurements under ``physics``.
    physics : invgan.physics.Physics
        The operator (any; explicit-matrix operators get the exact homotopy Lasso).
    G : generator
        See ``invgan.generators.as_generator``; used through a frozen copy.
    z0 : torch.Tensor
        (B, k) the latent-only start (e.g. ``CSGM(...)(y, physics).raw.z``).
    basis : {"dct", "wavelet"} or basis object
        The basis the deviation is sparse in.
    alpha : float or (B,) tensor, optional
        The deviation Lasso's l1 weight per image (lam_nu = 2 alpha). Default: ``deviation_alpha``
        of the start's residual and the operator's ``noise_std``.
    kappa : float, optional
        A fixed kappa for ``deviation_alpha`` instead of the rule's ``deviation_kappa(m, n)``.
    z_reg : float
        lambda of lambda ||z||^2 (as in CSGM).
    rounds : int
        (w-step, z-step) rounds; a last w-step follows them. 0: one w-step on the start's residual.
        Where every image's deviation is 0 after a w-step, the run ends there with the start's z.
    z_passes, history, first_step : int, int, float
        Each z-step's L-BFGS generator passes, curvature pairs and first step length.
    lasso_solver, lasso_tol
        As for ``invgan.methods.Lasso``.

    Returns
    -------
    SparseGenResult
    """
    from invgan.bases import make_basis
    from invgan.csgm import csgm_objective
    from invgan.generators import as_generator, frozen
    from invgan.latent import lbfgs_latents

    check_int("rounds", rounds, 0)
    check_int("z_passes", z_passes, 0)
    if kappa is not None:
        check_number("kappa", kappa, strict=True)
    gen = as_generator(G)
    net = frozen(gen.module)
    if isinstance(basis, str):
        basis = make_basis(basis, tuple(physics.img_shape))
    bound = gen.bound if z_clip is None else z_clip
    z = z0.detach().to(gen.device).clone()
    with torch.no_grad():
        g = net(z).contiguous()
    n = g[0].numel()
    r = y - physics.A(g)  # the start's residual: the rule's input and the first w-step's measurements
    if alpha is None:
        alpha = deviation_alpha(r, n, getattr(physics, "noise_std", 0.0), kappa, m=physics.m)
    alpha = torch.as_tensor(alpha, dtype=torch.float64).flatten().expand(y.shape[0]).clone()
    if not (torch.isfinite(alpha).all() and (alpha > 0).all()):
        raise InvganError("sparse-gen: alpha must be finite and > 0 for every image")
    w = torch.zeros_like(g)
    v = torch.zeros_like(g)
    J = joint_objective(y, physics, g, z, v, w, z_reg, alpha)
    start, hist, passes, gap = J.clone(), [float(J.mean())], 0, torch.zeros(y.shape[0], dtype=torch.float64)

    def keep(ok, new, old):
        return torch.where(ok.view(-1, *([1] * (new.dim() - 1))), new, old)

    for k in range(rounds + 1):
        if k:
            r = y - physics.A(g)
        w_new, v_new, gap_new = lasso_per_image(r, physics, basis, alpha, lasso_tol, lasso_solver, progress,
                                                w0=w if k else None)  # w-step, warm after the first
        w_new, v_new = w_new.to(g.dtype), v_new.to(g.dtype)
        J_new = joint_objective(y, physics, g, z, v_new, w_new, z_reg, alpha)
        ok = J_new < J
        w, v, J = keep(ok, w_new, w), keep(ok, v_new, v), torch.where(ok, J_new, J)
        gap = torch.where(ok.cpu(), gap_new.double(), gap)
        hist.append(float(J.mean()))
        if k == rounds or z_passes == 0 or not bool(w.any()):
            break  # (no deviation anywhere: the z-step would only go on with CSGM; the start stands)
        vv = v.detach()
        z_new = lbfgs_latents(lambda u: csgm_objective(y, physics, net(u) + vv, u, z_reg), z, z_passes, first_step, history, bound=bound, progress=progress,
                              desc="sparse-gen z")  # z-step
        passes += z_passes
        with torch.no_grad():
            g_new = net(z_new).contiguous()
            J_new = joint_objective(y, physics, g_new, z_new, v, w, z_reg, alpha)
        ok = J_new < J
        z, g, J = keep(ok, z_new, z), keep(ok, g_new, g), torch.where(ok, J_new, J)
        hist.append(float(J.mean()))
    x = (g + v).clamp(-1, 1)
    return SparseGenResult(x, g, z, w, J, start, hist, passes, gap, alpha)
