"""float32 matrix products of the Lasso's shapes through torch's two CPU back ends: MKL and oneDNN.

``q @ Bt`` on the CPU goes to MKL's sgemm. MKL picks its code by CPU vendor, and on an AMD CPU with
AVX-512 (family 26, Zen 5: session 20's "AMD EPYC") it ran at 130 to 200 GFLOP/s while the generator's
convolutions, which go to oneDNN, ran at up to 320. This times, for each shape (rows b, inner n, out m),
the same product four ways, best of ``--repeat``, alone:

- ``mkl``: ``q @ Bt`` (what invgan's solvers run);
- ``conv1x1``: ``conv2d`` of q as a (1, n, b, 1) image with Bt as m 1x1 filters (oneDNN's convolution);
- ``onednn``: ``torch._C._nn.mkldnn_linear`` with both operands in oneDNN's layout (the matrix converted
  once, as a solver's fixed B would be);
- ``onednn+cvt``: the same with q converted in and the product converted out on every call (what an
  iteration whose q changes would pay).

and the largest relative difference of each result from MKL's. Prints the CPU (``cpu_facts``).

    python scripts/gemm_paths.py
    python scripts/gemm_paths.py --shapes 64x12288x500,64x500x12288 --out gemm.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from invgan.runtime import cpu_facts

# the ADMM iteration's two products at m = 500 and 2500 (64 faces, 64x64 RGB), the homotopy's at m = 100
SHAPES = "64x12288x500,64x500x12288,64x12288x2500,64x2500x12288,64x100x12288,2048x2048x2048"


def best_rate(f, flops: float, repeat: int) -> float:
    for _ in range(3):
        f()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=SHAPES, help="comma list of BxNxM: (B, N) @ (N, M)")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    facts = {**cpu_facts(), "threads": torch.get_num_threads(), "torch": torch.__version__,
             "onednn": torch.backends.mkldnn.is_available()}
    print(facts)
    rows = []
    g = torch.Generator().manual_seed(0)
    for shape in a.shapes.split(","):
        b, n, m = (int(v) for v in shape.split("x"))
        q, Bt = torch.randn(b, n, generator=g), torch.randn(n, m, generator=g)
        flops = 2.0 * b * n * m
        ref = q @ Bt
        row = {"shape": [b, n, m], "mkl": best_rate(lambda: q @ Bt, flops, a.repeat)}
        W = Bt.T.contiguous()
        x, W4 = q.T.contiguous()[None, :, :, None], W[:, :, None, None]
        row["conv1x1"] = best_rate(lambda: F.conv2d(x, W4), flops, a.repeat)
        row["conv1x1_err"] = float((F.conv2d(x, W4)[0, :, :, 0].T - ref).abs().max() / ref.abs().max())
        if facts["onednn"]:
            Wm = W.to_mkldnn()
            qm = q.to_mkldnn()
            row["onednn"] = best_rate(lambda: torch._C._nn.mkldnn_linear(qm, Wm), flops, a.repeat)
            row["onednn_cvt"] = best_rate(lambda: torch._C._nn.mkldnn_linear(q.to_mkldnn(), Wm).to_dense(), flops,
                                          a.repeat)
            row["onednn_err"] = float((torch._C._nn.mkldnn_linear(qm, Wm).to_dense() - ref).abs().max()
                                      / ref.abs().max())
        rows.append(row)
        print(f"{shape:>16}: mkl {row['mkl']:.0f}, conv1x1 {row['conv1x1']:.0f}"
              + (f", onednn {row['onednn']:.0f}, onednn+cvt {row['onednn_cvt']:.0f} GFLOP/s; "
                 f"relative difference {row['onednn_err']:.1e}" if "onednn" in row else " GFLOP/s"), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": facts, "rows": rows,
                                           "command": "python scripts/gemm_paths.py"}, indent=1))


if __name__ == "__main__":
    main()
