"""Pin the CLI's per-image metrics on a small fixed setting (tests/data/pinned_metrics.json).

Run once on a known-good commit; ``tests/test_pinned.py`` reruns the same commands and checks that
every per-image MSE, PSNR and SSIM is unchanged (refactors must not move results):

    python scripts/pin_metrics.py --out tests/data/pinned_metrics.json
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
    "cs_gaussian": ["cs", "--measurements", "50", "--input", "gen-span", "--num-images", "3", "--iters", "20",
                    "--methods", "dcgan,dcgan-reg,lasso-dct,lasso-wavelet", "--seed", "0"],
    "cs_superres": ["cs", "--physics", "superres", "--images", "IMAGES", "--num-images", "2",
                    "--iters", "15", "--methods", "dcgan,lasso-wavelet", "--seed", "1"],
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


def run_pinned(name: str, tmp: Path, args=None) -> list[dict]:
    """Run one pinned command; return its rows (id, method, mse, psnr, ssim)."""
    images = write_test_images(tmp / "images")
    out = tmp / name
    cmd = [a.replace("IMAGES", str(images)) for a in (args or RUNS[name])]
    p = subprocess.run([sys.executable, "-m", "invgan", *cmd, "--out", str(out), "--quiet"],
                       capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"{name} failed: {p.stderr[-2000:]}")
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    return [{k: r[k] for k in ("id", "method", "mse", "psnr", "ssim")} for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "tests" / "data" / "pinned_metrics.json"))
    a = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        pinned = {name: run_pinned(name, Path(tmp)) for name in RUNS}
    Path(a.out).write_text(json.dumps({"commit": commit, "runs": RUNS, "rows": pinned}, indent=1) + "\n")
    print(f"pinned {sum(map(len, pinned.values()))} rows from {commit} in {a.out}")


if __name__ == "__main__":
    main()
