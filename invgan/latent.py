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
                    state_key: dict | None = None, prune=(), lr_decay: str = "constant",
                    optimizer: str = "adam", history: int = 10) -> LatentResult:
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
    ``optimizer``: "adam" (the papers') or "lbfgs": limited-memory BFGS for every latent on its own
    (``history`` pairs, an Armijo backtracking step per latent; see ``lbfgs_latents``). For
    "lbfgs", ``iters`` counts generator passes (forward + backward) as it does for Adam, ``lr`` is
    the length of each latent's first step, ``prune``'s (p, keep) drops restarts after p passes
    (each kept latent goes on with its curvature pairs and step), and ``lr_decay`` is not used.
    """
    if lr_decay not in ("constant", "cosine"):
        raise InvganError(f"lr_decay must be 'constant' or 'cosine', got {lr_decay!r}")
    if optimizer not in ("adam", "lbfgs"):
        raise InvganError(f"optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
    if optimizer == "lbfgs" and lr_decay != "constant":
        raise InvganError("the lbfgs optimizer takes no lr decay")
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
    if optimizer == "lbfgs":
        key.update(optimizer="lbfgs", history=history)
    saved = None
    if state is not None:
        key["generator"] = fingerprint(*net.state_dict().values())
        saved = state.load(key)
    if optimizer == "lbfgs":
        z, alive, dropped = _lbfgs_rows(lambda v: objective(net(v), v), z0.to(device), iters, lr, history,
                                        bound=gen.bound if z_clip is None else z_clip, progress=progress, desc=desc,
                                        state=state, state_key=key, saved=saved, prune=sorted(schedule.items()),
                                        num_images=num_images)
        return _keep_best(net, objective, z, alive, dropped, num_images,
                          lbfgs_prune_work(restarts, iters, schedule.items()))
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
            rows, alive = _drop_restarts(obj.detach().view(alive.shape), alive, dropped, keep)
            obj[rows].sum().backward()
            opt.step()
            adam = opt.state_dict()["state"][0]
            adam = {k: (v[rows] if torch.is_tensor(v) and v.dim() == 2 else v) for k, v in adam.items()}
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
    return _keep_best(net, objective, z, alive, dropped, num_images, work)


def _drop_restarts(cur: torch.Tensor, alive: torch.Tensor, dropped: torch.Tensor, keep: int):
    """Successive halving's cut: per image, the ``keep`` latents with the lowest objective ``cur``
    (R', B) go on. The others' objectives are written into ``dropped`` (R, B) at their original
    restarts (in place). Returns the kept rows (r*B + b, flat) and their ``alive`` (keep, B)."""
    order = cur.argsort(dim=0, stable=True)
    dropped.scatter_(0, alive.gather(0, order[keep:]), cur.gather(0, order[keep:]))
    rows = (order[:keep] * cur.shape[1] + torch.arange(cur.shape[1], device=cur.device)).flatten()
    return rows, alive.gather(0, order[:keep])


def _keep_best(net, objective, z, alive, dropped, num_images: int, work: int) -> LatentResult:
    """The result: per image, the latent (of those still running, ``alive``) with the lowest objective."""
    with torch.no_grad():
        x = net(z).contiguous()
        final = objective(x, z).reshape(alive.shape)
        best = final.argmin(0)
        pick = best * num_images + torch.arange(num_images, device=best.device)
        everything = dropped.scatter(0, alive, final)
        restart = alive.gather(0, best[None])[0]
        return LatentResult(x[pick].detach(), z[pick].detach(), final.min(0).values, everything, restart,
                            work)


def _two_loop(g, S, Y, gamma):
    """L-BFGS direction -H g for every row at once; pairs with s^T y <= 0 are all-zero and drop out."""
    q, coef = g.clone(), []
    for s, y in zip(reversed(S), reversed(Y)):
        rho = torch.where((s * y).sum(1) > 0, 1.0 / (s * y).sum(1).clamp_min(1e-30), torch.zeros_like(gamma))
        a = rho * (s * q).sum(1)
        q -= a[:, None] * y
        coef.append((a, rho, s, y))
    r = gamma[:, None] * q
    for a, rho, s, y in reversed(coef):
        r += (a - rho * (y * r).sum(1))[:, None] * s
    return -r


def lbfgs_latents(f, z0: torch.Tensor, evals: int, first_step: float = 0.1, history: int = 10,
                  bound: float | None = None, progress: bool = False, desc: str = "latent",
                  state: SolveState | None = None, state_key: dict | None = None, saved: dict | None = None):
    """Minimise a per-row objective ``f(z) -> (N,)`` with L-BFGS run for every row on its own.

    Every row keeps its own ``history`` curvature pairs, its own initial Hessian scale
    (s^T y / y^T y of its newest pair) and its own step: a trial step is accepted when it meets
    the Armijo condition (sufficient decrease, c = 1e-4), else that row's step is halved for the
    next pass; after 8 failures in a row its history is dropped (a scaled gradient step follows).
    Every pass evaluates all rows once (forward + backward), so ``evals`` passes cost what
    ``evals`` Adam steps cost. The first step of each row has length ``first_step``. ``bound``:
    trial points are clamped to [-bound, bound]. Rows never interact, so a row's result does
    not depend on the other rows. Returns z (N, d).
    """
    return _lbfgs_rows(f, z0, evals, first_step, history, bound, progress, desc, state, state_key, saved)[0]


def lbfgs_prune_work(restarts: int, passes: int, schedule) -> int:
    """Generator passes per image of L-BFGS with restart pruning: (p, keep) drops to ``keep``
    restarts after p passes."""
    work, alive, last = 0, restarts, 0
    for p, keep in sorted(schedule):
        if p >= passes or keep >= alive:
            continue
        work += alive * (p - last)
        alive, last = keep, p
    return work + alive * (passes - last)


def _lbfgs_rows(f, z0, evals, first_step=0.1, history=10, bound=None, progress=False, desc="latent", state=None,
                state_key=None, saved=None, prune=(), num_images=None):
    """``lbfgs_latents`` with restart pruning: ``prune`` pairs (passes, keep): before that pass the
    ``keep`` rows per image with the lowest objective go on with their curvature pairs and steps,
    the others leave (rows r*B + b belong to image b of ``num_images`` B; ``f`` must accept any
    number of restarts). Returns z (R'*B, d), alive (R', B): the original restart each row holds,
    and dropped (R, B): each dropped restart's objective when it was dropped (inf for the others)."""
    from tqdm import tqdm

    def value_and_grad(v):
        v = v.detach().requires_grad_(True)
        fv = f(v)
        g, = torch.autograd.grad(fv.sum(), v)
        return fv.detach(), g

    schedule = {int(k): int(n) for k, n in prune}
    B = num_images or z0.shape[0]
    z = z0.detach().clone()
    n = z.shape[0]
    alive = torch.arange(n // B, device=z.device)[:, None].expand(n // B, B)
    dropped = torch.full(alive.shape, float("inf"), dtype=z.dtype, device=z.device)
    start = 0
    if saved:
        z, fz, g, gamma, t, fails = (saved[k] for k in ("z", "f", "g", "gamma", "t", "fails"))
        S, Y, start = list(saved["S"].unbind(0)), list(saved["Y"].unbind(0)), saved["step"]
        alive, dropped = saved.get("alive", alive), saved.get("dropped", dropped)
    if start == 0 and evals > 0:
        fz, g = value_and_grad(z)
        gamma = first_step / g.norm(dim=1).clamp_min(1e-30)
        t = torch.ones(n, dtype=z.dtype, device=z.device)
        fails = torch.zeros(n, dtype=torch.long, device=z.device)
        S, Y, start = [], [], 1
    for step in tqdm(range(start, evals), desc=desc, unit="it", disable=not progress, leave=False,
                     initial=start, total=evals):
        keep = schedule.get(step)
        if keep is not None and keep < alive.shape[0]:  # successive halving: the best rows per image go on
            rows, alive = _drop_restarts(fz.view(alive.shape), alive, dropped, keep)
            z, fz, g, gamma, t, fails = (v[rows] for v in (z, fz, g, gamma, t, fails))
            S, Y = [v[rows] for v in S], [v[rows] for v in Y]
        d = _two_loop(g, S, Y, gamma)
        slope = (g * d).sum(1)
        uphill = ~(slope < 0)  # (also NaN) a scaled gradient step instead
        d = torch.where(uphill[:, None], -g * (first_step / g.norm(dim=1).clamp_min(1e-30))[:, None], d)
        slope = (g * d).sum(1)
        trial = z + t[:, None] * d
        if bound is not None:
            trial.clamp_(-bound, bound)
        ft, gt = value_and_grad(trial)
        ok = torch.isfinite(ft) & (ft <= fz + 1e-4 * t * slope)
        s, y = trial - z, gt - g
        pair = ok & ((s * y).sum(1) > 1e-12 * s.norm(dim=1) * y.norm(dim=1))
        S.append(torch.where(pair[:, None], s, torch.zeros_like(s)))
        Y.append(torch.where(pair[:, None], y, torch.zeros_like(y)))
        del S[:-history], Y[:-history]
        gamma = torch.where(pair, (s * y).sum(1) / y.pow(2).sum(1).clamp_min(1e-30), gamma)
        z = torch.where(ok[:, None], trial, z)
        fz, g = torch.where(ok, ft, fz), torch.where(ok[:, None], gt, g)
        fails = torch.where(ok, torch.zeros_like(fails), fails + 1)
        t = torch.where(ok, torch.ones_like(t), t / 2)
        reset = fails >= 8
        if bool(reset.any()):  # forget this row's curvature: start again from a gradient step
            S = [torch.where(reset[:, None], torch.zeros_like(v), v) for v in S]
            Y = [torch.where(reset[:, None], torch.zeros_like(v), v) for v in Y]
            gamma = torch.where(reset, first_step / g.norm(dim=1).clamp_min(1e-30), gamma)
            t = torch.where(reset, torch.ones_like(t), t)
            fails = torch.where(reset, torch.zeros_like(fails), fails)
        if state is not None and state.due() and step + 1 < evals:
            state.save(state_key, {"step": step + 1, "z": z, "f": fz, "g": g, "gamma": gamma, "t": t,
                                   "fails": fails, "S": torch.stack(S) if S else torch.zeros(0, *z.shape),
                                   "Y": torch.stack(Y) if Y else torch.zeros(0, *z.shape), "alive": alive,
                                   "dropped": dropped})
    return z, alive, dropped
