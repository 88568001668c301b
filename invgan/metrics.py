"""Reconstruction metrics. Images are (B, C, H, W) tensors in [-1, 1].

- per-pixel MSE: mean over all C*H*W values of (x_hat - x)^2 in [-1, 1] units; Bora et al.'s
  "reconstruction error per pixel".
- PSNR: 10 log10(4 / mse) (peak-to-peak 2 in [-1, 1] units; equal to PSNR of [0, 1] images).
- SSIM: skimage.metrics.structural_similarity with data_range 2, over colour channels; on a
  region (e.g. an inpainting hole) the mean of its SSIM map over the region's pixels.
- ``summarize``: mean, std and the 95% interval half-width 1.96 * std / sqrt(N) (std with N-1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity


def mse_per_image(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """(B,) mean squared error; with ``mask`` (broadcastable to x, 1 = counted) only over it."""
    d = (x_hat.detach().float().cpu() - x.detach().float().cpu()).pow(2)
    if mask is None:
        return d.flatten(1).mean(1).numpy()
    mk = torch.as_tensor(mask, dtype=torch.float32).cpu().expand_as(d)
    return ((d * mk).flatten(1).sum(1) / mk.flatten(1).sum(1).clamp_min(1)).numpy()


def psnr_from_mse(mse) -> np.ndarray:
    """PSNR in dB, 10 log10(4 / mse), of [-1, 1] images (MSE floored at 1e-12)."""
    mse = np.maximum(np.asarray(mse, dtype=np.float64), 1e-12)
    return 10 * np.log10(4.0 / mse)


def ssim_per_image(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """(B,) SSIM; with ``mask`` (B or 1, 1, H, W), 1 = counted, the SSIM map averaged over it."""
    a = x_hat.detach().float().cpu().clamp(-1, 1).permute(0, 2, 3, 1).numpy()
    b = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    if mask is None:
        return np.array([structural_similarity(p, q, data_range=2.0, channel_axis=-1) for p, q in zip(a, b)])
    mk = torch.as_tensor(mask).detach().float().cpu().expand(len(a), 1, *a.shape[1:3])[:, 0].numpy() > 0.5
    out = []
    for p, q, k in zip(a, b, mk):
        _, smap = structural_similarity(p, q, data_range=2.0, channel_axis=-1, full=True)
        out.append(float(smap[k].mean()) if k.any() else float("nan"))
    return np.array(out)


def summarize(values) -> dict:
    """{"mean", "std" (N-1), "ci95" (1.96 std / sqrt(N)), "n"} of a list of numbers."""
    v = np.asarray(values, dtype=np.float64)
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "ci95": 1.96 * std / math.sqrt(len(v)), "n": int(len(v))}
