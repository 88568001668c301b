"""How far float rounding alone moves CSGM's (and Yeh's) per-image results: the floor under any
paired bar.

Runs ``invgan cs`` (or ``invgan inpaint``) twice on the same images, A or mask, noise and starts:
once as it is, once with the generator's and discriminator's batch-norms folded into the
convolutions before them (``torch.nn.utils.fusion.fuse_conv_bn_eval``: the same functions, images
within 3e-6 and latent gradients within 1e-6 relative of the unfolded networks', only the float
rounding differs). Then prints the paired per-image MSE difference (folded minus as is; for
inpainting the hole's MSE after Poisson blending) with its 95% interval and upper end as a share of
the error -- the quantity the CSGM budget bar holds to +2% -- and on how many images the two runs
agree to 1e-4 relative.

    python scripts/csgm_rounding_floor.py -m 20 --method dcgan --num-images 64
    python scripts/csgm_rounding_floor.py -m 500 --method dcgan --num-images 64
    python scripts/csgm_rounding_floor.py --inpaint center --num-images 64

Any budget change that moves a latent's path (another optimiser, a schedule) is at least this
noisy when scored image by image; a change that keeps the paths (dropping restarts, replayed on a
record: scripts/csgm_trajectories.py replay) is not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import invgan.latent as latent  # noqa: E402
import invgan.yeh as yeh  # noqa: E402
from invgan.cli import main as invgan_main  # noqa: E402
from invgan.metrics import summarize  # noqa: E402
from invgan.plots import load_results  # noqa: E402


def folded(frozen):
    """``frozen`` followed by folding each (convolution, eval batch-norm) pair of a Sequential."""
    def wrap(module):
        net = frozen(module)
        for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
            names = list(seq._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = seq._modules[a], seq._modules[b]
                if type(conv) in (nn.Conv2d, nn.ConvTranspose2d) and type(bn) is nn.BatchNorm2d:
                    seq._modules[a] = fuse_conv_bn_eval(conv, bn, transpose=type(conv) is nn.ConvTranspose2d)
                    seq._modules[b] = nn.Identity()
        return net.requires_grad_(False)
    return wrap


def run(args, out: Path, fold: bool) -> tuple[np.ndarray, float]:
    modules = (latent, yeh)  # the generator's frozen copy is made in latent, the discriminator's in yeh
    real = [mod.frozen for mod in modules]
    for mod, fn in zip(modules, real):
        mod.frozen = folded(fn) if fold else fn
    if args.inpaint:
        cmd = ["inpaint", "--mask", args.inpaint, "--methods", "yeh", "--blend", "poisson"]
        method, metric = "yeh+poisson", "mse_hole"
    else:
        cmd = ["cs", "-m", str(args.m), "--methods", args.method, "--budget", args.budget]
        method, metric = args.method, "mse"
    try:
        t = time.time()
        try:
            invgan_main(cmd + ["--num-images", str(args.num_images), "--seed", str(args.seed), "--out", str(out),
                               "--quiet"])
        except SystemExit as e:
            if e.code:
                raise
        seconds = time.time() - t
    finally:
        for mod, fn in zip(modules, real):
            mod.frozen = fn
    rows, _, _ = load_results(out / "results.csv")
    return np.array([float(r[metric]) for r in rows if r["method"] == method]), seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", type=int, default=20)
    ap.add_argument("--method", default="dcgan", choices=["dcgan", "dcgan-reg"])
    ap.add_argument("--num-images", type=int, default=64)
    ap.add_argument("--budget", default="paper")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inpaint", metavar="MASK", help="run invgan inpaint --mask MASK (Yeh, paper budget) instead")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        plain, t_plain = run(args, Path(tmp) / "plain", False)
        fold, t_fold = run(args, Path(tmp) / "fold", True)
    d = fold - plain
    stats = summarize(d)
    mean, ci = stats["mean"], stats["ci95"]
    same = int((np.abs(d) <= 1e-4 * plain).sum())
    what = f"yeh, mask {args.inpaint} (hole MSE)" if args.inpaint else f"{args.method}, m = {args.m}, budget {args.budget}"
    print(f"{what}, {len(d)} images: MSE as is {plain.mean():.5f} "
          f"({t_plain:.0f} s), folded {fold.mean():.5f} ({t_fold:.0f} s); folded - as is {mean:+.5f} +- {ci:.5f} "
          f"(upper 95% end {100 * (mean + ci) / plain.mean():+.2f}% of the error); the same to 1e-4 on {same} "
          f"of {len(d)} images, largest change {np.max(np.abs(d) / plain):.0%} of an image's error")


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()
    main()
