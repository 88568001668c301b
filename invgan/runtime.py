"""Where computations run."""

from __future__ import annotations

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

    Returns ``{"cpu": name, "cpu_family": int or None, "cpu_model": int or None, "simd": "avx512",
    "avx2" or "other"}``: the model name, family and model numbers as ``cpuinfo`` gives them
    (Linux; elsewhere ``platform.processor()`` and None), and the widest x86 vector instructions
    its flags list. Two CPUs sold under one name ("AMD EPYC" in a VM) ran the same CSGM cells at
    160 to 195 and 270 to 320 GFLOP/s (2026-12-05 and -07): the family and ``simd`` tell them apart.
    """
    import platform

    facts = {"cpu": platform.processor() or "", "cpu_family": None, "cpu_model": None, "simd": "other"}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = (s.strip() for s in line.partition(":"))
                if key == "model name":
                    facts["cpu"] = value
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


def cpu_label(facts: dict) -> str:
    """One line for a CPU that ``cpu_facts`` described: "AMD EPYC (family 26, model 2, avx512)"; the bare
    name for records made before it (no "simd" key)."""
    if "simd" not in facts:
        return facts.get("cpu", "")
    return f"{facts['cpu']} (family {facts['cpu_family']}, model {facts['cpu_model']}, {facts['simd']})"
