"""ADMM with MKL's products (``INVGAN_ONEDNN=0``) against oneDNN's (``INVGAN_ONEDNN=1``), side by side
(without the variable, ``invgan.runtime.onednn_products`` picks oneDNN on AMD CPUs with AVX-512 only).

Each way runs in its own process (the variable is read when ADMM sets up its operands): the CelebA val
faces, Gaussian A (seed 0), noisy y (seed 1), ``Lasso(basis, tol=1e-4)`` (solver auto) timed
``--repeat`` times after a 2-face warm-up. Prints seconds per image, largest iterations and certified
gap of each way, and the per-image relative objective difference (oneDNN minus MKL).

    python scripts/lasso_onednn.py -m 2500 --basis dct --images 64
    python scripts/lasso_onednn.py -m 2500 --basis wavelet --images 16 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ONE = """
import json, sys, time, torch
from invgan.data import load_images
from invgan.methods import Lasso
from invgan.physics import GaussianCS
m, basis, images, repeat, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
x = load_images(None, partition="val", limit=images, progress=False).tensor()
p = GaussianCS(m, tuple(x.shape[1:]), noise_std=0.01, seed=0)
y = p(x, torch.Generator().manual_seed(1))
method = Lasso(basis, tol=1e-4)
method(y[:2], p)
secs = []
for _ in range(repeat):
    t = time.time()
    rec = method(y, p)
    secs.append((time.time() - t) / len(y))
r = rec.raw
torch.save({"objective": r.objective.double(), "gap": r.gap.double(), "iterations": r.iterations,
            "seconds": secs, "solver": rec.details.get("solver")}, out)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", type=int, default=2500)
    ap.add_argument("--basis", default="dct")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flag in (("mkl", "0"), ("onednn", "1")):
            out = Path(tmp) / f"{name}.pt"
            t = time.time()
            p = subprocess.run([sys.executable, "-c", ONE, str(a.m), a.basis, str(a.images), str(a.repeat), str(out)],
                               env={**os.environ, "INVGAN_ONEDNN": flag}, capture_output=True, text=True)
            if p.returncode:
                sys.exit(f"lasso_onednn: the {name} run failed:\n{p.stderr[-3000:]}")
            res[name] = torch.load(out)
            r = res[name]
            print(f"{name}: {r['solver']}, s/image {[round(s, 4) for s in r['seconds']]}, largest iterations "
                  f"{r['iterations']}, largest gap {float(r['gap'].max()):.2e} ({time.time() - t:.0f} s in all)",
                  flush=True)
    d = (res["onednn"]["objective"] - res["mkl"]["objective"]) / res["mkl"]["objective"]
    print(json.dumps({"m": a.m, "basis": a.basis, "images": a.images,
                      "objective_onednn_minus_mkl": [float(d.min()), float(d.max())],
                      "speedup_best": min(res["mkl"]["seconds"]) / min(res["onednn"]["seconds"])}))


if __name__ == "__main__":
    main()
