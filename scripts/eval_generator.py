"""Quality checks of trained generators (used to pick the shipped model; numbers go in its card).

For each checkpoint:
  rep_val / rep_train  representation error: per-pixel MSE of min_z ||G(z) - x||^2 ("identity",
                       --rep-restarts restarts, --rep-iters Adam iterations, lr 0.1), on the 64
                       lowest val ids and on 64 train images; the gap shows overfitting.
  cs500                CSGM at m = 500 with the paper's settings (noise 0.01, lambda 0, 2 restarts,
                       500 iterations, lr 0.1) on the same val images.

    python scripts/eval_generator.py CKPT [CKPT ...] [--val val64.npy] [--train train64.npy]
        [--device cuda] [--out eval.json]

Without --val/--train, the images are read from the configured CelebA folder.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from invgan.checkpoint import load_models
from invgan.csgm import csgm_reconstruct
from invgan.data import load_images, to_tensor
from invgan.fileio import write_json
from invgan.metrics import mse_per_image, summarize
from invgan.physics import GaussianCS, Identity


def evaluate(path, val, train, device, rep_restarts, rep_iters, seed=0):
    cfg, G, _, meta = load_models(path, device=device)
    out = {"checkpoint": str(path), "step": meta.get("step")}
    t0 = time.time()
    for name, x in (("rep_val", val), ("rep_train", train)):
        x = x.to(device)
        r = csgm_reconstruct(x, Identity(x.shape[1:], 0.0), G, restarts=rep_restarts,
                             iters=rep_iters, lr=0.1, seed=seed)
        out[name] = float(mse_per_image(r.x, x).mean())
    x = val.to(device)
    phys = GaussianCS(500, tuple(x.shape[1:]), noise_std=0.01, seed=seed, device=device)
    y = phys(x, torch.Generator().manual_seed(seed + 1))
    r = csgm_reconstruct(y, phys, G, z_reg=0.0, restarts=2, iters=500, lr=0.1, seed=seed)
    s = summarize(mse_per_image(r.x, x))
    out["cs500"], out["cs500_ci95"] = s["mean"], s["ci95"]
    out["seconds"] = time.time() - t0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--val")
    ap.add_argument("--train")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rep-restarts", type=int, default=4)
    ap.add_argument("--rep-iters", type=int, default=1000)
    ap.add_argument("--out")
    a = ap.parse_args()
    val = to_tensor(np.load(a.val)) if a.val else load_images(None, "val", limit=64, progress=False).tensor()
    train = to_tensor(np.load(a.train)) if a.train else load_images(None, "train", limit=64, progress=False).tensor()
    rows = []
    for p in a.checkpoints:
        rows.append(evaluate(Path(p), val, train, a.device, a.rep_restarts, a.rep_iters))
        r = rows[-1]
        print(f"{p}: rep_val {r['rep_val']:.4f}  rep_train {r['rep_train']:.4f}  "
              f"cs500 {r['cs500']:.4f} +- {r['cs500_ci95']:.4f}  ({r['seconds']:.0f} s)", flush=True)
    if a.out:
        write_json(a.out, {"command": " ".join(sys.argv), "results": rows})


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
