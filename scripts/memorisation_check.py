"""Memorisation check of a generator: for N samples, the distance (per-pixel MSE, [-1, 1]) to the
nearest training image and to the nearest val image. A generator that copies its training
data has samples much closer to train than to val images.

    python scripts/memorisation_check.py [--generator CKPT] [--n 64] [--seed 0] [--out mem.json]
"""
import argparse
import sys

import numpy as np
import torch

from invgan.checkpoint import load_models
from invgan.data import load_images
from invgan.fileio import write_json
from invgan.models import sample_latent


def nearest_mse(samples, images, chunk=4096):
    s = samples.flatten(1)
    best = torch.full((len(s),), float("inf"))
    idx = torch.zeros(len(s), dtype=torch.long)
    for start in range(0, len(images), chunk):
        x = images.tensor(np.arange(start, min(start + chunk, len(images)))).flatten(1)
        d = (s.pow(2).sum(1, keepdim=True) - 2 * s @ x.T + x.pow(2).sum(1)) / s.shape[1]
        v, i = d.min(1)
        better = v < best
        best[better], idx[better] = v[better], i[better] + start
    return best.clamp_min(0), idx


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--generator")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    a = ap.parse_args()
    cfg, G, _, _ = load_models(a.generator)
    with torch.no_grad():
        s = G(sample_latent(a.n, cfg, torch.Generator().manual_seed(a.seed)))
    train = load_images(None, "train", progress=False)
    val = load_images(None, "val", progress=False)
    dt, _ = nearest_mse(s, train)
    dv, _ = nearest_mse(s, val)
    # the train set is 7.4x larger than val: compare also with a random train subset of val's size
    sub = load_images(None, "train", progress=False)
    keep = np.random.default_rng(0).choice(len(sub), len(val), replace=False)
    sub.images, sub.ids = sub.images[np.sort(keep)], [sub.ids[i] for i in np.sort(keep)]
    dts, _ = nearest_mse(s, sub)
    res = {"command": " ".join(sys.argv), "n_samples": a.n, "train_images": len(train), "val_images": len(val),
           "nearest_train_mse_mean": float(dt.mean()), "nearest_val_mse_mean": float(dv.mean()),
           "nearest_train_subset_same_size_as_val_mse_mean": float(dts.mean()),
           "samples_closer_to_train_than_val": int((dt < dv).sum()),
           "nearest_train_mse_min": float(dt.min()), "nearest_train_mse": dt.tolist(), "nearest_val_mse": dv.tolist()}
    print({k: v for k, v in res.items() if not isinstance(v, list)})
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    main()
