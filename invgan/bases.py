"""Orthonormal image bases for the Lasso baselines, as fast batched torch transforms.

A basis maps images x (B, C, H, W) to coefficients w of the same shape:
``analysis(x) = Psi^T x`` and ``synthesis(w) = Psi w``, with Psi orthonormal (per channel), so
``synthesis(analysis(x)) == x`` and norms are preserved. No dense n x n matrix is ever built.

- ``DCTBasis``: 2-D orthonormal DCT-II per channel (= ``scipy.fft.dctn(x, norm="ortho")`` on
  the last two axes), applied as D X D^T with the 1-D DCT matrix D taken from scipy.fft.
- ``HaarBasis``: 2-D Haar (db1) wavelet, full depth (log2(H) levels), Mallat layout as
  ``pywt.coeffs_to_array(pywt.wavedec2(x, "haar", level=log2(H)))``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

from invgan import InvganError


class DCTBasis:
    name = "dct"

    def __init__(self, size: int = 64):
        d = scipy.fft.dct(np.eye(size), norm="ortho", axis=0)  # d @ v == dct(v)
        self._d = torch.from_numpy(d).float()
        self.size = size

    def _mat(self, x):
        if self._d.device != x.device or self._d.dtype != x.dtype:
            self._d = self._d.to(x.device, x.dtype)
        return self._d

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        d = self._mat(x)
        return d @ x @ d.T

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        d = self._mat(w)
        return d.T @ w @ d


class HaarBasis:
    name = "wavelet"

    def __init__(self, size: int = 64, level: int | None = None):
        full = int(math.log2(size))
        if 2 ** full != size:
            raise InvganError(f"the Haar basis needs a power-of-two image size, got {size}")
        self.size, self.level = size, level if level is not None else full

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        a = x
        s = self.size
        for _ in range(self.level):
            p, q = a[..., 0::2, 0::2], a[..., 0::2, 1::2]
            r, t = a[..., 1::2, 0::2], a[..., 1::2, 1::2]
            h = s // 2
            # pywt.coeffs_to_array layout: cA top-left, cV top-right, cH bottom-left, cD bottom-right
            out[..., h:s, :h] = (p + q - r - t) / 2  # cH: difference between rows
            out[..., :h, h:s] = (p - q + r - t) / 2  # cV: difference between columns
            out[..., h:s, h:s] = (p - q - r + t) / 2  # diagonal detail (cD)
            a = (p + q + r + t) / 2
            s = h
        out[..., :s, :s] = a
        return out

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        s = self.size >> self.level
        a = w[..., :s, :s]
        for _ in range(self.level):
            hh, vv, dd = w[..., s:2 * s, :s], w[..., :s, s:2 * s], w[..., s:2 * s, s:2 * s]
            nxt = torch.empty(*w.shape[:-2], 2 * s, 2 * s, dtype=w.dtype, device=w.device)
            nxt[..., 0::2, 0::2] = (a + hh + vv + dd) / 2
            nxt[..., 0::2, 1::2] = (a + hh - vv - dd) / 2
            nxt[..., 1::2, 0::2] = (a - hh + vv - dd) / 2
            nxt[..., 1::2, 1::2] = (a - hh - vv + dd) / 2
            a = nxt
            s *= 2
        return a


BASES = {"dct": DCTBasis, "wavelet": HaarBasis}


def make_basis(name: str, size: int = 64):
    try:
        return BASES[name](size)
    except KeyError:
        raise InvganError(f"unknown basis {name!r}: use dct or wavelet") from None
