"""Pin the CLI's per-image metrics on a small fixed setting (tests/data/pinned_metrics.json).

Run once on a known-good commit; ``tests/test_pinned.py`` reruns the same commands and checks that
every per-image MSE, PSNR and SSIM is unchanged (refactors must not move results):

    python scripts/pin_metrics.py --out tests/data/pinned_metrics.json
    python scripts/pin_metrics.py --rev 484ae4e     # pin from an earlier commit (a git worktree)

A CPU whose float rounding moves a row (CSGM's Adam steps amplify it) gets the whole set of that
run pinned from a known-good commit on that CPU under "machine_variants" in the JSON (run this
script, without --rev, in a worktree of that commit); the test accepts a run that matches any one set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: the pinned runs: name -> CLI arguments (IMAGES is replaced by a folder of fixed test images)
RUNS = {
    "cs_gaussian": ["cs", "--measurements", "50", "--input", "gen-span", "--num-images", "3", "--iters", "10",
                    "--methods", "dcgan,dcgan-reg,lasso-dct,lasso-wavelet", "--lasso-tol", "1e-3", "--seed", "0", "--budget", "paper"],
    "cs_superres": ["cs", "--physics", "superres", "--images", "IMAGES", "--num-images", "2",
                    "--iters", "15", "--methods", "dcgan,lasso-wavelet", "--seed", "1", "--budget", "paper"],
    "inpaint_center": ["inpaint", "--mask", "center", "--images", "IMAGES", "--num-images", "2",
                       "--iters", "20", "--methods", "yeh,biharmonic,tv", "--blend", "both", "--seed", "0"],
}


def write_test_images(folder: Path) -> Path:
    """Three 64x64 RGB PNGs cut from scikit-image's sample images (deterministic)."""
    from PIL import Image
    from skimage import data as skdata

    folder.mkdir(parents=True, exist_ok=True)
    crops = {"a_astronaut": skdata.astronaut()[10:230, 130:350], "b_chelsea": skdata.chelsea()[20:290, 120:390],
             "c_coffee": skdata.coffee()[50:350, 150:450]}
    for name, arr in crops.items():
        Image.fromarray(np.ascontiguousarray(arr)).resize((64, 64), Image.BILINEAR).save(folder / f"{name}.png")
    return folder


#: flags renamed since 0.1 (for pinning from an earlier commit)
LEGACY = {"--physics": "--measurement"}


def run_pinned(name: str, tmp: Path, args=None, repo: Path = REPO, legacy: bool = False) -> list[dict]:
    """Run one pinned command (in the checkout ``repo``); return its rows (id, method, mse, psnr, ssim)."""
    images = write_test_images(tmp / "images")
    out = tmp / name
    cmd = [a.replace("IMAGES", str(images)) for a in (args or RUNS[name])]
    if legacy:
        cmd = [LEGACY.get(a, a) for a in cmd]
    p = subprocess.run([sys.executable, "-m", "invgan", *cmd, "--out", str(out), "--quiet"],
                       capture_output=True, text=True, cwd=repo)
    if p.returncode != 0:
        raise RuntimeError(f"{name} failed: {p.stderr[-2000:]}")
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    return [{k: r[k] for k in ("id", "method", "mse", "psnr", "ssim")} for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "tests" / "data" / "pinned_metrics.json"))
    ap.add_argument("--rev", help="pin from this earlier commit (run in a temporary git worktree)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = REPO
        if a.rev:
            repo = Path(tmp) / "worktree"
            subprocess.run(["git", "worktree", "add", "--detach", str(repo), a.rev], cwd=REPO, check=True,
                           capture_output=True)
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=repo).stdout.strip()
            pinned = {name: run_pinned(name, Path(tmp), repo=repo, legacy=bool(a.rev)) for name in RUNS}
        finally:
            if a.rev:
                subprocess.run(["git", "worktree", "remove", "--force", str(repo)], cwd=REPO, capture_output=True)
    Path(a.out).write_text(json.dumps({"commit": commit, "runs": RUNS, "rows": pinned}, indent=1) + "\n")
    print(f"pinned {sum(map(len, pinned.values()))} rows from {commit} in {a.out}")


if __name__ == "__main__":
    main()
