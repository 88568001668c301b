"""Yeh inpainting budgets: the paper's 1500 Adam steps against cheaper latent searches, image by image.

Same images, masks, G, D and seeds as `invgan inpaint --mask MASK` (the 64 lowest CelebA val ids).
A run's error is the per-pixel MSE in the hole after Poisson blending (what `invgan inpaint`
reports as PSNR hole); a cheaper budget is compared with the paper's by the paired per-image
difference, its mean and 95% interval (t-based), and the upper end as a share of the paper's error.

    python scripts/inpaint_budgets.py record --mask center --out runs/inpaint_budgets/center.pt
    python scripts/inpaint_budgets.py compare runs/inpaint_budgets/center.pt --optimizer lbfgs --iters 100 --history 60
    python scripts/inpaint_budgets.py compare runs/inpaint_budgets/center.pt --optimizer adam --iters 300 --lr 0.05
    python scripts/inpaint_budgets.py bench --num-images 16 --out r.json   # both budgets side by side (scripts/bench.py)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from invgan.fileio import atomic_path


def problem(mask: str, num_images: int, device: str = "cpu"):
    """(experiment, x, y, physics, G, D) exactly as `invgan inpaint --mask MASK --num-images N` builds them."""
    from invgan.experiment import load_networks, select_images
    from invgan.inpaint import InpaintConfig, InpaintExperiment

    cfg = InpaintConfig(mask=mask, num_images=num_images)
    exp = InpaintExperiment(cfg)
    G, D, _ = load_networks(None, None, True, True, True, device)
    x, ids, _ = select_images(None, num_images, G, device, cfg.seed, "data", [], size=G.image_shape[1],
                              channels=G.image_shape[0])
    physics, y = exp.measure(x, ids, device)
    return exp, x, y, physics, G, D


def solve(exp, y, physics, G, D, budget="paper", **overrides):
    """Yeh as `invgan inpaint --budget BUDGET` runs it (``YehInpainting.preset``, seed and blending
    as the experiment's), with any setting overridden: (Poisson-blended x_hat, loss (B,), seconds)."""
    from invgan.methods import YehInpainting

    c = exp.cfg
    method = YehInpainting.preset(budget, G, D, seed=c.seed + 2, blend="none", **overrides)
    t0 = time.time()
    rec = method(y, physics, progress=True)
    sec = time.time() - t0
    return exp.variants("yeh", rec, y, physics)["yeh+poisson"], rec.raw.objective, sec


def paired_interval(new: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Mean of new - ref and the half-width of its 95% interval (t-based: ``summarize``'s std)."""
    from scipy import stats

    from invgan.metrics import summarize

    d = summarize((new - ref).tolist())
    n = d["n"]
    return d["mean"], float(stats.t.ppf(0.975, n - 1) * d["std"] / n ** 0.5) if n > 1 else float("nan")


def paired(new: torch.Tensor, ref: torch.Tensor) -> str:
    mean, half = paired_interval(new, ref)
    base = float(ref.mean())
    return (f"{mean:+.5f} +- {half:.5f} (upper end {100 * (mean + half) / base:+.1f}% of {base:.5f}), "
            f"better on {int((new < ref).sum())} of {len(new)}")


def record(a):
    from invgan.metrics import mse_per_image

    exp, x, y, physics, G, D = problem(a.mask, a.num_images)
    x_hat, obj, sec = solve(exp, y, physics, G, D)
    mse = torch.from_numpy(mse_per_image(x_hat, x, exp.hole))
    print(f"paper budget: hole MSE {mse.mean():.5f}, objective {obj.mean():.2f}, {sec:.0f} s "
          f"({sec / len(x):.2f} s/image)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(a.out)) as tmp:
        torch.save({"mask": a.mask, "num_images": a.num_images, "mse_hole": mse, "objective": obj.detach().cpu(), "seconds": sec}, tmp)


def compare(a):
    from invgan.metrics import mse_per_image

    rec = torch.load(a.record, weights_only=True)
    exp, x, y, physics, G, D = problem(rec["mask"], rec["num_images"])
    x_hat, obj, sec = solve(exp, y, physics, G, D, optimizer=a.optimizer, iters=a.iters, lr=a.lr, history=a.history)
    mse = torch.from_numpy(mse_per_image(x_hat, x, exp.hole))
    print(f"{a.optimizer} {a.iters} passes (lr {a.lr}, history {a.history}): hole MSE {mse.mean():.5f} "
          f"against the paper's {rec['mse_hole'].mean():.5f}; objective {obj.mean():.2f} against "
          f"{rec['objective'].mean():.2f} (lower on {int((obj < rec['objective']).sum())} of {len(obj)}); "
          f"{sec:.0f} s against {rec['seconds']:.0f} s")
    print(f"  paired, new - paper: {paired(mse, rec['mse_hole'])}")


def bench(a):
    """The paper budget and the named lbfgs budget side by side on the same faces: seconds and the
    paired hole error, as JSON (a row of scripts/bench.py)."""
    from invgan.fileio import write_json
    from invgan.metrics import mse_per_image

    exp, x, y, physics, G, D = problem(a.mask, a.num_images, a.device)
    runs = {}
    for name in ("paper", "lbfgs"):
        x_hat, obj, sec = solve(exp, y, physics, G, D, name)
        runs[name] = (torch.from_numpy(mse_per_image(x_hat, x, exp.hole)).double(), obj, sec)
    (mp, op, sp), (ml, ol, sl) = runs["paper"], runs["lbfgs"]
    mean, half = paired_interval(ml, mp)
    r = {"inpaint": {"mask": a.mask, "images": a.num_images, "paper_s": sp, "lbfgs_s": sl, "speedup": sp / sl,
                     "mse_hole_paper_mean": float(mp.mean()), "mse_hole_lbfgs_mean": float(ml.mean()),
                     "mse_hole_diff_mean": mean, "mse_hole_diff_ci95": half,
                     "loss_lower": int((ol < op).sum())}}
    print(r)
    write_json(a.out, r)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--mask", default="center")
    r.add_argument("--num-images", type=int, default=64)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("record")
    c.add_argument("--optimizer", default="lbfgs", choices=("adam", "lbfgs"))
    c.add_argument("--iters", type=int, default=100)
    c.add_argument("--lr", type=float, default=0.01)
    c.add_argument("--history", type=int, default=60)
    b = sub.add_parser("bench")
    b.add_argument("--mask", default="center")
    b.add_argument("--num-images", type=int, default=16)
    b.add_argument("--device", default="cpu")
    b.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    {"record": record, "compare": compare, "bench": bench}[a.cmd](a)


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
