"""Fused loops (numba), with the torch forms they replace: the homotopy's step over all n coefficients, and
ADMM's soft-threshold split with the product B z of its sparse z.

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


    @_nb.njit(parallel=True, cache=True)
    def _eps_entering_kernel(h, a, u, active, lam, last, g_out, j_out):  # pragma: no cover - compiled
        # the eps-path's entering scan: e_j = u_j - a_j; the smallest g >= -inf with |h_j + g e_j| = lam
        b, n = h.shape
        for i in _nb.prange(b):
            best = _np.inf
            bj = 0
            skip = last[i]
            for j in range(n):
                if active[i, j]:
                    continue
                e = u[i, j] - _np.float64(a[i, j])
                hj = h[i, j]
                if e > 0.0:  # (lam - h) / e
                    best, bj = _candidate(lam - hj, e, j, skip, best, bj)
                elif e < 0.0:  # (lam + h) / -e
                    best, bj = _candidate(lam + hj, -e, j, skip, best, bj)
            g_out[i] = best
            j_out[i] = bj

    @_nb.njit(parallel=True, cache=True)
    def _eps_move_kernel(h, a, u, gam):  # pragma: no cover - compiled
        b, n = h.shape
        for i in _nb.prange(b):
            gi = gam[i]
            for j in range(n):
                h[i, j] += gi * (u[i, j] - _np.float64(a[i, j]))

    @_nb.njit(parallel=True, cache=True)
    def _split_collect_kernel(v, thr, u, cnt, rows, vals):  # pragma: no cover - compiled
        # v -> (z, u) = (v - clip(v), clip(v)), z written over v; each thread's block of rows also lists its
        # nonzeros by column (cnt[t, j] of them: rows[t, j, :], vals[t, j, :]) for the product below. Per row,
        # one branch-free pass (vectorised) and one that finds the nonzeros (a few percent) in z
        nt = cnt.shape[0]
        b, n = v.shape
        per = (b + nt - 1) // nt
        for t in _nb.prange(nt):
            ct = cnt[t]
            rt = rows[t]
            vt = vals[t]
            ct[:] = 0
            for i in range(t * per, min(b, (t + 1) * per)):
                vi = v[i]
                ui = u[i]
                for j in range(n):
                    x = vi[j]
                    c = min(max(x, -thr), thr)
                    ui[j] = c
                    vi[j] = x - c
                for j in range(n):
                    zz = vi[j]
                    if zz != 0:
                        k = ct[j]
                        rt[j, k] = i
                        vt[j, k] = zz
                        ct[j] = k + 1

    @_nb.njit(parallel=True, cache=True)
    def _collect_product_kernel(cnt, rows, vals, bth, out):  # pragma: no cover - compiled
        # out[c] = z B^T's columns of block c: each thread one block of B^T's columns (bth[c], n x mc), reading
        # each row of it once and adding it to the rows of z that use it (their partial sums stay in cache)
        nc, n, mc = bth.shape
        nt = cnt.shape[0]
        for c in _nb.prange(nc):
            bt = bth[c]
            o = out[c]
            o[:] = 0
            for j in range(n):
                for t in range(nt):
                    for p in range(cnt[t, j]):
                        i = rows[t, j, p]
                        x = vals[t, j, p]
                        for k in range(mc):
                            o[i, k] += x * bt[j, k]


    @_nb.njit(parallel=True, cache=True)
    def _bn_relu_grad_kernel(g, y, a, w, out):  # pragma: no cover - compiled
        # rows x channels (channels last): out = (g * a) * w where the ReLU's output y > 0, else (0 * a) * w;
        # the two products in the order of torch's eval-mode batch-norm backward, the mask as ReLU's
        # (threshold_backward: y <= 0 gives 0)
        r, c = g.shape
        for i in _nb.prange(r):
            gi = g[i]
            yi = y[i]
            oi = out[i]
            for k in range(c):
                v = gi[k]
                if yi[k] <= 0:
                    v = _np.float32(0.0)
                oi[k] = (v * a[k]) * w[k]


    @_nb.njit(parallel=True, cache=True)
    def _flip_kernel(x, out):  # pragma: no cover - compiled
        # (n, h, w, c) -> out[k, h - 1 - i, w - 1 - j] = x[k, i, j]
        n, h, w, c = x.shape
        for t in _nb.prange(n * h):
            k = t // h
            i = t % h
            for j in range(w):
                out[k, h - 1 - i, w - 1 - j, :] = x[k, i, j, :]

    @_nb.njit(parallel=True, cache=True)
    def _phase_gather_kernel(c, out):  # pragma: no cover - compiled
        # c (n, h + 1, w + 1, 4 co) -> out (n, 2 h, 2 w, co): out[k, 2 i + a, 2 j + b, :] = c[k, h - i - a,
        # w - j - b, (2 (1 - a) + 1 - b) co : ... + co] (phase (1 - a, 1 - b) of the flipped problem, flipped back)
        n, h2, w2, co = out.shape
        h = h2 // 2
        w = w2 // 2
        for t in _nb.prange(n * h2):
            k = t // h2
            y = t % h2
            i = y // 2
            a = y % 2
            for x in range(w2):
                j = x // 2
                b = x % 2
                q = (2 * (1 - a) + 1 - b) * co
                out[k, y, x, :] = c[k, h - i - a, w - j - b, q:q + co]


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


def eps_entering(h: torch.Tensor, a: torch.Tensor, u: torch.Tensor, active: torch.Tensor, lam: float,
                 last: torch.Tensor):
    """Per row, the smallest step g along the eps-path at which an inactive coefficient reaches |h_j + g e_j| = lam,
    e = u - a.

    ``h`` (b, n) float64 correlations, ``a`` (b, n) float32 or float64 (B^T B_J d_J), ``u`` (b, n)
    float64 (the perturbation), ``active`` (b, n) bool, ``last`` (b,) int64 (a coefficient that may not
    re-enter at once; -1: none). Returns (g (b,) float64, j (b,) int64): the minimum over the allowed j
    of (lam - h_j) / e_j [e_j > 0] and (lam + h_j) / -e_j [e_j < 0] (inf where none), and its first
    index; negative values are returned as they are."""
    if _use_kernels(h, a, u, active, last):
        g = torch.empty(h.shape[0], dtype=torch.float64)
        j = torch.zeros(h.shape[0], dtype=torch.int64)
        with _threads():
            _eps_entering_kernel(h.numpy(), a.numpy(), u.numpy(), active.numpy(), float(lam), last.numpy(),
                                 g.numpy(), j.numpy())
        return g, j
    e = u - a.to(torch.float64)
    inf = float("inf")
    gin = torch.minimum(torch.where(e > 0, (lam - h) / e, inf),
                        torch.where(e < 0, (lam + h) / -e, inf)).masked_fill_(active, inf)
    back = (last >= 0).nonzero().squeeze(1)
    gin[back, last[back]] = inf
    return gin.min(1)


def eps_move(h: torch.Tensor, a: torch.Tensor, u: torch.Tensor, gam: torch.Tensor) -> None:
    """In place, h += gam[:, None] * (u - a) (a in float32 or float64, computed in float64)."""
    if _use_kernels(h, a, u, gam):
        with _threads():
            _eps_move_kernel(h.numpy(), a.numpy(), u.numpy(), gam.numpy())
    else:
        h.add_(gam[:, None] * (u - a.to(torch.float64)))


class SparseProduct:
    """``split(v, thr)``: ADMM's z- and u-steps, (z, u) = (v - clip(v, -thr, thr), clip(v, -thr, thr)) with z
    written over v, and with them z B^T (rows, m) for a z that is mostly zero, in one sweep over v (which also
    lists z's nonzeros by column) and one over the rows of B^T that z uses (``_collect_product_kernel``, each
    row read once for all rows of z): where z holds a few percent nonzeros (490 of
    12,288 per row at m = 500 on the DCT) that reads B^T once in all instead of the dense product's
    m n multiply-adds per row. ``Bt`` (n, m) float32 or float64 is copied once, split into one block of
    columns per thread. Where the kernels do not apply (``_use_kernels``) the torch forms run:
    ``_soft_split``'s two passes and the dense product."""

    def __init__(self, Bt: torch.Tensor):
        self.Bt, self.m = Bt, Bt.shape[1]
        self.nt = max(1, min(torch.get_num_threads(), _nb.config.NUMBA_NUM_THREADS)) if _nb is not None else 1
        self.mc = -(-self.m // self.nt)
        self.bth = None
        if _use_kernels(Bt):
            self.bth = Bt.new_zeros(self.nt, Bt.shape[0], self.mc)
            for c in range(self.nt):
                self.bth[c, :, :min(self.mc, self.m - c * self.mc)] = Bt[:, c * self.mc:(c + 1) * self.mc]
        self._buf = None
        self.density = 0.0  # z's share of nonzeros at the last split

    DENSE_FROM = 0.1  # where the last z held more nonzeros than this share, the dense product (the lists'
    # product reads a row of B^T per nonzero: at 4% nonzeros, 64 rows at m = 500, 2.0 ms against the dense 4.5)

    def product(self, z: torch.Tensor) -> torch.Tensor:
        """z B^T as ``split`` computes it (the same sums in the same order), z unchanged."""
        return self.split(z.clone(), 0.0)[2]  # clip(z, 0, 0) = 0: z - 0 is z

    def split(self, v: torch.Tensor, thr: float):
        """Returns (z, u, z B^T); z is v (overwritten)."""
        if self.bth is None or not _use_kernels(v) or v.dtype != self.Bt.dtype or self.density > self.DENSE_FROM:
            u = v.clamp(-thr, thr)
            z = v.sub_(u)
            if self.bth is not None:
                self.density = float(torch.count_nonzero(z)) / max(1, z.numel())
            return z, u, z @ self.Bt
        b, n = v.shape
        per = -(-b // self.nt)
        if self._buf is None or self._buf[1].shape[2] < per:
            self._buf = (_np.zeros((self.nt, n), _np.int32), _np.zeros((self.nt, n, per), _np.int32),
                         _np.zeros((self.nt, n, per), v.numpy().dtype))
        cnt, rows, vals = self._buf
        u = torch.empty_like(v)
        out = v.new_empty(self.nt, b, self.mc)
        with _threads():
            _split_collect_kernel(v.numpy(), v.numpy().dtype.type(thr), u.numpy(), cnt, rows, vals)
            _collect_product_kernel(cnt, rows, vals, self.bth.numpy(), out.numpy())
        self.density = float(cnt.sum()) / max(1, v.numel())
        return v, u, out.permute(1, 0, 2).reshape(b, -1)[:, :self.m].contiguous()


def _nhwc(t: torch.Tensor):
    """A channels-last (N, C, H, W) CPU tensor's memory as an (N, H, W, C) numpy view (no copy)."""
    return t.detach().permute(0, 2, 3, 1).numpy()


def bn_relu_grad(g: torch.Tensor, y: torch.Tensor, invstd: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gradient of ``relu(batch_norm(x))`` (eval mode) with respect to x, from the gradient ``g`` of its
    output and the output ``y`` (N, C, H, W): ``where(y <= 0, 0, g) * invstd[c] * weight[c]``, the same
    float32 products in the same order as torch's ``threshold_backward`` followed by its eval-mode
    ``native_batch_norm_backward`` (bit for bit), in one pass instead of their two (the batch-norm's also
    sums over the input for weight gradients that are not needed). ``invstd`` (C,) float32 is
    ``1 / sqrt(running_var + eps)`` formed in float64 as torch forms it. Channels-last float32 CPU tensors
    take the numba kernel; any other the torch form."""
    if (_use_kernels(invstd, weight) and y.dtype == g.dtype == invstd.dtype == weight.dtype == torch.float32
            and y.dim() == 4 and y.device.type == "cpu" and y.is_contiguous(memory_format=torch.channels_last)):
        g = g.contiguous(memory_format=torch.channels_last)
        out = torch.empty_like(y)
        c = y.shape[1]
        with _threads():  # (rows of C channels: views of the three tensors' memory)
            _bn_relu_grad_kernel(_nhwc(g).reshape(-1, c), _nhwc(y).reshape(-1, c), invstd.numpy(), weight.numpy(),
                                 _nhwc(out).reshape(-1, c))
        return out
    shape = (-1,) + (1,) * (y.dim() - 2)
    return torch.where(y <= 0, 0, g) * invstd.view(shape) * weight.view(shape)


def flip_hw(x: torch.Tensor) -> torch.Tensor:
    """``x.flip(2, 3)`` for (N, C, H, W), channels-last in and out (a copy; the kernel where it applies:
    torch's flip took 48 ms for 640 x 64 x 32 x 32 here)."""
    if _use_kernels() and x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        out = torch.empty_like(x, memory_format=torch.channels_last)
        with _threads():
            _flip_kernel(_nhwc(x), _nhwc(out))
        return out
    return x.flip(2, 3).contiguous(memory_format=torch.channels_last)


def phase_gather(c: torch.Tensor, cout: int) -> torch.Tensor:
    """The output (N, cout, 2H, 2W), channels-last, of a stride-2 transposed convolution from its phases
    computed on the flipped input (``invgan.fused``): c (N, 4 cout, H + 1, W + 1), output channel
    (2 a + b) cout + k of phase (a, b) (a copy, no arithmetic)."""
    n, _, h1, w1 = c.shape
    out = torch.empty(n, cout, 2 * (h1 - 1), 2 * (w1 - 1), dtype=c.dtype, device=c.device,
                      memory_format=torch.channels_last)
    if _use_kernels() and c.device.type == "cpu" and c.is_contiguous(memory_format=torch.channels_last):
        with _threads():
            _phase_gather_kernel(_nhwc(c), _nhwc(out))
        return out
    h, w = h1 - 1, w1 - 1
    for a in (0, 1):
        for b in (0, 1):
            q = (2 * (1 - a) + (1 - b)) * cout
            out[:, :, a::2, b::2] = c[:, q:q + cout, 1 - a:1 - a + h, 1 - b:1 - b + w].flip(2, 3)
    return out
