"""Semantic inpainting with a GAN (Yeh et al., CVPR 2017).

    z_hat = argmin_z  || W * (G(z) - y) ||_1  +  lambda * perceptual(D(G(z)))

- W, the importance weights: W_i = M_i * (fraction of missing pixels in the window x window
  neighbourhood of i), window 7 in the paper. Known pixels far from the hole get weight 0.
- the perceptual loss (the paper's name for the discriminator term), ``perceptual`` "paper":
  log(1 - D(G(z))) = -softplus(logit); "generator": -log D(G(z)) = softplus(-logit), the
  generator's training loss that many implementations use instead.
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

from invgan.errors import InvganError
from invgan.latent import LatentResult, optimize_latent
from invgan.resume import SolveState, fingerprint
from invgan.generators import frozen
from invgan.physics import Inpainting

PERCEPTUAL_LOSSES = ("paper", "generator")
PAPER_SETTINGS = {"lam": 0.003, "window": 7, "perceptual": "paper", "iters": 1500, "lr": 0.01, "restarts": 1}

#: Latent-search budgets. "paper" (the default): Adam, lr 0.01, 1500 steps. "lbfgs" (opt-in):
#: 300 passes of per-latent L-BFGS (``invgan.latent.lbfgs_latents``, 60 curvature pairs, first
#: step 0.1): 0.2 of the paper's generator and discriminator passes. On the 64 lowest CelebA val
#: ids, centre mask (scripts/inpaint_budgets.py, 2026-12-05): the same mean hole MSE after Poisson
#: blending (0.04129 both; paired difference -0.00000 +- 0.00395), a lower final loss on 54 of 64
#: images, 96 s against 471 s. The paired interval (+-9.6% of the error) is wide: the hole is only
#: weakly determined by the known pixels, so the two optimisers end in different minima image by
#: image; 200 passes: +0.00041 +- 0.00374. Random 80% and blob masks: within 1% as well; the half
#: mask: +15% (+0.035 +- 0.036, not significant), so it stays opt-in. README: "Inpainting budgets".
BUDGETS = {
    "paper": {},
    "lbfgs": {"optimizer": "lbfgs", "iters": 300, "lr": 0.1, "history": 60},
}


def budget_settings(budget: str) -> dict:
    """The paper's settings with ``budget``'s changes (``BUDGETS``): what ``YehInpainting.preset``
    and ``InpaintConfig`` run."""
    if budget not in BUDGETS:
        raise InvganError(f"unknown budget {budget!r} for inpainting: use {' or '.join(BUDGETS)}")
    return dict(PAPER_SETTINGS, **BUDGETS[budget])


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


def perceptual_loss(D: torch.nn.Module, x_hat: torch.Tensor, perceptual: str = "paper") -> torch.Tensor:
    """Per image: log(1 - D(x)) ("paper") or -log D(x) ("generator"), from D's logits: (B,)."""
    logit = D(x_hat).reshape(x_hat.shape[0])
    if perceptual == "paper":
        return -F.softplus(logit)
    if perceptual == "generator":
        return F.softplus(-logit)
    raise InvganError(f"unknown perceptual loss {perceptual!r}: use one of {', '.join(PERCEPTUAL_LOSSES)}")


def yeh_objective(y, weights, D, x_hat, lam: float = 0.003, perceptual: str = "paper") -> torch.Tensor:
    """Total per-latent loss (R*B,); y and weights are (B, ...) and repeated over the restarts."""
    reps = x_hat.shape[0] // y.shape[0]
    loss = context_loss(x_hat, y.repeat(reps, 1, 1, 1), weights.repeat(reps, 1, 1, 1))
    if lam:
        loss = loss + lam * perceptual_loss(D, x_hat, perceptual)
    return loss


def yeh_inpaint(y: torch.Tensor, physics: Inpainting, G, D: torch.nn.Module | None = None,
                lam: float = 0.003, perceptual: str = "paper", window: int = 7,
                restarts: int = 1, iters: int = 1500, lr: float = 0.01, z_clip: float | None = None,
                seed: int = 0, progress: bool = False, state: SolveState | None = None,
                optimizer: str = "adam", history: int = 10) -> LatentResult:
    """Fit G(z) to the known pixels of y (B, C, H, W) in [-1, 1] under ``physics``' mask.

    Returns a ``LatentResult``: ``x`` = G(z_hat) (B, C, H, W), not yet blended. D may be None
    only when ``lam`` is 0. G (any generator, see ``invgan.generators.as_generator``) and D are
    used through frozen eval-mode copies: the caller's modules are not changed. ``state``: save the run there as it goes and resume from it
    (see ``invgan.resume``). ``optimizer``, ``history``: "adam" (the paper's) or per-latent
    "lbfgs" with ``history`` curvature pairs, ``iters`` then counting generator passes and ``lr``
    the first step's length (``invgan.latent.optimize_latent``).
    """
    if perceptual not in PERCEPTUAL_LOSSES:
        raise InvganError(f"unknown perceptual loss {perceptual!r}: use one of {', '.join(PERCEPTUAL_LOSSES)}")
    if lam and D is None:
        raise InvganError("the perceptual loss needs a discriminator D: pass one, or set lam to 0")
    if lam < 0:
        raise InvganError(f"lambda must be >= 0, got {lam}")
    if not torch.isfinite(y).all():
        raise InvganError("the measurements y hold NaN or infinite values")
    mask = physics.mask[:, :1].expand(y.shape[0], 1, *y.shape[2:])
    weights = importance_weights(mask, window)
    D = frozen(D) if lam else None
    key = None
    if state is not None:
        key = {"objective": "yeh", "lam": lam, "prior": perceptual, "y": fingerprint(y, weights),
               "discriminator": fingerprint(*D.state_dict().values()) if D is not None and lam else None}
    return optimize_latent(G, lambda x_hat, z: yeh_objective(y, weights, D, x_hat, lam, perceptual), y.shape[0],
                           restarts=restarts, iters=iters, lr=lr, z_clip=z_clip, seed=seed,
                           progress=progress, desc="yeh", state=state, state_key=key, optimizer=optimizer,
                           history=history)
