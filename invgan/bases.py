"""Orthonormal image bases for the Lasso baselines, as fast batched torch transforms.

A basis maps images x (B, C, H, W) to coefficients w of the same shape:
``analysis(x) = Psi^T x`` and ``synthesis(w) = Psi w``, with Psi orthonormal (per channel), so
``synthesis(analysis(x)) == x`` and norms are preserved. No dense n x n matrix is ever built.

- ``DCTBasis``: 2-D orthonormal DCT-II per channel (= ``scipy.fft.dctn(x, norm="ortho")`` on
  the last two axes), applied as D_H X D_W^T with the 1-D DCT matrices taken from scipy.fft;
  any image size.
- ``HaarBasis``: 2-D Haar (db1) wavelet, full depth (log2(min(H, W)) levels), Mallat layout as
  ``pywt.coeffs_to_array(pywt.wavedec2(x, "haar", level=...))``; power-of-two sizes.

A user's basis is any object with ``analysis`` and ``synthesis`` (orthonormal) and a ``name``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

from invgan.errors import InvganError


def _hw(size) -> tuple[int, int]:
    """An image size: int S (S x S) or (H, W); (C, H, W) takes the last two."""
    hw = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    if len(hw) != 2 or not all(isinstance(v, int) and v >= 1 for v in hw):
        raise InvganError(f"image size must be an int or (height, width), got {size!r}")
    return hw


class DCTBasis:
    """2-D orthonormal DCT-II per channel, for images of any size (H, W)."""

    name = "dct"

    def __init__(self, size):
        self.shape = _hw(size)
        self._exact = [torch.from_numpy(scipy.fft.dct(np.eye(n), norm="ortho", axis=0)) for n in self.shape]
        self._d = [d.float() for d in self._exact]  # d @ v == dct(v)

    def _mats(self, x):
        if self._d[0].device != x.device or self._d[0].dtype != x.dtype:
            self._d = [d.to(x.device, x.dtype) for d in self._exact]
        return self._d

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """Psi^T x: coefficients (..., H, W) of images (..., H, W)."""
        dh, dw = self._mats(x)
        return dh @ x @ dw.T

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        """Psi w: images (..., H, W) from coefficients (..., H, W)."""
        dh, dw = self._mats(w)
        return dh.T @ w @ dw


class HaarBasis:
    """2-D Haar wavelet (db1) per channel for power-of-two sizes (H, W), ``level`` levels
    (default: full depth, log2(min(H, W)))."""

    name = "wavelet"

    def __init__(self, size, level: int | None = None):
        self.shape = _hw(size)
        for v in self.shape:
            if 2 ** int(math.log2(v)) != v:
                raise InvganError(f"the Haar basis needs power-of-two image sizes, got {self.shape[0]}x{self.shape[1]}")
        full = int(math.log2(min(self.shape)))
        self.level = full if level is None else level
        if not 0 <= self.level <= full:
            raise InvganError(f"Haar level must be between 0 and {full}, got {level}")

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """Psi^T x in pywt's Mallat layout (..., H, W)."""
        out = torch.empty_like(x)
        a = x
        sh, sw = self.shape
        for _ in range(self.level):
            p, q = a[..., 0::2, 0::2], a[..., 0::2, 1::2]
            r, t = a[..., 1::2, 0::2], a[..., 1::2, 1::2]
            h, w = sh // 2, sw // 2
            # pywt.coeffs_to_array layout: cA top-left, cV top-right, cH bottom-left, cD bottom-right
            out[..., h:sh, :w] = (p + q - r - t) / 2  # cH: difference between rows
            out[..., :h, w:sw] = (p - q + r - t) / 2  # cV: difference between columns
            out[..., h:sh, w:sw] = (p - q - r + t) / 2  # diagonal detail (cD)
            a = (p + q + r + t) / 2
            sh, sw = h, w
        out[..., :sh, :sw] = a
        return out

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        """Psi w: images (..., H, W) from coefficients in the Mallat layout."""
        sh, sw = self.shape[0] >> self.level, self.shape[1] >> self.level
        a = w[..., :sh, :sw]
        for _ in range(self.level):
            hh, vv, dd = w[..., sh:2 * sh, :sw], w[..., :sh, sw:2 * sw], w[..., sh:2 * sh, sw:2 * sw]
            nxt = torch.empty(*w.shape[:-2], 2 * sh, 2 * sw, dtype=w.dtype, device=w.device)
            nxt[..., 0::2, 0::2] = (a + hh + vv + dd) / 2
            nxt[..., 0::2, 1::2] = (a + hh - vv - dd) / 2
            nxt[..., 1::2, 0::2] = (a - hh + vv - dd) / 2
            nxt[..., 1::2, 1::2] = (a - hh - vv + dd) / 2
            a = nxt
            sh, sw = 2 * sh, 2 * sw
        return a


BASES = {"dct": DCTBasis, "wavelet": HaarBasis}


def make_basis(name: str, size):
    """A basis by name ("dct" or "wavelet") for images of ``size`` (int, (H, W) or (C, H, W))."""
    if name not in BASES:
        raise InvganError(f"unknown basis {name!r}: use dct or wavelet")
    return BASES[name](size)
