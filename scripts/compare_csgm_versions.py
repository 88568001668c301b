"""Time CSGM as it is now and as it was at an earlier git revision, on the same problem (the
lowest CelebA val ids, Gaussian A seed 0, noise seed 1, the shipped generator), one after the
other in fresh processes, and check that the reconstructions are the same.

    python scripts/compare_csgm_versions.py --rev 484ae4e --images 16 -m 500 --iters 100
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUN = r'''
import json, sys, time, torch
from invgan.checkpoint import load_models
from invgan.csgm import csgm_reconstruct
from invgan.data import load_images
from invgan.physics import GaussianCS
images, m, iters, restarts, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cfg, G, _, _ = load_models(None)
x = load_images(None, partition="val", limit=images, progress=False).tensor()
p = GaussianCS(m, (3, 64, 64), noise_std=0.01, seed=0)
y = p(x, torch.Generator().manual_seed(1))
import inspect
if "model_cfg" in inspect.signature(csgm_reconstruct).parameters:  # before the library API
    run = lambda: csgm_reconstruct(y, p, G, cfg, restarts=restarts, iters=iters, seed=2)
else:
    run = lambda: csgm_reconstruct(y, p, G, restarts=restarts, iters=iters, seed=2)
t = time.time()
r = run()
secs = time.time() - t
torch.save(r.x, out)
print(json.dumps({"seconds": secs, "mse": float((r.x - x).pow(2).mean())}))
'''


def run(src: Path, args, out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    p = subprocess.run([sys.executable, "-c", RUN, str(args.images), str(args.m), str(args.iters), str(args.restarts), out],
                       cwd=src, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="484ae4e")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("-m", type=int, default=500)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--restarts", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    tmp = Path(tempfile.mkdtemp())
    old = tmp / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(old), args.rev], cwd=REPO, check=True, capture_output=True)
    try:
        res = {"now": run(REPO, args, str(tmp / "now.pt")), args.rev: run(old, args, str(tmp / "old.pt"))}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
    diff = float((torch.load(tmp / "now.pt") - torch.load(tmp / "old.pt")).abs().max())
    for name, r in res.items():
        print(f"{name:8s} {r['seconds']:7.1f} s   mse {r['mse']:.6f}")
    print(f"speed-up now / {args.rev}: {res[args.rev]['seconds'] / res['now']['seconds']:.2f}x; "
          f"largest |x_now - x_{args.rev}|: {diff:.2e}")


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    sys.exit(main())
