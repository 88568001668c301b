"""invgan.runtime.keep_freed_memory: freed large blocks are reused, not faulted in again; cpu_facts: the CPU
that timings name; onednn_products: which library runs the float32 products with a fixed matrix."""

import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# 64 MB tensors, each written and freed, 15 times; then the minor page faults of 10 more (the heap
# first grows a few times: each aligned request is a little larger than the block freed before it)
LOOP = """
import resource, sys, torch
from invgan.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "1" else False
for _ in range(15):
    torch.empty(2 ** 24).fill_(1.0)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(2 ** 24).fill_(1.0)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def faults(arg, **env):
    p = subprocess.run([sys.executable, "-c", LOOP, arg], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, **env})
    assert p.returncode == 0, p.stderr
    applied, count = p.stdout.split()
    return applied == "True", int(count)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_keep_freed_memory_reuses_freed_blocks_instead_of_faulting_them_in_again():
    off, faults_off = faults("0")
    on, faults_on = faults("1")
    assert not off and on
    assert faults_off >= 10 * 2 ** 24 * 4 // 4096 * 0.9  # the allocator's defaults: every page of every block
    assert faults_on < faults_off / 20
    disabled, faults_disabled = faults("1", INVGAN_KEEP_FREED_MEMORY="0")  # the opt-out
    assert not disabled and faults_disabled >= faults_off * 0.9


def test_the_invgan_command_keeps_freed_memory(monkeypatch):
    import invgan.cli
    import invgan.runtime

    called = []
    monkeypatch.setattr(invgan.runtime, "keep_freed_memory", lambda: called.append(1) or True)
    with pytest.raises(SystemExit):
        invgan.cli.main(["--help"])
    assert called == [1]


ENTRY = """processor\t: {i}
vendor_id\t: {vendor}
cpu family\t: {family}
model\t\t: {model}
model name\t: AMD EPYC
flags\t\t: fpu sse2 {flags} fma
"""


@pytest.mark.parametrize("vendor, family, model, flags, simd, onednn", [
    ("AuthenticAMD", 23, 49, "avx avx2", "avx2", False),  # AVX2 only, as the brief names its machine
    ("AuthenticAMD", 26, 2, "avx avx2 avx512f avx512_bf16", "avx512", True),  # session 20's: the same name, AVX-512
    ("GenuineIntel", 6, 143, "avx avx2 avx512f amx_tile", "avx512", False),  # MKL runs its AVX-512 kernels here
    ("GenuineIntel", 6, 15, "sse4_2", "other", False),
])
def test_cpu_facts_tell_cpus_of_one_name_apart(tmp_path, vendor, family, model, flags, simd, onednn):
    from invgan.runtime import cpu_facts, mkl_skips_avx512

    info = tmp_path / "cpuinfo"
    info.write_text("\n".join(ENTRY.format(i=i, vendor=vendor, family=family, model=model, flags=flags)
                              for i in range(2)))
    facts = cpu_facts(str(info))
    assert facts == {"cpu": "AMD EPYC", "vendor": vendor, "cpu_family": family, "cpu_model": model, "simd": simd}
    assert mkl_skips_avx512(facts) is onednn
    missing = cpu_facts(str(tmp_path / "none"))  # not Linux: the platform's name, nothing else
    assert missing["cpu_family"] is None and missing["simd"] == "other" and not mkl_skips_avx512(missing)


def test_onednn_products_follow_the_variable_then_the_cpu(monkeypatch):
    import torch

    import invgan.runtime as rt

    if not torch.backends.mkldnn.is_available():
        assert not rt.onednn_products("cpu")
        return
    for cpu_rule in (False, True):
        monkeypatch.setattr(rt, "_this_cpu_skips_avx512", lambda rule=cpu_rule: rule)
        for flag, want in (("1", True), ("0", False), ("", cpu_rule), ("auto", cpu_rule)):
            monkeypatch.setenv(rt.ONEDNN_ENV, flag)
            assert rt.onednn_products("cpu") is want
        monkeypatch.setenv(rt.ONEDNN_ENV, "1")
        assert not rt.onednn_products("cuda")  # a CPU library: never for another device's tensors


@pytest.mark.parametrize("b, k, n", [(64, 500, 1200), (64, 1200, 500), (7, 300, 300), (1, 500, 1200), (64, 100, 784)])
def test_onednn_linear_on_plain_tensors_gives_mkldnn_linears_bits(b, k, n):
    """``onednn_linear`` (oneDNN's inner product on row-major tensors, no conversion) against torch's
    ``mkldnn_linear`` on oneDNN tensors, the path it replaced: the same product to the bit, and
    ``OneDNNRight`` applies W from the right as ``@`` does to float32 rounding."""
    import torch

    import invgan.runtime as rt

    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    g = torch.Generator().manual_seed(b + k + n)
    c, W = torch.randn(b, k, generator=g), torch.randn(k, n, generator=g)
    old = torch._C._nn.mkldnn_linear(c.to_mkldnn(), W.T.contiguous().to_mkldnn()).to_dense()
    assert torch.equal(rt.onednn_linear(c, W.T.contiguous()), old)
    assert torch.equal(c @ rt.OneDNNRight(W), old)
    assert torch.equal(c[:, ::2] @ rt.OneDNNRight(W[::2]), rt.onednn_linear(c[:, ::2].contiguous(), W[::2].T))
    torch.testing.assert_close(old, c @ W, rtol=1e-4, atol=1e-4)
