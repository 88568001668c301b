"""ADMM's penalty rho and over-relaxation against the iterations to a certified gap: the production
``invgan.lasso.lasso_admm`` on the lowest CelebA val ids (Gaussian A seed 0, noise 0.01 seed 1), one
run per setting, printing the seconds, the iterations (largest and mean per image), the largest
certified gap, the summed objective and the MSE.

    python scripts/admm_settings.py -m 5000 --images 8 --rho 0.075 0.15 0.3 0.6 1.2 2.4
    python scripts/admm_settings.py -m 2500 --images 8 --relax 1.7 1.9

Iteration counts do not depend on the machine; the seconds do (and at 8 images a batch is small).
"""

import argparse
import math
import time

import torch

from invgan import lasso
from invgan.data import load_images
from invgan.physics import GaussianCS

SHAPE = (3, 64, 64)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", type=int, default=2500)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--basis", default="wavelet", choices=["dct", "wavelet"])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--rho", type=float, nargs="+", default=[None],
                    help="penalties to try (default: lasso.admm_rho's rule for the basis's paper alpha)")
    ap.add_argument("--relax", type=float, nargs="+", default=[lasso.ADMM_RELAX])
    args = ap.parse_args(argv)
    x = load_images(None, partition="val", limit=args.images, progress=False).tensor()
    p = GaussianCS(args.m, SHAPE, noise_std=0.01, seed=0)
    y = p(x, torch.Generator().manual_seed(1))
    for rho in args.rho:
        for relax in args.relax:
            t = time.time()
            r = lasso.lasso_admm(y, p, args.basis, tol=args.tol, rho=rho, relax=relax)
            mse = (r.x - x).pow(2).flatten(1).mean(1)
            alpha = lasso.PAPER_ALPHA[args.basis]
            shown = lasso.admm_rho(alpha, args.m * alpha, args.m / math.prod(SHAPE)) if rho is None else rho
            print(f"m {args.m} rho {shown:g} relax {relax:g}: {time.time() - t:6.1f} s, iterations largest "
                  f"{r.iterations} mean {float(r.image_iterations.double().mean()):.0f}, largest gap "
                  f"{float(r.gap.max()):.2e}, objective (sum) {float(r.objective.double().sum()):.7f}, "
                  f"mse {float(mse.mean()):.6f}", flush=True)


if __name__ == "__main__":
    main()
