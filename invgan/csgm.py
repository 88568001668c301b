"""Compressed sensing with a generative model (CSGM; Bora et al., ICML 2017).

    z_hat = argmin_z  mean_m (y - A G(z))^2  +  lambda ||z||^2,      x_hat = G(z_hat)

Paper settings (the defaults): Adam lr 0.1, 500 iterations, z initialised from the training
prior per restart; "DCGAN": lambda = 0, 2 restarts; "DCGAN+Reg": lambda = 0.001, 10 restarts.
The restart with the lowest total objective is kept per image.
"""

from __future__ import annotations

import torch

from invgan.latent import LatentResult, optimize_latent
from invgan.models import ModelConfig
from invgan.physics import Physics
from invgan.resume import SolveState, fingerprint

PAPER_SETTINGS = {
    "dcgan": {"z_prior": 0.0, "restarts": 2, "iters": 500, "lr": 0.1},
    "dcgan-reg": {"z_prior": 0.001, "restarts": 10, "iters": 500, "lr": 0.1},
}


def csgm_objective(y: torch.Tensor, physics: Physics, x_hat: torch.Tensor, z: torch.Tensor,
                   z_prior: float = 0.0) -> torch.Tensor:
    """Per-latent CSGM objective (R*B,): measurement loss + z_prior * ||z||^2.

    y: (B, ...) measurements; x_hat, z: R*B rows (latent r*B + b belongs to image b).
    """
    reps = x_hat.shape[0] // y.shape[0]
    y_rep = y.repeat(reps, *([1] * (y.dim() - 1)))
    return physics.measurement_loss(y_rep, x_hat) + z_prior * z.pow(2).sum(1)


def csgm_reconstruct(y: torch.Tensor, physics: Physics, G: torch.nn.Module, model_cfg: ModelConfig,
                     z_prior: float = 0.0, restarts: int = 2, iters: int = 500, lr: float = 0.1,
                     z_clip: float | None = None, seed: int = 0, progress: bool = False,
                     state: SolveState | None = None) -> LatentResult:
    """Recover images from measurements y (B, ...) with a frozen generator G.

    Returns a ``LatentResult`` whose ``x`` is (B, C, H, W) in [-1, 1]. ``state``: save the run
    there as it goes and resume from it (see ``invgan.resume``).
    """
    key = {"objective": "csgm", "physics": type(physics).__name__, "m": physics.m, "z_prior": z_prior,
           "y": fingerprint(y)} if state is not None else None
    return optimize_latent(
        G, lambda x_hat, z: csgm_objective(y, physics, x_hat, z, z_prior), y.shape[0], model_cfg,
        restarts=restarts, iters=iters, lr=lr, z_clip=z_clip, seed=seed, progress=progress, desc="csgm",
        state=state, state_key=key)
