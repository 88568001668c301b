"""Every mask type on the same images: Yeh et al. (+ Poisson and plain composite) vs biharmonic vs TV.

    python scripts/inpaint_demo.py --out runs/inpaint_demo            # 64 lowest val ids, paper settings
    python scripts/inpaint_demo.py --num-images 4 --iters 50 --out /tmp/demo   # a quick look

Each mask type runs `invgan inpaint` into OUT/<mask>/ (a finished one is skipped, so an interrupted
demo resumes). Then OUT/summary.json and OUT/summary.md hold PSNR / SSIM in the hole per method and
mask type, and OUT/inpaint_demo.png shows, per mask type, a few images: masked, each method, original.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MASKS = {  # name: InpaintConfig overrides
    "center": {"mask": "center"},
    "random": {"mask": "random"},
    "half-left": {"mask": "half", "side": "left"},
    "blob": {"mask": "blob"},
    "file-eyes": {"mask": "file", "mask_file": str(REPO / "examples" / "masks" / "eyes_band.png")},
}
SHOW = ["masked", "yeh_poisson", "biharmonic", "tv", "original"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/inpaint_demo")
    ap.add_argument("--images", help="default: CelebA val, lowest ids ($INVGAN_CELEBA)")
    ap.add_argument("--num-images", type=int, default=64)
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--masks", default=",".join(MASKS))
    ap.add_argument("--show", type=int, default=3, help="images per mask type in the figure")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from invgan import InvganError
    from invgan.inpaint import InpaintConfig, run_inpaint

    out = Path(args.out)
    names = [m for m in args.masks.split(",") if m]
    results = {}
    for name in names:
        run_dir = out / name
        if (run_dir / "metrics.json").is_file():
            results[name] = json.loads((run_dir / "metrics.json").read_text())
            print(f"{name}: done before, skipped")
            continue
        cfg = InpaintConfig(images=args.images, num_images=args.num_images, iters=args.iters,
                            blends=("poisson", "none"), seed=args.seed, **MASKS[name])
        t0 = time.time()
        try:
            results[name] = run_inpaint(cfg, run_dir, progress=True)
        except InvganError as exc:
            sys.exit(f"inpaint_demo: error: {exc}")
        results[name]["config"]["wall_seconds"] = time.time() - t0
        print(f"{name}: {time.time() - t0:.0f} s")

    write_summary(out, results)
    write_figure(out, names, args.show)


def write_summary(out: Path, results: dict) -> None:
    from invgan.fileio import write_json, write_text

    table = {name: {method: {k: s[k] for k in ("psnr_hole", "ssim_hole", "psnr", "ssim")}
                    for method, s in r["summary"].items()} | {"_mask": r["config"]["mask_description"],
                                                              "_n": r["config"]["num_images"]}
             for name, r in results.items()}
    write_json(out / "summary.json", table)
    methods = list(next(iter(results.values()))["summary"])
    lines = ["| mask | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name, t in table.items():
        cells = [f"{t[m]['psnr_hole']['mean']:.2f} dB / {t[m]['ssim_hole']['mean']:.3f}" for m in methods]
        best = max(methods, key=lambda m: t[m]["psnr_hole"]["mean"])
        cells = [f"**{c}**" if m == best else c for c, m in zip(cells, methods)]
        lines.append(f"| {t['_mask']} | " + " | ".join(cells) + " |")
    n = next(iter(table.values()))["_n"]
    write_text(out / "summary.md", f"PSNR / SSIM in the missing region, mean over {n} images "
               "(best PSNR in bold).\n\n" + "\n".join(lines) + "\n")
    print((out / "summary.md").read_text())


def write_figure(out: Path, names: list[str], show: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from invgan.fileio import save_figure

    fig, axes = plt.subplots(len(names), show * len(SHOW), squeeze=False,
                             figsize=(0.9 * show * len(SHOW) + 1.0, 1.0 * len(names) + 0.4))
    for r, name in enumerate(names):
        imgs = np.load(out / name / "images.npz")
        for i in range(show):
            for j, key in enumerate(SHOW):
                ax = axes[r][i * len(SHOW) + j]
                if i < len(imgs["original"]):
                    ax.imshow(imgs[key][i])
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(key.replace("_poisson", "+Poisson"), fontsize=7)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.995, top=0.93, bottom=0.01, wspace=0.03, hspace=0.05)
    save_figure(fig, out / "inpaint_demo.png", dpi=90)
    plt.close(fig)
    print(f"wrote {out / 'inpaint_demo.png'}")


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
