"""Putting a generated image into the known pixels: plain composite and Poisson blending.

Poisson blending (Perez et al. 2003, as used by Yeh et al.): inside the hole solve
    laplacian(x) = laplacian(G(z))        with x = y on the known pixels,
per colour channel, with the 5-point Laplacian: lap(x)_p = sum over the in-image neighbours q
of p of (x_p - x_q). The hole's pixels are the unknowns of one sparse linear system per image
(scipy.sparse, LU factorised once and solved for the three channels). The known pixels are
copied from y unchanged. Every connected part of the hole touches a known pixel (masks always
have one), so the system is non-singular.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from invgan.errors import InvganError

BLENDS = ("poisson", "none")


def composite(generated: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Known pixels from y, missing ones from ``generated``. All (B, C, H, W); mask (B, 1, H, W)."""
    return torch.where(mask.bool(), y, generated)


def laplacian(img: np.ndarray) -> np.ndarray:
    """5-point Laplacian (..., H, W) with in-image neighbours only: sum_q (x_p - x_q)."""
    out = np.zeros_like(img)
    out[..., 1:, :] += img[..., 1:, :] - img[..., :-1, :]
    out[..., :-1, :] += img[..., :-1, :] - img[..., 1:, :]
    out[..., :, 1:] += img[..., :, 1:] - img[..., :, :-1]
    out[..., :, :-1] += img[..., :, :-1] - img[..., :, 1:]
    return out


def _poisson_one(gen: np.ndarray, y: np.ndarray, known: np.ndarray) -> np.ndarray:
    """gen, y: (C, H, W) float64; known: (H, W) bool. Returns the blended (C, H, W)."""
    C, H, W = gen.shape
    hole = ~known
    idx = -np.ones((H, W), np.int64)
    n = int(hole.sum())
    idx[hole] = np.arange(n)
    rows_p, cols_p = np.nonzero(hole)
    rhs = laplacian(gen)[:, hole].T.copy()      # (n, C): the target Laplacian
    diag = np.zeros(n)
    ri, ci = [], []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        r, c = rows_p + dr, cols_p + dc
        inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        diag[inside] += 1
        p, r, c = np.nonzero(inside)[0], r[inside], c[inside]
        unknown_q = hole[r, c]
        ri.append(p[unknown_q])
        ci.append(idx[r[unknown_q], c[unknown_q]])
        kp = p[~unknown_q]                           # neighbour known: move y_q to the right side
        np.add.at(rhs, kp, y[:, r[~unknown_q], c[~unknown_q]].T)
    ri, ci = np.concatenate(ri), np.concatenate(ci)
    A = sp.csc_matrix((np.concatenate([diag, -np.ones(len(ri))]),
                       (np.concatenate([np.arange(n), ri]), np.concatenate([np.arange(n), ci]))), shape=(n, n))
    sol = spla.splu(A).solve(rhs)                    # (n, C)
    out = y.copy()
    out[:, hole] = sol.T
    return out


def poisson_blend(generated: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Poisson-blend ``generated`` into the known pixels of ``y``.

    generated, y: (B, C, H, W); mask: (B or 1, 1, H, W), 1 = known. Returns (B, C, H, W) on y's
    device, not clipped (values may leave [-1, 1] slightly; clip for display / metrics).
    """
    B = y.shape[0]
    mask = mask.expand(B, 1, *y.shape[2:])
    g = generated.detach().double().cpu().numpy()
    yy = y.detach().double().cpu().numpy()
    known = mask[:, 0].detach().cpu().numpy() > 0.5
    out = np.empty_like(yy)
    for b in range(B):
        if known[b].all():
            out[b] = yy[b]
        elif not known[b].any():
            raise InvganError(f"mask {b} has no known pixels: Poisson blending needs a boundary")
        else:
            out[b] = _poisson_one(g[b], yy[b], known[b])
    return torch.from_numpy(out).to(device=y.device, dtype=y.dtype)


def blend(generated, y, mask, how: str = "poisson") -> torch.Tensor:
    """``how``: "poisson" or "none" (plain composite)."""
    if how == "poisson":
        return poisson_blend(generated, y, mask)
    if how == "none":
        return composite(generated, y, mask.expand(y.shape[0], 1, *y.shape[2:]))
    raise InvganError(f"unknown blend {how!r}: use one of {', '.join(BLENDS)}")
