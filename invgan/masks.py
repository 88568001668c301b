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

from invgan.errors import InvganError

MASK_KINDS = ("center", "random", "half", "blob", "file")
SIDES = ("left", "right", "top", "bottom")
DEFAULT_FRACTION = {"random": 0.8, "blob": 0.3}


def _hw(size) -> tuple[int, int]:
    """``size``: int S (S x S), (H, W) or (C, H, W)."""
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)[-2:]
    if len(hw) != 2 or min(hw) < 2:
        raise InvganError(f"mask size must be an int or (height, width) of at least 2, got {size!r}")
    return int(hw[0]), int(hw[1])


def center_mask(size, hole: int | None = None) -> torch.Tensor:
    """(1, 1, H, W): a centred hole x hole block missing (default min(H, W) // 2).
    ``size``: int S (S x S), (H, W) or (C, H, W)."""
    H, W = _hw(size)
    hole = min(H, W) // 2 if hole is None else hole
    if not 1 <= hole < min(H, W):
        raise InvganError(f"centre hole size must be between 1 and {min(H, W) - 1} for {H}x{W} images, got {hole}")
    m = torch.ones(1, 1, H, W)
    t, l = (H - hole) // 2, (W - hole) // 2
    m[..., t:t + hole, l:l + hole] = 0
    return m


def half_mask(size, side: str = "left") -> torch.Tensor:
    """(1, 1, H, W) with the ``side`` half missing."""
    if side not in SIDES:
        raise InvganError(f"unknown side {side!r}: use one of {', '.join(SIDES)}")
    H, W = _hw(size)
    m = torch.ones(1, 1, H, W)
    h, w = H // 2, W // 2
    region = {"left": (slice(None), slice(0, w)), "right": (slice(None), slice(W - w, None)),
              "top": (slice(0, h), slice(None)), "bottom": (slice(H - h, None), slice(None))}[side]
    m[0, 0][region] = 0
    return m


def random_mask(n: int, size, fraction: float = 0.8, seed: int = 0) -> torch.Tensor:
    """(n, 1, H, W): in each mask exactly round(fraction * H * W) pixels missing."""
    _check_fraction(fraction)
    H, W = _hw(size)
    rng = np.random.default_rng(seed)
    k = int(round(fraction * H * W))
    out = np.ones((n, H * W), np.float32)
    for i in range(n):
        out[i, rng.permutation(H * W)[:k]] = 0
    return torch.from_numpy(out.reshape(n, 1, H, W))


def blob_mask(n: int, size, fraction: float = 0.3, seed: int = 0, smoothness: float = 4.0) -> torch.Tensor:
    """(n, 1, H, W): thresholded smoothed noise, exactly round(fraction * H * W) missing.

    ``smoothness`` is the Gaussian filter's sigma in pixels: larger gives fewer, rounder blobs.
    """
    from scipy.ndimage import gaussian_filter

    _check_fraction(fraction)
    if fraction < 0.25:
        raise InvganError(f"blob masks cover at least a quarter of the image; got fraction {fraction}")
    H, W = _hw(size)
    rng = np.random.default_rng(seed)
    k = int(round(fraction * H * W))
    out = np.ones((n, H * W), np.float32)
    for i in range(n):
        field = gaussian_filter(rng.standard_normal((H, W)), smoothness, mode="wrap").ravel()
        out[i, np.argsort(-field, kind="stable")[:k]] = 0  # the k highest values are the blobs
    return torch.from_numpy(out.reshape(n, 1, H, W))


def read_mask(path, size) -> torch.Tensor:
    """(1, 1, H, W) from an image (white / > 127 = known) or a .npy array (nonzero = known)."""
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
    H, W = _hw(size)
    if known.shape != (H, W):
        raise InvganError(f"mask file {str(path)!r} is {'x'.join(map(str, known.shape))} (HxW), "
                          f"the images are {H}x{W}: resize the mask")
    return torch.from_numpy(known.astype(np.float32))[None, None]


def make_masks(kind: str, n: int, size, seed: int = 0, hole: int | None = None,
               fraction: float | None = None, side: str = "left", path=None) -> torch.Tensor:
    """Masks for n images: float (n, 1, H, W), 1 = known; ``size`` int, (H, W) or (C, H, W).
    See the module docstring."""
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
            raise InvganError("mask kind 'file' needs a mask file: pass its path")
        m = read_mask(path, size)
    else:
        raise InvganError(f"unknown mask {kind!r}: use one of {', '.join(MASK_KINDS)}")
    H, W = _hw(size)
    m = m.expand(n, 1, H, W).contiguous()
    check_masks(m, n, (H, W))
    return m


def check_masks(masks: torch.Tensor, n: int, size) -> None:
    """Raise a one-line error for masks of the wrong shape, with no known or no missing pixel."""
    H, W = _hw(size)
    if tuple(masks.shape) != (n, 1, H, W):
        raise InvganError(f"masks have shape {tuple(masks.shape)}, expected ({n}, 1, {H}, {W})")
    known = masks.flatten(1).sum(1)
    if (known == 0).any():
        raise InvganError(f"mask {int((known == 0).nonzero()[0])} has no known pixels: nothing to inpaint from")
    if (known == H * W).any():
        raise InvganError(f"mask {int((known == H * W).nonzero()[0])} has no missing pixels: nothing to inpaint")


def describe(kind: str, hole=None, fraction=None, side="left", path=None, size=64) -> str:
    """A short label of a mask setting, e.g. "center 32x32" (``size``: the image size)."""
    if kind == "center":
        h = min(_hw(size)) // 2 if hole is None else hole
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
