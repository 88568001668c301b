"""Inpainting masks (Yeh et al. 2017): 1 = known pixel, 0 = missing.

Every mask is a float tensor (N, 1, H, W) with values in {0, 1}, one per image, shared by the
colour channels. Random kinds (random pixels, blobs) draw a different mask per image from
``seed``, so the same seed gives the same masks.

Kinds: ``center`` (a size x size hole, default half the side: 32x32 at 64 px), ``random``
(a fraction of pixels missing, default 0.8), ``half`` (one side missing: left, right, top or
bottom), ``blob`` (smooth random blobs covering ``fraction`` of the image, default 0.3, at
least 0.25) and ``file`` (an image or .npy file: white / nonzero = known).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from invgan import InvganError

MASK_KINDS = ("center", "random", "half", "blob", "file")
SIDES = ("left", "right", "top", "bottom")
DEFAULT_FRACTION = {"random": 0.8, "blob": 0.3}


def center_mask(size: int = 64, hole: int | None = None) -> torch.Tensor:
    """(1, 1, size, size): a centred hole x hole block missing (default size // 2)."""
    hole = size // 2 if hole is None else hole
    if not 1 <= hole < size:
        raise InvganError(f"centre hole size must be between 1 and {size - 1} for {size}px images, got {hole}")
    m = torch.ones(1, 1, size, size)
    t = (size - hole) // 2
    m[..., t:t + hole, t:t + hole] = 0
    return m


def half_mask(size: int = 64, side: str = "left") -> torch.Tensor:
    """(1, 1, size, size) with the ``side`` half missing."""
    if side not in SIDES:
        raise InvganError(f"unknown side {side!r}: use one of {', '.join(SIDES)}")
    m = torch.ones(1, 1, size, size)
    h = size // 2
    region = {"left": (slice(None), slice(0, h)), "right": (slice(None), slice(size - h, None)),
              "top": (slice(0, h), slice(None)), "bottom": (slice(size - h, None), slice(None))}[side]
    m[0, 0][region] = 0
    return m


def random_mask(n: int, size: int = 64, fraction: float = 0.8, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size): in each mask exactly round(fraction * size^2) pixels missing."""
    _check_fraction(fraction)
    rng = np.random.default_rng(seed)
    k = int(round(fraction * size * size))
    out = np.ones((n, size * size), np.float32)
    for i in range(n):
        out[i, rng.permutation(size * size)[:k]] = 0
    return torch.from_numpy(out.reshape(n, 1, size, size))


def blob_mask(n: int, size: int = 64, fraction: float = 0.3, seed: int = 0, smoothness: float = 4.0) -> torch.Tensor:
    """(n, 1, size, size): thresholded smoothed noise, exactly round(fraction * size^2) missing.

    ``smoothness`` is the Gaussian filter's sigma in pixels: larger gives fewer, rounder blobs.
    """
    from scipy.ndimage import gaussian_filter

    _check_fraction(fraction)
    if fraction < 0.25:
        raise InvganError(f"blob masks cover at least a quarter of the image; got fraction {fraction}")
    rng = np.random.default_rng(seed)
    k = int(round(fraction * size * size))
    out = np.ones((n, size * size), np.float32)
    for i in range(n):
        field = gaussian_filter(rng.standard_normal((size, size)), smoothness, mode="wrap").ravel()
        out[i, np.argsort(-field, kind="stable")[:k]] = 0  # the k highest values are the blobs
    return torch.from_numpy(out.reshape(n, 1, size, size))


def read_mask(path, size: int = 64) -> torch.Tensor:
    """(1, 1, size, size) from an image (white / > 127 = known) or a .npy array (nonzero = known)."""
    p = Path(path)
    if not p.is_file():
        raise InvganError(f"mask file {str(path)!r} does not exist")
    if p.suffix.lower() == ".npy":
        try:
            a = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InvganError(f"mask file {str(path)!r} is not a readable .npy array ({exc})") from None
        a = np.asarray(a)
        while a.ndim > 2 and a.shape[0] == 1:
            a = a[0]
        known = a != 0
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("L"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InvganError(f"mask file {str(path)!r} is not a readable image ({exc})") from None
        known = a > 127
    if known.shape != (size, size):
        raise InvganError(f"mask file {str(path)!r} is {'x'.join(map(str, known.shape[::-1]))}, "
                          f"the images are {size}x{size}: resize the mask")
    return torch.from_numpy(known.astype(np.float32))[None, None]


def make_masks(kind: str, n: int, size: int = 64, seed: int = 0, hole: int | None = None,
               fraction: float | None = None, side: str = "left", path=None) -> torch.Tensor:
    """Masks for n images: float (n, 1, size, size), 1 = known. See the module docstring."""
    if kind == "center":
        m = center_mask(size, hole)
    elif kind == "half":
        m = half_mask(size, side)
    elif kind == "random":
        m = random_mask(n, size, DEFAULT_FRACTION["random"] if fraction is None else fraction, seed)
    elif kind == "blob":
        m = blob_mask(n, size, DEFAULT_FRACTION["blob"] if fraction is None else fraction, seed)
    elif kind == "file":
        if path is None:
            raise InvganError("mask kind 'file' needs a mask file (--mask-file PATH)")
        m = read_mask(path, size)
    else:
        raise InvganError(f"unknown mask {kind!r}: use one of {', '.join(MASK_KINDS)}")
    m = m.expand(n, 1, size, size).contiguous()
    check_masks(m, n, size)
    return m


def check_masks(masks: torch.Tensor, n: int, size: int) -> None:
    """Raise a one-line error for masks of the wrong shape, with no known or no missing pixel."""
    if tuple(masks.shape) != (n, 1, size, size):
        raise InvganError(f"masks have shape {tuple(masks.shape)}, expected ({n}, 1, {size}, {size})")
    known = masks.flatten(1).sum(1)
    if (known == 0).any():
        raise InvganError(f"mask {int((known == 0).nonzero()[0])} has no known pixels: nothing to inpaint from")
    if (known == size * size).any():
        raise InvganError(f"mask {int((known == size * size).nonzero()[0])} has no missing pixels: nothing to inpaint")


def describe(kind: str, hole=None, fraction=None, side="left", path=None, size: int = 64) -> str:
    if kind == "center":
        h = size // 2 if hole is None else hole
        return f"center {h}x{h}"
    if kind == "half":
        return f"half ({side} missing)"
    if kind in DEFAULT_FRACTION:
        f = DEFAULT_FRACTION[kind] if fraction is None else fraction
        return f"{kind} ({f:.0%} missing)"
    return f"file {Path(path).name}"


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise InvganError(f"missing fraction must be strictly between 0 and 1, got {fraction}")
