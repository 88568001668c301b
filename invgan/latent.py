"""Gradient descent over a generator's latent z: the machinery shared by CSGM and inpainting.

All images and all restarts are optimised together as one batch of R*B latents, with a
per-latent objective, a frozen eval-mode generator (batch-norm uses running statistics) and
Adam, whose update is elementwise: so each image's result is independent of the other images
in the batch. For each image the restart with the lowest final objective is kept.
Given a ``SolveState``, the run saves z and Adam's moments as it goes and resumes from them.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable

import torch

from invgan.errors import InvganError
from invgan.generators import as_generator, frozen
from invgan.resume import SolveState, fingerprint


@dataclass
class LatentResult:
    """``x``: (B, C, H, W) best reconstruction per image; ``z``: (B, nz); ``objective``: (B,);
    ``all_objectives``: (R, B) final objective of every restart (for a restart dropped by
    pruning, its objective when it was dropped); ``restart``: (B,) the restart kept per image;
    ``latent_steps``: generator forward+backward passes per image in all restarts."""

    x: torch.Tensor
    z: torch.Tensor
    objective: torch.Tensor
    all_objectives: torch.Tensor
    restart: torch.Tensor | None = None
    latent_steps: int | None = None


def project_to_prior(z: torch.Tensor, bound: float | None, z_clip: float | None) -> None:
    """In-place: keep z in the prior's support (``bound``: 1 for U[-1, 1], None for N(0, I)) or in
    [-z_clip, z_clip] when ``z_clip`` is given."""
    bound = z_clip if z_clip is not None else bound
    if bound is not None:
        z.clamp_(-bound, bound)


def optimize_latent(G, objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    num_images: int, restarts: int = 2, iters: int = 500,
                    lr: float = 0.1, z_clip: float | None = None, seed: int = 0,
                    progress: bool = False, desc: str = "latent", state: SolveState | None = None,
                    state_key: dict | None = None, prune=(), lr_decay: str = "constant") -> LatentResult:
    """Minimise ``objective(x_hat, z) -> (R*B,)`` over z for B images and R restarts.

    ``G``: a generator (see ``invgan.generators.as_generator``); a frozen eval-mode copy of it is
    used, so the caller's module is not changed and no gradient reaches its parameters.

    ``objective`` receives x_hat = G(z) of shape (R*B, C, H, W) and z (R*B, nz); latent
    ``r*B + b`` belongs to image b. z is initialised from the training prior, seeded.
    ``state``: save the run there and resume from it; ``state_key`` must then identify the
    objective (e.g. a fingerprint of the measurements), the other settings are added here.
    ``prune``: pairs (step, keep): after ``step`` steps, only the ``keep`` restarts per image with
    the lowest objective go on (successive halving); the others leave the batch. Latents are
    optimised independently, so survivors follow exactly the path they follow without pruning.
    ``objective`` must then accept any number R' of restarts (rows r*B + b, as above).
    ``lr_decay``: "constant" (the papers') or "cosine" (lr * (1 + cos(pi * step / iters)) / 2).
    """
    if lr_decay not in ("constant", "cosine"):
        raise InvganError(f"lr_decay must be 'constant' or 'cosine', got {lr_decay!r}")
    from tqdm import tqdm

    if restarts < 1 or iters < 0 or num_images < 1:
        raise InvganError(f"restarts and num_images must be >= 1 and iters >= 0, got {restarts}, {num_images}, {iters}")
    if not (math.isfinite(lr) and lr > 0):
        raise InvganError(f"lr must be a finite number > 0, got {lr}")
    gen = as_generator(G)
    device = gen.device
    net = frozen(gen.module)
    z0 = gen.sample(restarts * num_images, torch.Generator().manual_seed(seed))
    schedule = {int(k): int(n) for k, n in sorted(prune)}
    key = {"solver": "latent", "restarts": restarts, "num_images": num_images, "iters": iters, "lr": lr,
           "z_clip": z_clip, "seed": seed, **(state_key or {})}
    if schedule:
        key["prune"] = sorted(schedule.items())
    if lr_decay != "constant":
        key["lr_decay"] = lr_decay
    saved = None
    if state is not None:
        key["generator"] = fingerprint(*net.state_dict().values())
        saved = state.load(key)
    z = (saved["z"] if saved else z0).to(device).requires_grad_(True)
    # alive[r', b]: the original restart that row r'*B + b holds; dropped[r, b]: objective when dropped
    alive = torch.arange(restarts, device=device)[:, None].expand(restarts, num_images)
    dropped = torch.full((restarts, num_images), float("inf"), device=device)
    opt = torch.optim.Adam([z], lr=lr)
    start, work = 0, 0
    if saved:
        opt.load_state_dict({"state": {0: saved["adam"]}, "param_groups": opt.state_dict()["param_groups"]})
        start, work = saved["step"], saved.get("work", saved["step"] * restarts)
        if "alive" in saved:
            alive, dropped = saved["alive"].to(device), saved["dropped"].to(device)
    for step in tqdm(range(start, iters), desc=desc, unit="it", disable=not progress, leave=False,
                     initial=start, total=iters):
        opt.zero_grad(set_to_none=True)
        if lr_decay == "cosine":
            opt.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / iters))
        obj = objective(net(z), z)
        work += alive.shape[0]
        keep = schedule.get(step)
        if keep is not None and keep < alive.shape[0]:  # successive halving: keep the best per image
            cur = obj.detach().view(alive.shape)
            order = cur.argsort(dim=0, stable=True)
            dropped.scatter_(0, alive.gather(0, order[keep:]), cur.gather(0, order[keep:]))
            rows = (order[:keep] * num_images + torch.arange(num_images, device=device)).flatten()
            obj[rows].sum().backward()
            opt.step()
            adam = opt.state_dict()["state"][0]
            adam = {k: (v[rows] if torch.is_tensor(v) and v.dim() == 2 else v) for k, v in adam.items()}
            alive = alive.gather(0, order[:keep])
            z = z.detach()[rows].clone().requires_grad_(True)
            lr_now = opt.param_groups[0]["lr"]
            opt = torch.optim.Adam([z], lr=lr_now)
            opt.load_state_dict({"state": {0: adam}, "param_groups": opt.state_dict()["param_groups"]})
        else:
            obj.sum().backward()
            opt.step()
        with torch.no_grad():
            project_to_prior(z, gen.bound, z_clip)
        if state is not None and state.due() and step + 1 < iters:
            state.save(key, {"step": step + 1, "z": z, "adam": opt.state_dict()["state"][0], "work": work,
                             "alive": alive, "dropped": dropped})
    with torch.no_grad():
        x = net(z).contiguous()
        final = objective(x, z).reshape(alive.shape)
        best = final.argmin(0)
        pick = best * num_images + torch.arange(num_images, device=best.device)
        everything = dropped.scatter(0, alive, final)
        restart = alive.gather(0, best[None])[0]
        return LatentResult(x[pick].detach(), z[pick].detach(), final.min(0).values, everything, restart,
                            work)
