"""Run invgan's Lasso solver as it is now and as it was at an earlier git revision, on the same
problem (the lowest CelebA val ids, Gaussian A seed 0, noise seed 1), and print iterations, the
largest certified relative duality gap, the summed objective and the MSE of each.

    python scripts/compare_lasso_versions.py --rev c02679f --images 16 -m 500 --basis wavelet --tol 1e-4
    python scripts/compare_lasso_versions.py --rev a13059e --solver homotopy --images 3 -m 300
    python scripts/compare_lasso_versions.py --rev dca59d4 --solver admm --old-solver fista --images 64 -m 2500 --basis wavelet
        (a solver now against another one as it was: ADMM against FISTA before ADMM existed)

The last line pairs the two revisions image by image: the largest relative objective difference.
``--repeat 2`` runs the pair twice, the second time in the other order (timings on a noisy machine;
the ratio is of the summed seconds). ``--old-set NAME=VALUE`` sets a constant of the earlier revision's
module (its own copy), so ``--rev HEAD --old-set ADMM_SPARSE_MAX_M=0`` runs the code as it is against
itself with one switch turned off.
"""

import argparse
import ast
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from invgan import lasso as lasso_now
from invgan.data import load_images
from invgan.physics import GaussianCS

REPO = Path(__file__).resolve().parents[1]


def old_module(rev: str):
    text = subprocess.run(["git", "show", f"{rev}:invgan/lasso.py"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
    path = Path(tempfile.mkdtemp()) / "lasso_old.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("lasso_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["lasso_old"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="c02679f")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("-m", type=int, default=500)
    ap.add_argument("--basis", default="dct", choices=["dct", "wavelet"])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--solver", default="fista", choices=["fista", "homotopy", "admm"])
    ap.add_argument("--old-solver", choices=["fista", "homotopy", "admm"], help="the earlier revision's (default: --solver)")
    ap.add_argument("--repeat", type=int, default=1, help="run the pair this many times, alternating the order")
    ap.add_argument("--old-set", action="append", default=[], metavar="NAME=VALUE",
                    help="set a constant of the earlier revision's invgan.lasso (repeatable)")
    args = ap.parse_args(argv)
    old = old_module(args.rev)
    for item in args.old_set:
        name, _, value = item.partition("=")
        if not hasattr(old, name):
            sys.exit(f"compare_lasso_versions: {args.rev}'s invgan.lasso has no {name!r}")
        setattr(old, name, ast.literal_eval(value))
    x = load_images(None, partition="val", limit=args.images, progress=False).tensor()
    p = GaussianCS(args.m, (3, 64, 64), noise_std=0.01, seed=0)
    y = p(x, torch.Generator().manual_seed(1))
    objectives, errors = {}, {}
    seconds = {"now": 0.0, args.rev: 0.0}
    pair = (("now", lasso_now, args.solver), (args.rev, old, args.old_solver or args.solver))
    order = [run for k in range(args.repeat) for run in (pair if k % 2 == 0 else pair[::-1])]
    for name, mod, solver in order:
        t = time.time()
        if solver == "homotopy":
            r = mod.lasso_homotopy(y, p, args.basis)
        elif solver == "admm":
            r = mod.lasso_admm(y, p, args.basis, tol=args.tol)
        else:
            r = mod.lasso_fista(y, p, args.basis, tol=args.tol)
        seconds[name] += time.time() - t
        objectives[name] = r.objective.double()
        errors[name] = (r.x - x).pow(2).flatten(1).mean(1).double()
        mean_its = f" (mean {float(r.image_iterations.double().mean()):.0f})" if r.image_iterations is not None else ""
        print(f"{name:8s} {solver:8s} {time.time() - t:6.1f} s  iterations {r.iterations}{mean_its}  largest certified "
              f"gap {float(r.gap.max()):.2e} ({int((r.gap <= 1e-4).sum())} of {len(r.gap)} at most 1e-4)  objective "
              f"(sum) {float(r.objective.double().sum()):.6f}  mse {float(errors[name].mean()):.5f}", flush=True)
    rel = (objectives["now"] - objectives[args.rev]) / objectives[args.rev]
    d = errors["now"] - errors[args.rev]
    ci = 1.96 * float(d.std()) / len(d) ** 0.5 if len(d) > 1 else float("nan")
    print(f"now / {args.rev}: time ratio {seconds[args.rev] / seconds['now']:.2f}x; per image, relative objective difference "
          f"{float(rel.min()):+.1e} to {float(rel.max()):+.1e}; mse difference (now - then) {float(d.mean()):+.5f} "
          f"+- {ci:.5f}, lower on {int((d < 0).sum())} of {len(d)}")


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    sys.exit(main())
