"""Pack the decoded CelebA train partition as lossless WebP into parts small enough to carry
to a GPU machine (the device tool moves at most 64 MiB a call). Not needed by users.

    python scripts/pack_device_data.py OUT_DIR [--parts 2]
    python scripts/pack_device_data.py --unpack OUT_DIR/part*.npz --out train.npy
"""
import argparse
import io
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def _enc(im):
    b = io.BytesIO()
    Image.fromarray(im).save(b, "WEBP", lossless=True, quality=100, method=4)
    return b.getvalue()


def _dec(b):
    return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--unpack", nargs="*")
    ap.add_argument("--out", dest="out_npy")
    a = ap.parse_args()
    if a.unpack:
        blobs = []
        for p in sorted(a.unpack):
            z = np.load(p)
            buf, off = z["buf"].tobytes(), z["off"]
            blobs += [buf[off[i]:off[i + 1]] for i in range(len(off) - 1)]
        with ProcessPoolExecutor() as ex:
            arr = np.stack(list(ex.map(_dec, blobs, chunksize=256)))
        np.save(a.out_npy, arr)
        print("unpacked", arr.shape)
        return
    from pathlib import Path

    from invgan.data import load_images

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_images(None, "train", progress=False)
    val = load_images(None, "val", limit=64, progress=False)
    np.save(out / "val64.npy", val.images)
    np.save(out / "train64.npy", train.images[:64])
    with ProcessPoolExecutor() as ex:
        blobs = list(ex.map(_enc, train.images, chunksize=256))
    for k, idx in enumerate(np.array_split(np.arange(len(blobs)), a.parts)):
        bl = [blobs[i] for i in idx]
        off = np.cumsum([0] + [len(b) for b in bl])
        np.savez(out / f"part{k}.npz", buf=np.frombuffer(b"".join(bl), np.uint8), off=off)
        print(f"part{k}: {len(bl)} images, {off[-1] / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
