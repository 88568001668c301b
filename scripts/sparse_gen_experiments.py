"""Development experiments for Sparse-Gen (Dhar, Grover & Ermon 2018): x = G(z) + Psi w.

    python scripts/sparse_gen_experiments.py grid -m 20 500 10000 --num-images 16 \
        --alphas 1e-5 1e-4 1e-3 1e-2 --bases wavelet dct

``grid``: the latent-only start z0 (DCGAN+Reg, ``--budget``), then one Lasso on the residual
measurements y - A G(z0) per basis and alpha; prints the per-pixel MSE of clip(G(z0) + Psi w)
against the start's and plain Lasso's, on the first N of the 64 lowest CelebA val ids (the same
images, A and noise as ``invgan cs``). Latent starts are cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csgm_trajectories import problem  # noqa: E402

from invgan.fileio import atomic_path  # noqa: E402
from invgan.metrics import mse_per_image  # noqa: E402


def latent_start(m, n, budget, cache: Path, noise_std: float = 0.01):
    from invgan.methods import CSGM
    from invgan.physics import GaussianCS

    model_cfg, G, x, ids, p, y = problem(m, n)
    f = cache / f"z0_{budget}_m{m}_n{n}.pt"
    if noise_std != 0.01:  # as `invgan cs --noise-std`: the same A and noise draw, scaled
        p = GaussianCS(m, tuple(x.shape[1:]), noise_std, seed=0)
        y = p(x, torch.Generator().manual_seed(1))
        f = cache / f"z0_{budget}_m{m}_n{n}_noise{noise_std:g}.pt"
    if f.exists():
        d = torch.load(f, weights_only=True)
    else:
        t0 = time.time()
        r = CSGM.preset("dcgan-reg", G, budget=budget).reconstruct(y, p, progress=True)
        d = {"z": r.raw.z, "x": r.x, "seconds": time.time() - t0}
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(f) as tmp:
            torch.save(d, tmp)
    return G, x, p, y, d


def grid(args):
    from invgan.methods import Lasso

    for m in args.m:
        G, x, p, y, d = latent_start(m, args.num_images, args.budget, Path(args.cache))
        g = d["x"]
        print(f"m={m}: start (dcgan-reg {args.budget}, {d['seconds']:.0f} s) mse {mse_per_image(g, x).mean():.5f}",
              flush=True)
        r0 = y - p.A(g)
        for basis in args.bases:
            if args.plain:
                t0 = time.time()
                rec = Lasso(basis, solver=args.solver).reconstruct(y, p)
                print(f"  plain lasso-{basis}: mse {mse_per_image(rec.x, x).mean():.5f} ({time.time() - t0:.0f} s)",
                      flush=True)
            for a in args.alphas:
                t0 = time.time()
                rec = Lasso(basis, alpha=a, clip=False, solver=args.solver).reconstruct(r0, p)
                xh = (g + rec.x).clamp(-1, 1)
                mse = mse_per_image(xh, x)
                print(f"  {basis} alpha {a:g}: mse {mse.mean():.5f} (better than start on "
                      f"{int((mse < mse_per_image(g, x)).sum())}/{len(mse)}), nnz/img "
                      f"{(rec.raw.w != 0).flatten(1).sum(1).float().mean():.0f}, gap {rec.details['max_rel_gap']:.1e}, "
                      f"{time.time() - t0:.0f} s", flush=True)


def kappa(args):
    from invgan.csgm import PAPER_SETTINGS
    from invgan.sparse_gen import sparse_gen_reconstruct

    for m in args.m:
        G, x, p, y, d = latent_start(m, args.num_images, args.budget, Path(args.cache), args.noise_std)
        mse0 = mse_per_image(d["x"], x)
        print(f"m={m}, noise {args.noise_std:g}: start (dcgan-reg {args.budget}) mse {mse0.mean():.5f}", flush=True)
        for basis in args.bases:
            for k in [None] * args.rule + args.kappas:
                t0 = time.time()
                r = sparse_gen_reconstruct(y, p, G, d["z"], basis, kappa=k, z_reg=PAPER_SETTINGS["dcgan-reg"]["z_reg"],
                                           rounds=args.rounds, z_passes=args.z_passes, lasso_solver=args.solver)
                mse = mse_per_image(r.x, x)
                kname = "rule" if k is None else format(k, "g")
                print(f"  {basis} kappa {kname} rounds {args.rounds}: mse {mse.mean():.5f} (better on "
                      f"{int((mse < mse0).sum())}/{len(mse)}), alpha {r.alpha.mean():.3g}, nnz/img "
                      f"{(r.w != 0).flatten(1).sum(1).float().mean():.0f}, gap {r.lasso_gap.max():.1e}, objective "
                      f"{' > '.join(f'{h:.4g}' for h in r.history)}, {time.time() - t0:.0f} s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("grid")
    a.add_argument("-m", type=int, nargs="+", required=True)
    a.add_argument("--num-images", type=int, default=16)
    a.add_argument("--alphas", type=float, nargs="*", default=[1e-5, 1e-4, 1e-3, 1e-2])
    a.add_argument("--bases", nargs="+", default=["wavelet", "dct"])
    a.add_argument("--budget", default="lbfgs")
    a.add_argument("--solver", default="auto")
    a.add_argument("--plain", action="store_true", help="also plain Lasso at the paper's alpha")
    a.add_argument("--cache", default="runs/sparsegen")
    a = sub.add_parser("kappa")
    a.add_argument("-m", type=int, nargs="+", required=True)
    a.add_argument("--num-images", type=int, default=16)
    a.add_argument("--kappas", type=float, nargs="*", default=[])
    a.add_argument("--bases", nargs="+", default=["wavelet", "dct"])
    a.add_argument("--rounds", type=int, default=0)
    a.add_argument("--rule", action="store_true", help="also the rule's kappa (deviation_kappa)")
    a.add_argument("--noise-std", type=float, default=0.01)
    a.add_argument("--z-passes", type=int, default=30)
    a.add_argument("--budget", default="lbfgs")
    a.add_argument("--solver", default="auto")
    a.add_argument("--cache", default="runs/sparsegen")
    args = ap.parse_args(argv)
    {"grid": grid, "kappa": kappa}[args.cmd](args)


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
