"""ADMM's session-28 changes against the settings before them, paired per image (issue 15).

Same problem as ``invgan cs`` (the first 64 CelebA val faces, Gaussian A seed 0, noise seed 1, the DCT's
paper alpha). For each m and tol, ``Lasso("dct", tol=tol)`` (solver auto: ADMM from m = 500) runs in two
settings, alternating, each a first solve on its A (``clear_setup_cache``), after one untimed warm-up each:

- ``old``: the dual points as least-squares preimages of rho u at every tol, rho 4 x lam from m / n = 0.4
  (``ADMM_RESIDUAL_DUAL`` off, ``ADMM_RHO_WIDER`` = (0.6, 4.0): the settings of commit 289c5d1);
- ``new``: the defaults (the residual dual points at tol >= ``ADMM_RESIDUAL_DUAL_TOL`` with the float32
  set-up, rho 6 x lam from m / n = 0.6).

Reported per (m, tol): seconds of each round, the median ratio old / new and each pair's ratio, mean and
largest iterations per image, the largest certified gaps, the per-image relative objective differences
(new - old) / old, and the paired per-image MSE difference (new - old; mean and 95% half-width).

    python scripts/admm_dual_ab.py --ms 10000,7500,5000,2500 --tols 1e-4,1e-5 --rounds 2 --out docs/admm_s28_ab.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import invgan.lasso as L
from invgan.data import load_images
from invgan.methods import Lasso
from invgan.physics import GaussianCS
from invgan.runtime import cpu_facts, keep_freed_memory

MODES = {"old": dict(ADMM_RESIDUAL_DUAL=False, ADMM_RHO_WIDER=(0.6, 4.0)),
         "new": dict(ADMM_RESIDUAL_DUAL=L.ADMM_RESIDUAL_DUAL, ADMM_RHO_WIDER=L.ADMM_RHO_WIDER)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ms", default="10000,7500,5000,2500")
    ap.add_argument("--tols", default="1e-4,1e-5")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    x = load_images(None, partition="val", limit=args.images, progress=False).tensor()
    rows = []
    for m in [int(v) for v in args.ms.split(",")]:
        p = GaussianCS(m, (3, 64, 64), noise_std=0.01, seed=0)
        y = p(x, torch.Generator().manual_seed(1))
        for tol in [float(v) for v in args.tols.split(",")]:
            method = Lasso("dct", tol=tol)

            def run(mode):
                for k, v in MODES[mode].items():
                    setattr(L, k, v)
                L.clear_setup_cache()
                t = time.time()
                r = method(y, p).raw
                return r, time.time() - t

            run("new")  # warm-ups
            run("old")
            times, res = {"old": [], "new": []}, {}
            for k in range(args.rounds):
                for mode in (("new", "old") if k % 2 == 0 else ("old", "new")):
                    r, dt = run(mode)
                    times[mode].append(dt)
                    res[mode] = r
            for k, v in MODES["new"].items():
                setattr(L, k, v)
            a, b = res["new"], res["old"]

            def mse(r):
                return ((r.x.double() - x.double()) ** 2).flatten(1).mean(1)

            d = (mse(a) - mse(b)).numpy()
            rel = ((a.objective.double() - b.objective.double()) / b.objective.double()).numpy()
            row = {"m": m, "tol": tol, "new_s": [round(t, 2) for t in times["new"]],
                   "old_s": [round(t, 2) for t in times["old"]],
                   "speedup_median": float(np.median(times["old"]) / np.median(times["new"])),
                   "pair_ratios": [round(o / n, 3) for o, n in zip(times["old"], times["new"])],
                   "its_mean": [float(a.image_iterations.float().mean()), float(b.image_iterations.float().mean())],
                   "its_max": [int(a.image_iterations.max()), int(b.image_iterations.max())],
                   "gap_max": [float(a.gap.max()), float(b.gap.max())], "obj_rel": [float(rel.min()), float(rel.max())],
                   "mse": [float(mse(a).mean()), float(mse(b).mean())],
                   "paired_mse_diff": [float(d.mean()), float(1.96 * d.std(ddof=1) / np.sqrt(len(d)))]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        out = Path(args.out)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"rows": rows, "command": "python scripts/admm_dual_ab.py", **cpu_facts()}, indent=1))
        tmp.replace(out)


if __name__ == "__main__":
    keep_freed_memory()
    main()
