"""Semantic inpainting with a GAN (Yeh et al., CVPR 2017).

    z_hat = argmin_z  || W * (G(z) - y) ||_1  +  lambda * prior(D(G(z)))

- W, the importance weights: W_i = M_i * (fraction of missing pixels in the window x window
  neighbourhood of i), window 7 in the paper. Known pixels far from the hole get weight 0.
- prior "paper": log(1 - D(G(z))) = -softplus(logit); prior "generator": -log D(G(z)) =
  softplus(-logit), the generator's training loss that many implementations use instead.
- Paper settings (the defaults): lambda 0.003, Adam lr 0.01, 1500 iterations; z initialised
  from the training prior and kept in its support.

The loss is per image, and G and D run in eval mode (batch-norm with running statistics), so an
image's result does not depend on the other images in the batch (the original code used a batch
mean with training-mode batch-norm). Restarts are batched; the restart with the lowest total loss
is kept. The generated image is then blended into the known pixels (``invgan.blend``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invgan import InvganError
from invgan.latent import LatentResult, optimize_latent
from invgan.resume import SolveState, fingerprint
from invgan.models import ModelConfig
from invgan.physics import Inpainting

PRIORS = ("paper", "generator")
PAPER_SETTINGS = {"lam": 0.003, "window": 7, "prior": "paper", "iters": 1500, "lr": 0.01, "restarts": 1}


def importance_weights(mask: torch.Tensor, window: int = 7) -> torch.Tensor:
    """W = M * (fraction of missing pixels in a window x window box around each pixel).

    mask: (B, 1, H, W), 1 = known. Pixels outside the image count as known. Returns (B, 1, H, W).
    """
    if window < 1 or window % 2 == 0:
        raise InvganError(f"the importance-weight window must be an odd number >= 1, got {window}")
    missing = 1.0 - mask
    box = torch.ones(1, 1, window, window, dtype=mask.dtype, device=mask.device) / window ** 2
    return mask * F.conv2d(missing, box, padding=window // 2)


def context_loss(x_hat: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per image ||W * (x_hat - y)||_1 summed over pixels and channels: (B,)."""
    return (weights * (x_hat - y)).abs().flatten(1).sum(1)


def prior_loss(D: torch.nn.Module, x_hat: torch.Tensor, prior: str = "paper") -> torch.Tensor:
    """Per image: log(1 - D(x)) ("paper") or -log D(x) ("generator"), from D's logits: (B,)."""
    logit = D(x_hat).reshape(x_hat.shape[0])
    if prior == "paper":
        return -F.softplus(logit)
    if prior == "generator":
        return F.softplus(-logit)
    raise InvganError(f"unknown prior {prior!r}: use one of {', '.join(PRIORS)}")


def yeh_objective(y, weights, D, x_hat, lam: float = 0.003, prior: str = "paper") -> torch.Tensor:
    """Total per-latent loss (R*B,); y and weights are (B, ...) and repeated over the restarts."""
    reps = x_hat.shape[0] // y.shape[0]
    loss = context_loss(x_hat, y.repeat(reps, 1, 1, 1), weights.repeat(reps, 1, 1, 1))
    if lam:
        loss = loss + lam * prior_loss(D, x_hat, prior)
    return loss


def yeh_inpaint(y: torch.Tensor, physics: Inpainting, G: torch.nn.Module, D: torch.nn.Module | None,
                model_cfg: ModelConfig, lam: float = 0.003, prior: str = "paper", window: int = 7,
                restarts: int = 1, iters: int = 1500, lr: float = 0.01, z_clip: float | None = None,
                seed: int = 0, progress: bool = False, state: SolveState | None = None) -> LatentResult:
    """Fit G(z) to the known pixels of y (B, C, H, W) in [-1, 1] under ``physics``' mask.

    Returns a ``LatentResult``: ``x`` = G(z_hat) (B, C, H, W), not yet blended. D may be None
    only when ``lam`` is 0. ``state``: save the run there as it goes and resume from it
    (see ``invgan.resume``).
    """
    if prior not in PRIORS:
        raise InvganError(f"unknown prior {prior!r}: use one of {', '.join(PRIORS)}")
    if lam and D is None:
        raise InvganError("the prior term needs a discriminator: pass --discriminator or use lambda 0")
    if lam < 0:
        raise InvganError(f"lambda must be >= 0, got {lam}")
    mask = physics.mask[:, :1].expand(y.shape[0], 1, *y.shape[2:])
    weights = importance_weights(mask, window)
    if D is not None:
        D.eval()
        if next(D.parameters()).device.type == "cpu":
            D.to(memory_format=torch.channels_last)
    key = None
    if state is not None:
        key = {"objective": "yeh", "lam": lam, "prior": prior, "y": fingerprint(y, weights),
               "discriminator": fingerprint(*D.state_dict().values()) if D is not None and lam else None}
    return optimize_latent(G, lambda x_hat, z: yeh_objective(y, weights, D, x_hat, lam, prior), y.shape[0],
                           model_cfg, restarts=restarts, iters=iters, lr=lr, z_clip=z_clip, seed=seed,
                           progress=progress, desc="yeh", state=state, state_key=key)
