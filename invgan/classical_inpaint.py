"""Classical inpainting baselines with the same interface as the GAN method: ``f(y, physics) -> x``.

- ``biharmonic_inpaint``: skimage.restoration.inpaint_biharmonic, per image, colour channels
  filled independently.
- ``tv_inpaint``: minimise the isotropic colour total variation sum_p ||grad x_p||_2 (gradients
  of all three channels stacked, cvxpy's ``tv``) subject to x = y on the known pixels; a convex
  problem solved exactly by cvxpy (Clarabel when installed).

y: (B, C, H, W) in [-1, 1] (values at missing pixels are ignored); physics: ``Inpainting``.
Returns (B, C, H, W) on y's device.
"""

from __future__ import annotations

import numpy as np
import torch

from invgan.errors import InvganError
from invgan.physics import Inpainting


def _masks(y: torch.Tensor, physics: Inpainting) -> np.ndarray:
    """(B, H, W) bool, True = known."""
    return physics.mask[:, 0].expand(y.shape[0], *y.shape[2:]).detach().cpu().numpy() > 0.5


def biharmonic_inpaint(y: torch.Tensor, physics: Inpainting, progress: bool = False) -> torch.Tensor:
    """Fill the masked pixels of y (B, C, H, W) by biharmonic inpainting (scikit-image), per image."""
    from skimage.restoration import inpaint_biharmonic
    from tqdm import tqdm

    known = _masks(y, physics)
    imgs = y.detach().double().cpu().permute(0, 2, 3, 1).numpy()
    out = np.empty_like(imgs)
    for b in tqdm(range(len(imgs)), desc="biharmonic", disable=not progress, leave=False):
        out[b] = inpaint_biharmonic(imgs[b], ~known[b], channel_axis=-1)
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(y.device, y.dtype)


def _forward_differences(H: int, W: int):
    """Sparse (P, H*W) row- and column-difference operators on the (H-1) x (W-1) grid of pixels
    that have both a lower and a right neighbour: cvxpy's ``tv`` definition."""
    import scipy.sparse as sp

    idx = np.arange(H * W).reshape(H, W)
    base = idx[:-1, :-1].ravel()
    P = len(base)
    rows = np.concatenate([np.arange(P), np.arange(P)])
    vals = np.concatenate([np.ones(P), -np.ones(P)])
    dr = sp.csr_matrix((vals, (rows, np.concatenate([idx[1:, :-1].ravel(), base]))), shape=(P, H * W))
    dc = sp.csr_matrix((vals, (rows, np.concatenate([idx[:-1, 1:].ravel(), base]))), shape=(P, H * W))
    return dr, dc


def tv_problem(y_img: np.ndarray, known: np.ndarray):
    """The TV-inpainting problem for one image, over the missing pixels only.

    y_img (C, H, W), known (H, W) bool. Returns (cvxpy Problem, variable v (n, C) of the missing
    pixels' values in row-major order). Only the gradient terms that touch a missing pixel enter
    the objective; the rest are constants. The optimum equals that of
    minimise tv(x_1, .., x_C) subject to x = y on the known pixels.
    """
    import cvxpy as cp
    import scipy.sparse as sp

    C, H, W = y_img.shape
    hole = ~known.ravel()
    n = int(hole.sum())
    S = sp.csr_matrix((np.ones(n), (np.nonzero(hole)[0], np.arange(n))), shape=(H * W, n))
    dr, dc = _forward_differences(H, W)
    drs, dcs = dr @ S, dc @ S
    touched = np.unique(np.concatenate([drs.tocoo().row, dcs.tocoo().row]))
    drs, dcs, dr, dc = drs[touched], dcs[touched], dr[touched], dc[touched]
    y0 = np.where(known.ravel()[None], y_img.reshape(C, -1), 0.0)
    v = cp.Variable((n, C))
    parts = []
    for c in range(C):
        parts += [drs @ v[:, c] + dr @ y0[c], dcs @ v[:, c] + dc @ y0[c]]
    objective = cp.sum(cp.norm(cp.vstack(parts), 2, axis=0))
    return cp.Problem(cp.Minimize(objective)), v


def tv_inpaint(y: torch.Tensor, physics: Inpainting, solver: str | None = None,
               progress: bool = False) -> torch.Tensor:
    """Fill the masked pixels of y (B, C, H, W) with the minimum colour total variation (cvxpy;
    ``solver`` default Clarabel when installed). Known pixels stay exactly y."""
    import cvxpy as cp
    from tqdm import tqdm

    known = _masks(y, physics)
    imgs = y.detach().double().cpu().numpy()
    B, C, H, W = imgs.shape
    out = imgs.copy()
    if solver is None:
        solver = cp.CLARABEL if cp.CLARABEL in cp.installed_solvers() else None
    for b in tqdm(range(B), desc="tv", disable=not progress, leave=False):
        prob, v = tv_problem(imgs[b], known[b])
        try:
            prob.solve(solver=solver)
        except cp.error.SolverError as exc:
            raise InvganError(f"TV inpainting: the cvxpy solver failed on image {b} ({exc})") from None
        if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise InvganError(f"TV inpainting: cvxpy returned status {prob.status} on image {b}")
        out[b][:, ~known[b]] = v.value.T  # known pixels stay exactly y
    return torch.from_numpy(out).to(y.device, y.dtype)
