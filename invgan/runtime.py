"""Where computations run."""

from __future__ import annotations

import functools

import torch

from invgan.errors import InvganError


def pick_device(name: str | None = None) -> torch.device:
    """``name`` "cpu", "cuda" or "cuda:N"; None or "auto": CUDA when available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise InvganError(f"device {name!r} asked for, but CUDA is not available here")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise InvganError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None


#: Set to "0" to leave the C allocator's settings alone (``keep_freed_memory`` then does nothing).
KEEP_FREED_MEMORY_ENV = "INVGAN_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Make this process keep the memory it frees for its next allocations (glibc on Linux only).

    By default glibc serves large allocations (above 128 KB to 32 MB) with fresh ``mmap`` pages and
    gives them back on ``free``, so every generator pass, whose activations for 256 latents are
    tens of MB each, faults its memory in again page by page and the kernel zeroes it: in
    ``invgan cs -m 500`` that was 19 million page faults and 39 s of system time. This sets
    ``M_MMAP_MAX`` to 0 (large blocks come from the heap, which is reused) and ``M_TRIM_THRESHOLD``
    to 2 GB (freed memory at the heap's top is kept), so the process's resident memory stays near
    its peak instead. Process-wide: the ``invgan`` command and its sweep workers call it at start;
    a library user calls it once, before the first large allocation. Returns whether it was
    applied: False on other C libraries and platforms, or when the environment variable
    ``INVGAN_KEEP_FREED_MEMORY`` is "0".
    """
    import ctypes
    import os
    import platform
    import sys

    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # malloc.h
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def cpu_facts(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU this process runs on, for timings to name the machine that made them.

    Returns ``{"cpu": name, "vendor": vendor_id ("AuthenticAMD", "GenuineIntel"; "" where not told), "cpu_family": int or None, "cpu_model": int or None, "simd": "avx512",
    "avx2" or "other"}``: the model name, family and model numbers as ``cpuinfo`` gives them
    (Linux; elsewhere ``platform.processor()`` and None), and the widest x86 vector instructions
    its flags list. Two CPUs sold under one name ("AMD EPYC" in a VM) ran the same CSGM cells at
    160 to 195 and 270 to 320 GFLOP/s (2026-12-05 and -07): the family and ``simd`` tell them apart.
    """
    import platform

    facts = {"cpu": platform.processor() or "", "vendor": "", "cpu_family": None, "cpu_model": None, "simd": "other"}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = (s.strip() for s in line.partition(":"))
                if key == "model name":
                    facts["cpu"] = value
                elif key == "vendor_id":
                    facts["vendor"] = value
                elif key == "cpu family" and value.isdigit():
                    facts["cpu_family"] = int(value)
                elif key == "model" and value.isdigit():
                    facts["cpu_model"] = int(value)
                elif key == "flags":
                    flags = set(value.split())
                    facts["simd"] = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"
                    break  # the first processor's entry names them all
    except OSError:
        pass
    return facts


def peak_rss_mb() -> float | None:
    """This process's largest resident memory so far, in MB (Linux and macOS; None elsewhere)."""
    try:
        import resource
    except ImportError:
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)  # (bytes on macOS, KB on Linux)


def cpu_label(facts: dict) -> str:
    """One line for a CPU that ``cpu_facts`` described: "AMD EPYC (family 26, model 2, avx512)"; the bare
    name for records made before it (no "simd" key)."""
    if "simd" not in facts:
        return facts.get("cpu", "")
    return f"{facts['cpu']} (family {facts['cpu_family']}, model {facts['cpu_model']}, {facts['simd']})"


#: "1": float32 products with a fixed matrix by oneDNN, "0": by torch's default (MKL's sgemm on x86);
#: unset or anything else: oneDNN exactly where ``mkl_skips_avx512`` (``onednn_products``).
ONEDNN_ENV = "INVGAN_ONEDNN"


def mkl_skips_avx512(facts: dict | None = None) -> bool:
    """Whether this CPU has AVX-512 that MKL's sgemm leaves unused: an AMD CPU with avx512f.

    MKL picks its kernels by the CPU's vendor and runs its AVX2 ones on AMD CPUs, while oneDNN
    (also in torch) picks by the instructions present. Measured on an AMD EPYC of family 26 (Zen 5,
    2 cores, 2026-12-07): MKL's sgemm 110 to 200 GFLOP/s for the Lasso's and CSGM's products,
    oneDNN's 250 to 445 (``scripts/gemm_paths.py``, ``docs/gemm_paths_s20.json``). On Intel CPUs
    MKL uses AVX-512 itself, and on AVX2-only CPUs both libraries have the same instructions: there
    the products stay with MKL (not measured against oneDNN)."""
    facts = cpu_facts() if facts is None else facts
    return facts.get("vendor") == "AuthenticAMD" and facts.get("simd") == "avx512"


@functools.cache
def _this_cpu_skips_avx512() -> bool:  # (read once per process)
    return mkl_skips_avx512()


def onednn_products(device) -> bool:
    """Whether float32 products with a fixed matrix on ``device`` go to oneDNN (torch's
    ``mkldnn_linear``) instead of torch's default ``@`` (MKL's sgemm): the Lasso's ADMM iterations
    (``invgan.lasso``) and ``GaussianCS``'s A and A^T from m = 1000 (``invgan.physics``).

    Only on the CPU, and only where torch was built with oneDNN. ``INVGAN_ONEDNN=1`` asks for it,
    ``INVGAN_ONEDNN=0`` forbids it; otherwise it is used where ``mkl_skips_avx512()``, i.e. where it
    was measured 2 to 2.5 times faster. The two libraries round differently (relative 1e-6 per
    product), so a result made one way differs from one made the other way in its last digits; how
    much that moves the sweep's results is measured in the README (Lasso solvers, "oneDNN").
    """
    import os

    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    flag = os.environ.get(ONEDNN_ENV, "")
    if flag in ("0", "1"):
        return flag == "1"
    return _this_cpu_skips_avx512()


def products_of(physics) -> str:
    """Which library an operator's products go to: its ``products()`` ("onednn" or "torch", as
    ``GaussianCS`` tells), "torch" for operators that do not say. Results made one way round differently
    from the other's, so resumed states and cached solutions are keyed by it."""
    return physics.products() if callable(getattr(physics, "products", None)) else "torch"


def onednn_linear(c: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """c @ weight^T by oneDNN's inner product on plain (dense, row-major) tensors: c (b, k) and
    weight (n, k), float32 on the CPU, both read where they are (torch's ``mkldnn::_linear_pointwise``,
    the op torch's compiler calls; no conversion to oneDNN's tensor type and back, which
    ``mkldnn_linear`` needs: the same kernels and the same bits, measured on every product shape the
    Lasso and ``GaussianCS`` use, and at m = 10000 no 1 GB of conversions per A A^T)."""
    return torch.ops.mkldnn._linear_pointwise(c.contiguous(), weight.contiguous(), None, "none", [], "")


class OneDNNRight:
    """A fixed float32 matrix W (k, n) applied from the right to rows by oneDNN's inner product:
    ``c @ this`` = c W for c (b, k), float32, on the CPU (``onednn_linear`` with W^T made
    row-major once; a second copy of W's size is held unless W is the transpose of a row-major
    matrix, which is then used as it is)."""

    def __init__(self, W: torch.Tensor):
        self.Wt = W.T.contiguous()

    def __rmatmul__(self, c: torch.Tensor) -> torch.Tensor:
        return onednn_linear(c, self.Wt)


class _RightProduct(torch.autograd.Function):
    """x -> x @ fwd, differentiable in x: the gradient is g @ bwd (bwd = fwd's transpose)."""

    @staticmethod
    def forward(ctx, x, fwd, bwd):
        ctx.bwd = bwd
        return x @ fwd

    @staticmethod
    def backward(ctx, g):
        return g @ ctx.bwd, None, None


def right_product(x: torch.Tensor, fwd: OneDNNRight, bwd: OneDNNRight) -> torch.Tensor:
    """x W by oneDNN (``fwd`` holds W, ``bwd`` W^T), with autograd's gradient g W^T by oneDNN too."""
    return _RightProduct.apply(x, fwd, bwd)
