"""Fused loops for the homotopy's step over all n coefficients (numba), with the torch forms they replace.

A homotopy step scans every inactive coefficient of every row for the next one to enter the support
(two quotients each, a minimum and its index) and then moves every correlation along the path. In
torch that is about fifteen passes over (rows, n) float64 arrays; at m = 100 those passes were most
of the solve's time. The kernels below make one pass each, row-parallel, and compute the same
IEEE operations in the same order (no fast-math), so the path is the same step for step and bit for
bit (``tests/test_homotopy.py``). Where numba is missing or the tensors are not on the CPU the torch
forms run; ``FUSED = False`` forces them.
"""

from __future__ import annotations

import torch

try:  # numba is a dependency; a platform without a wheel still gets the torch forms
    import numba as _nb
    import numpy as _np
except ImportError:  # pragma: no cover - exercised only where numba cannot be installed
    _nb = None

FUSED = True  # use the numba kernels where they apply

if _nb is not None:
    @_nb.njit(inline="always")
    def _candidate(x, y, j, skip, best, bj):  # pragma: no cover - compiled
        # the quotient x / y (y > 0), formed only where x <= best * y holds up to a relative 1e-12: every
        # quotient below best passes (rounding moves the product by far less), so the minimum and its first
        # index are exact
        t = best * y
        if x <= t + abs(t) * 1e-12:
            g = x / y
            if g < best and j != skip:
                return g, j
        return best, bj

    @_nb.njit(parallel=True, cache=True)
    def _entering_kernel(c, a, active, lamb, last, g_out, j_out):  # pragma: no cover - compiled
        b, n = c.shape
        for i in _nb.prange(b):
            lb = lamb[i]
            best = _np.inf
            bj = 0
            skip = last[i]
            for j in range(n):
                if active[i, j]:
                    continue
                aj = _np.float64(a[i, j])
                cj = c[i, j]
                if aj < 1.0:  # (lb - c) / (1 - a)
                    best, bj = _candidate(lb - cj, 1.0 - aj, j, skip, best, bj)
                if aj > -1.0:  # (lb + c) / (1 + a)
                    best, bj = _candidate(lb + cj, 1.0 + aj, j, skip, best, bj)
            g_out[i] = best
            j_out[i] = bj

    @_nb.njit(parallel=True, cache=True)
    def _axpy_kernel(c, a, gam):  # pragma: no cover - compiled
        b, n = c.shape
        for i in _nb.prange(b):
            gi = gam[i]
            for j in range(n):
                c[i, j] -= gi * _np.float64(a[i, j])


def _use_kernels(*tensors: torch.Tensor) -> bool:
    return (FUSED and _nb is not None and all(t.device.type == "cpu" and t.is_contiguous() for t in tensors))


class _threads:
    """Run a kernel with torch's thread count, and leave torch's thread count as it was: numba's OpenMP
    layer shares torch's OpenMP runtime and sets its thread count when it starts (a sweep worker of 1
    thread went on with 2 after its first homotopy step). Its own pool ("workqueue") leaves it alone
    but was slower here (its threads and torch's spinning OpenMP ones share 2 cores: 1.6 to 2.9 s
    against 1.36 to 1.52 s for 64 faces at m = 100)."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        _nb.set_num_threads(max(1, min(self.n, _nb.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.n:
            torch.set_num_threads(self.n)


def entering(c: torch.Tensor, a: torch.Tensor, active: torch.Tensor, lamb: torch.Tensor, last: torch.Tensor):
    """Per row, the smallest step g along the path at which an inactive coefficient reaches |c_j - g a_j| = lamb - g.

    ``c`` (b, n) float64 correlations, ``a`` (b, n) float32 or float64 (B^T B_J d_J), ``active``
    (b, n) bool (the support), ``lamb`` (b,) float64, ``last`` (b,) int64 (a coefficient that just
    left and may not re-enter at once; -1: none). Returns (g (b,) float64, j (b,) int64): the
    minimum over j of min((lamb - c_j) / (1 - a_j) [a_j < 1], (lamb + c_j) / (1 + a_j) [a_j > -1])
    over the allowed j (inf where none), and its first index; negative values are returned as
    they are."""
    if _use_kernels(c, a, active, lamb, last):
        g = torch.empty(c.shape[0], dtype=torch.float64)
        j = torch.zeros(c.shape[0], dtype=torch.int64)
        with _threads():
            _entering_kernel(c.numpy(), a.numpy(), active.numpy(), lamb.numpy(), last.numpy(), g.numpy(), j.numpy())
        return g, j
    a = a.to(torch.float64)
    inf = float("inf")
    lb = lamb[:, None]
    gin = torch.minimum(torch.where(a < 1, (lb - c) / (1 - a), inf),
                        torch.where(a > -1, (lb + c) / (1 + a), inf)).masked_fill_(active, inf)
    back = (last >= 0).nonzero().squeeze(1)
    gin[back, last[back]] = inf
    return gin.min(1)


def step_correlations(c: torch.Tensor, a: torch.Tensor, gam: torch.Tensor) -> None:
    """In place, c -= gam[:, None] * a (a in float32 or float64, computed in float64)."""
    if _use_kernels(c, a, gam):
        with _threads():
            _axpy_kernel(c.numpy(), a.numpy(), gam.numpy())
    else:
        c.sub_(gam[:, None] * a.to(torch.float64))
