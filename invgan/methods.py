"""Reconstruction methods: one contract, one registry.

Every method is an object called as ``method(y, physics) -> Reconstruction``: ``y`` (B, ...) are
measurements of B images under ``physics`` (any ``invgan.physics.Physics``, or a deepinv physics
through ``invgan.interop.from_deepinv``), and the result holds ``x`` (B, C, H, W), in [-1, 1]
for the built-in methods, and the method's ``details`` (settings and diagnostics, JSON-ready).
Optional keywords: ``state`` (a ``SolveState``: save the solve as it runs and resume it) and
``progress`` (a progress bar).

Built-in methods (the papers' settings by default):

==================  ============================================================  ============
name                method                                                        task
==================  ============================================================  ============
``dcgan``           ``CSGM.preset("dcgan", G)``: lambda 0, 2 restarts (Bora 2017)  cs
``dcgan-reg``       ``CSGM.preset("dcgan-reg", G)``: lambda 0.001, 10 restarts     cs
``lasso-dct``       ``Lasso("dct")``: alpha 0.1                                    cs
``lasso-wavelet``   ``Lasso("wavelet")``: alpha 1e-5                               cs
``sparse-gen``      ``SparseGen(G)``: G(z) + a Haar-sparse deviation (Dhar 2018)   cs
``sparse-gen-dct``  ``SparseGen(G, "dct")``: the deviation sparse in the DCT       cs
``least-squares``   ``LeastSquares()``: minimum-norm x with A x = y                cs, inpaint
``yeh``             ``YehInpainting(G, D)`` (Yeh 2017), then Poisson blending       inpaint
``biharmonic``      ``Biharmonic()`` (scikit-image)                                inpaint
``tv``              ``TVInpainting()`` (total variation, cvxpy)                    inpaint
==================  ============================================================  ============

``register_method(name, build, ...)`` adds a method: ``build(**context)`` returns it, where the
context holds ``generator`` (a ``LatentGenerator`` or None), ``discriminator``, ``seed`` and the
experiment's settings (``iters``, ``restarts``, ``lr``, ``z_reg``, ``z_clip``, ``budget``,
``lasso_tol``, ``lam``, ``perceptual``, ``window``, ... where set); a builder takes what it needs
and ignores the rest (``**_``). Registered methods are listed by ``invgan cs --help`` and accepted
by ``invgan cs --methods``, ``invgan inpaint --methods`` and sweep recipes (see ``invgan.plugins``
for making a registration visible to the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from invgan.errors import InvganError, check_int, check_number
from invgan.physics import Physics

TASKS = ("cs", "inpaint")


@dataclass
class Reconstruction:
    """What a method returns.

    Attributes
    ----------
    x : torch.Tensor
        (B, C, H, W) reconstructions.
    details : dict
        The method's settings and diagnostics (JSON-ready values).
    generated : torch.Tensor or None
        For generator-based methods, G(z_hat) (B, C, H, W) before it is blended into known pixels.
    raw : object
        The solver's own result (``LatentResult``, ``LassoResult``) for callers who want more.
    """

    x: torch.Tensor
    details: dict = field(default_factory=dict)
    generated: torch.Tensor | None = None
    raw: object = None


class Method:
    """Base class of reconstruction methods: subclasses define ``reconstruct``.

    ``__call__`` checks the measurements (finite values) and the result (finite values, image
    by image) around ``reconstruct``, so a method never returns NaN as an answer.
    """

    name = "method"
    cache = None  # an ``invgan.resume.SolutionCache``, set by ``use_cache``

    def use_cache(self, cache) -> None:
        """Share finished solves through ``cache`` (``invgan.resume.SolutionCache``; None: off).
        Methods that compute what another may have computed (CSGM's solve, Sparse-Gen's start)
        look it up there first; the others ignore it."""
        self.cache = cache

    def check(self, y: torch.Tensor, physics: Physics) -> None:
        """Raise ``InvganError`` if the method cannot run on this problem (called before any method
        runs; cheap). The default accepts everything."""

    def reconstruct(self, y: torch.Tensor, physics: Physics, state=None, progress: bool = False) -> Reconstruction:
        """The method itself: measurements y (B, ...) -> ``Reconstruction`` (subclasses define it)."""
        raise NotImplementedError

    def __call__(self, y: torch.Tensor, physics: Physics, state=None, progress: bool = False) -> Reconstruction:
        if not torch.is_tensor(y):
            raise InvganError(f"{self.name}: measurements y must be a torch tensor, got {type(y).__name__}")
        if y.dim() == 0 or y.shape[0] == 0:
            raise InvganError(f"{self.name}: y holds no images (shape {tuple(y.shape)}): pass a batch (B, ...) with B >= 1")
        if not y.is_floating_point():
            raise InvganError(f"{self.name}: y must hold floating-point values, got {y.dtype}: pass y.float()")
        if isinstance(physics, Physics):
            physics.check_measurements(y, self.name)
        if not torch.isfinite(y).all():
            bad = (~torch.isfinite(y)).flatten(1).any(1).nonzero().flatten().tolist()
            raise InvganError(f"{self.name}: the measurements of image(s) {bad[:5]} hold NaN or infinite values")
        r = self.reconstruct(y, physics, state=state, progress=progress)
        if not isinstance(r, Reconstruction):
            r = Reconstruction(torch.as_tensor(r))
        bad = (~torch.isfinite(r.x)).flatten(1).any(1).nonzero().flatten().tolist()
        if bad:
            raise InvganError(f"{self.name}: the reconstruction of image(s) {bad[:5]} became non-finite (NaN or inf); "
                              "lower the learning rate or check the operator")
        return r

    def __repr__(self):
        return f"{type(self).__name__}({getattr(self, 'settings', {})})"


# ----------------------------------------------------------------------------- CSGM
class CSGM(Method):
    """Compressed sensing with a generative model (Bora et al. 2017): argmin_z
    mean_m (y - A G(z))^2 + z_reg ||z||^2 by Adam from ``restarts`` random latents; x = G(z_hat).

    Parameters
    ----------
    generator : LatentGenerator or nn.Module
        Any generator (see ``invgan.generators.as_generator``); used through a frozen copy.
    z_reg : float, default 0
        lambda of lambda ||z||^2.
    restarts, iters, lr : int, int, float
        Adam restarts (batched), steps and learning rate (paper: 2, 500, 0.1).
    z_clip : float, optional
        Keep z in [-z_clip, z_clip].
    seed : int
        Seeds the restarts' initial latents.
    prune : sequence of (step, keep)
        Restart pruning: after ``step`` Adam steps (L-BFGS: passes) the ``keep`` restarts per image
        with the lowest objective go on (``invgan.csgm.BUDGETS``); empty: every restart runs to the end.
    lr_decay : {"constant", "cosine"}
    optimizer : {"adam", "lbfgs"}
        Adam (the paper) or per-latent L-BFGS (``iters`` generator passes; ``lr`` its first
        step's length); see ``invgan.latent.lbfgs_latents``.
    history : int, default 10
        L-BFGS curvature pairs per latent (the "lbfgs" budget: 60).
    settings_from_m : sequence of (min_m, dict), optional
        Settings that change with the operator's number of measurements ``m``: from ``min_m`` on,
        the dict's values (of "restarts", "iters", "lr", "optimizer", "history", "prune") replace the ones
        above (later pairs over earlier ones); operators without ``m`` get the ones above. A dict's
        "operators", a tuple of operator names (``Physics.name``), limits its pair to those operators
        (default: every operator). The "auto" budget sets it (``invgan.csgm.AUTO_FROM_M``,
        ``AUTO_SETTINGS``).
    """

    def __init__(self, generator, z_reg: float = 0.0, restarts: int = 2, iters: int = 500, lr: float = 0.1,
                 z_clip: float | None = None, seed: int = 0, prune=(), lr_decay: str = "constant",
                 name: str = "csgm", optimizer: str = "adam", history: int = 10, settings_from_m=()):
        from invgan.generators import as_generator

        if generator is None:
            raise InvganError(f"{name} needs a generator")
        self.generator = as_generator(generator)
        self.name = name
        check_number("z_reg", z_reg)
        if z_clip is not None:
            check_number("z_clip", z_clip, strict=True)
        self.z_clip, self.seed, self.lr_decay = z_clip, seed, lr_decay
        self.settings = self._checked({"z_reg": z_reg, "restarts": restarts, "iters": iters, "lr": lr,
                                       "optimizer": optimizer, "history": history, "prune": prune})
        if any(not isinstance(p, (tuple, list)) or len(p) != 2 or not isinstance(p[1], dict) for p in settings_from_m):
            raise InvganError(f"settings_from_m must hold (min_m, dict) pairs, got {settings_from_m!r}")
        self.settings_from_m = tuple(sorted(((check_int("min_m", a), dict(d)) for a, d in settings_from_m),
                                            key=lambda p: p[0]))
        for _, d in self.settings_from_m:
            unknown = set(d) - {"restarts", "iters", "lr", "optimizer", "history", "prune", "operators"}
            if unknown:
                raise InvganError(f"settings_from_m can set restarts, iters, lr, optimizer, history and prune (and "
                                  f"limit them to operators), not {', '.join(sorted(unknown))}")
            if "operators" in d:
                ops = d["operators"]
                if isinstance(ops, str) or not isinstance(ops, (tuple, list)) or not all(isinstance(o, str) for o in ops):
                    raise InvganError(f"settings_from_m's operators must be a list of operator names, got {ops!r}")
                d["operators"] = tuple(ops)
            checked = self._checked(dict(self.settings, **{k: v for k, v in d.items() if k != "operators"}))
            if "prune" in d:
                d["prune"] = checked["prune"]
        self._gen_fp = None  # the generator's fingerprint, for ``solution_key``

    def _checked(self, s: dict) -> dict:
        check_int("restarts", s["restarts"])
        check_int("iters", s["iters"])
        check_number("lr", s["lr"], strict=True)
        check_int("history", s["history"])
        if s["optimizer"] not in ("adam", "lbfgs"):
            raise InvganError(f"optimizer must be 'adam' or 'lbfgs', got {s['optimizer']!r}")
        if s["optimizer"] == "lbfgs" and self.lr_decay != "constant":
            raise InvganError("the lbfgs optimizer takes no lr decay")
        try:
            s["prune"] = tuple((int(a), int(k)) for a, k in s["prune"])
        except (TypeError, ValueError):
            raise InvganError(f"prune must hold (step, keep) pairs of whole numbers, got {s['prune']!r}") from None
        if any(a < 0 or k < 1 for a, k in s["prune"]):
            raise InvganError(f"prune needs steps >= 0 and keep >= 1, got {s['prune']!r}")
        return s

    @property
    def prune(self) -> tuple:
        """The base settings' restart pruning (an operator's own: ``settings_for``)."""
        return self.settings["prune"]

    @property
    def optimizer(self) -> str:
        """The base settings' optimizer (an operator's own: ``settings_for``)."""
        return self.settings["optimizer"]

    @property
    def history(self) -> int:
        """The base settings' L-BFGS pairs (an operator's own: ``settings_for``)."""
        return self.settings["history"]

    def settings_for(self, physics) -> dict:
        """The settings this operator gets: ``settings`` with ``settings_from_m`` applied for its ``m``
        (and its name, where a pair names its operators)."""
        s, m, name = dict(self.settings), getattr(physics, "m", None), getattr(physics, "name", None)
        for min_m, d in self.settings_from_m:
            if isinstance(m, int) and m >= min_m and ("operators" not in d or name in d["operators"]):
                s.update({k: v for k, v in d.items() if k != "operators"})
        return s

    @classmethod
    def preset(cls, preset: str, generator, budget: str = "auto", **overrides) -> "CSGM":
        """The paper's "dcgan" or "dcgan-reg" settings, with ``budget`` "auto" (the default: the paper's
        below m = 500 measurements; from there DCGAN by 6 x 30 passes of per-latent L-BFGS and the best
        2 x 70 more,
        DCGAN+Reg by 8 x 30 and the best 2 x 220 more, each only on the operators where it was measured,
        the paper's elsewhere; ``invgan.csgm.AUTO_FROM_M``, ``AUTO_SETTINGS``),
        "paper", "fast" or "lbfgs" (``invgan.csgm.BUDGETS``) and any setting overridden (None values
        are ignored)."""
        from invgan.csgm import BUDGETS, PAPER_SETTINGS, budget_settings

        if preset not in PAPER_SETTINGS:
            raise InvganError(f"unknown CSGM preset {preset!r}: use one of {', '.join(PAPER_SETTINGS)}")
        changes = budget_settings(budget, preset)  # (raises for an unknown budget)
        s = dict(PAPER_SETTINGS[preset], prune=BUDGETS[budget][preset], **changes)
        given = {k: v for k, v in overrides.items() if v is not None}
        s["settings_from_m"] = tuple((a, {k: v for k, v in d.items() if k not in given})  # what is given wins
                                     for a, d in s.get("settings_from_m", ()))
        s.update(given)
        m = cls(generator, name=preset, **s)
        m.budget = budget
        return m

    def check(self, y, physics):
        shape = tuple(getattr(physics, "img_shape", ()) or ())
        if shape and tuple(self.generator.image_shape) != shape:
            raise InvganError(f"{self.name}: the generator makes {'x'.join(map(str, self.generator.image_shape))} "
                              f"images, the operator measures {'x'.join(map(str, shape))} images")

    def solution_key(self, y, physics) -> dict | None:
        """What this solve's result depends on (settings, and fingerprints of the generator, the
        operator and y): the ``SolutionCache`` key. None where that cannot be told (a latent prior
        given as a function, an operator that cannot be probed)."""
        from invgan.resume import fingerprint, operator_fingerprint

        if callable(self.generator.prior):
            return None
        op = operator_fingerprint(physics, y.shape[0], y.device)
        if op is None:
            return None
        if self._gen_fp is None:  # (the generator is fixed for the method's life: hashed once)
            self._gen_fp = fingerprint(*self.generator.module.state_dict().values())
        s = self.settings_for(physics)
        return dict(s, solver="csgm", generator=self._gen_fp, prior=self.generator.prior, operator=op,
                    y=fingerprint(y), device=y.device.type, z_clip=self.z_clip, seed=self.seed,
                    prune=[list(p) for p in s["prune"]], lr_decay=self.lr_decay)

    def solve(self, y, physics, state=None, progress=False):
        """The solve itself (``LatentResult``) and the seconds a cached copy saved (0 if computed):
        the result is looked up in, and put into, ``self.cache``."""
        import contextlib
        import dataclasses
        import time

        from invgan.csgm import csgm_reconstruct
        from invgan.latent import LatentResult

        key = self.solution_key(y, physics) if self.cache is not None else None
        with self.cache.computing(key) if key is not None else contextlib.nullcontext():
            hit = self.cache.get(key, y.device) if key is not None else None
            if hit is not None:
                return LatentResult(**hit["result"]), float(hit["seconds"])
            t0 = time.time()
            s = self.settings_for(physics)
            r = csgm_reconstruct(y, physics, self.generator, z_reg=s["z_reg"], restarts=s["restarts"],
                                 iters=s["iters"], lr=s["lr"], z_clip=self.z_clip, seed=self.seed, progress=progress,
                                 state=state, prune=s["prune"], lr_decay=self.lr_decay, optimizer=s["optimizer"],
                                 history=s["history"])
            if key is not None:
                seconds = time.time() - t0 + (state.carried if state is not None else 0.0)
                self.cache.put(key, {"result": dataclasses.asdict(r), "seconds": seconds})
        return r, 0.0

    def reconstruct(self, y, physics, state=None, progress=False):
        r, reused = self.solve(y, physics, state=state, progress=progress)
        s = self.settings_for(physics)
        if s["optimizer"] != "lbfgs":
            del s["history"]  # (Adam keeps no curvature pairs)
        details = dict(s, budget=getattr(self, "budget", "custom"), prune=[list(p) for p in s["prune"]],
                       latent_steps_per_image=r.latent_steps)
        if reused:
            details["reused_seconds"] = reused
        if self.settings_from_m:
            details["settings_from_m"] = [[a, d] for a, d in self.settings_from_m]
        if self.lr_decay != "constant":
            details["lr_decay"] = self.lr_decay
        return Reconstruction(r.x, details, generated=r.x, raw=r)


# ----------------------------------------------------------------------------- Lasso
class Lasso(Method):
    """Lasso in an orthonormal basis: w = argmin 1/(2m) ||y - A Psi w||^2 + alpha ||w||_1,
    x = clip(Psi w, -1, 1), solved with a duality-gap certificate by the solver ``solver`` picks
    (``invgan.lasso``: the exact homotopy, ADMM or FISTA).

    Parameters
    ----------
    basis : {"dct", "wavelet"} or basis object
        Built for the operator's image size.
    alpha : float, optional
        Default: the paper's for the basis (0.1 DCT, 1e-5 wavelet).
    tol : float, default 1e-5
        Relative duality-gap tolerance (FISTA and ADMM; the homotopy ends at the exact solution).
    max_iter : int, default 10000
        FISTA or ADMM iterations.
    solver : {"auto", "fista", "homotopy", "admm"}, default "auto"
        "homotopy": ``invgan.lasso.lasso_homotopy``, the exact solution path (explicit-matrix
        operators only); "admm": ``lasso_admm`` (explicit-matrix operators only; converges near
        basis pursuit, where FISTA stalls, and fast for the DCT's alpha from m = 500); "fista": ``lasso_fista``; "auto": see
        ``invgan.lasso.choose_solver``.
    """

    def __init__(self, basis="dct", alpha: float | None = None, tol: float = 1e-5, max_iter: int = 10000,
                 clip: bool = True, name: str | None = None, solver: str = "auto"):
        from invgan.lasso import PAPER_ALPHA, check_solver_name, resolve_alpha

        if isinstance(basis, str) and basis not in PAPER_ALPHA:
            raise InvganError(f"unknown basis {basis!r}: use dct, wavelet or a basis object")
        check_solver_name(solver)
        self.solver = solver
        if alpha is not None:
            check_number("alpha", alpha, strict=True)
        check_number("tol", tol, strict=True)
        check_int("max_iter", max_iter)
        self.basis, self.tol, self.max_iter, self.clip = basis, tol, max_iter, clip
        self.alpha = resolve_alpha(basis, alpha)
        self.name = name or f"lasso-{getattr(basis, 'name', basis)}"

    def check(self, y, physics):
        from invgan.lasso import _check_inputs, check_solver

        _check_inputs(y[:1], physics, self.basis, self.alpha, self.tol)
        check_solver(self.solver, physics)

    def solver_for(self, physics, batch: int | None = None) -> str:
        """The solver this method runs on ``physics`` (for ``batch`` images at once, where it matters):
        "homotopy", "admm" or "fista"."""
        from invgan.lasso import choose_solver

        return choose_solver(self.solver, physics, self.alpha, batch)

    def reconstruct(self, y, physics, state=None, progress=False):
        from invgan.lasso import lasso_solve

        r, solver = lasso_solve(y, physics, self.basis, self.alpha, self.solver, tol=self.tol, max_iter=self.max_iter,
                                clip=self.clip, progress=progress, state=state)
        return Reconstruction(r.x, {"alpha": self.alpha, "tol": self.tol, "solver": solver,
                                    "iterations": r.iterations,
                                    "image_iterations_mean": float(r.image_iterations.float().mean()),
                                    "max_rel_gap": float(r.gap.max())}, raw=r)


# ----------------------------------------------------------------------------- Sparse-Gen
class SparseGen(Method):
    """Sparse-Gen (Dhar, Grover & Ermon 2018): x = clip(G(z) + Psi w), minimising
    mean_m (y - A(G(z) + Psi w))^2 + z_reg ||z||^2 + 2 alpha ||w||_1 jointly over z and w from a
    latent-only CSGM start (``invgan.sparse_gen.sparse_gen_reconstruct``).

    Parameters
    ----------
    generator : LatentGenerator or nn.Module
    basis : {"wavelet", "dct"} or basis object, default "wavelet"
        The basis the deviation from the generator's range is sparse in.
    start : CSGM, optional
        The latent-only start; default ``CSGM.preset("dcgan-reg", generator, budget=budget, seed=seed)``.
        Its ``z_reg`` is the joint objective's.
    kappa : float, optional
        A fixed kappa for ``invgan.sparse_gen.deviation_alpha`` (default: the rule's
        ``deviation_kappa(m, n)``, which depends on m).
    alpha : float, optional
        A fixed l1 weight instead of the rule.
    rounds, z_passes : int
        (w-step, z-step) rounds after the first w-step, and L-BFGS passes per z-step.
    lasso_solver, lasso_tol
        As for ``Lasso``.
    """

    def __init__(self, generator, basis="wavelet", start: "CSGM | None" = None, kappa: float | None = None,
                 alpha: float | None = None, rounds: int = 2, z_passes: int = 30, lasso_solver: str = "auto",
                 lasso_tol: float = 1e-6, budget: str = "auto", seed: int = 0, name: str | None = None):
        from invgan.lasso import check_solver_name

        if generator is None:
            raise InvganError("sparse-gen needs a generator")
        if isinstance(basis, str) and basis not in ("dct", "wavelet"):
            raise InvganError(f"unknown basis {basis!r}: use dct, wavelet or a basis object")
        check_solver_name(lasso_solver)
        self.start = start if start is not None else CSGM.preset("dcgan-reg", generator, budget=budget, seed=seed)
        if not isinstance(self.start, CSGM):
            raise InvganError(f"sparse-gen's start must be a CSGM method, got {type(self.start).__name__}")
        self.generator = self.start.generator
        if kappa is not None:
            check_number("kappa", kappa, strict=True)
        if alpha is not None:
            check_number("alpha", alpha, strict=True)
        check_int("rounds", rounds, 0)
        check_int("z_passes", z_passes, 0)
        check_number("lasso_tol", lasso_tol, strict=True)
        self.basis, self.kappa, self.alpha = basis, kappa, alpha
        self.lasso_solver, self.lasso_tol = lasso_solver, lasso_tol
        self.name = name or ("sparse-gen" if basis == "wavelet" else f"sparse-gen-{getattr(basis, 'name', basis)}")
        self.settings = {"basis": getattr(basis, "name", basis), "kappa": kappa, "alpha": alpha, "rounds": rounds,
                         "z_passes": z_passes, "start": self.start.name,
                         "start_budget": getattr(self.start, "budget", "custom")}

    def use_cache(self, cache) -> None:
        self.cache = cache
        self.start.use_cache(cache)

    def check(self, y, physics):
        from invgan.lasso import _check_inputs, check_solver

        self.start.check(y, physics)
        _check_inputs(y[:1], physics, self.basis, self.alpha or 1.0, self.lasso_tol)
        check_solver(self.lasso_solver, physics)

    def reconstruct(self, y, physics, state=None, progress=False):
        from invgan.sparse_gen import deviation_kappa, sparse_gen_reconstruct

        r0, reused = self.start.solve(y, physics, state=state, progress=progress)
        s = self.settings
        r = sparse_gen_reconstruct(y, physics, self.generator, r0.z, self.basis, alpha=self.alpha,
                                   kappa=self.kappa, z_reg=self.start.settings["z_reg"], rounds=s["rounds"],
                                   z_passes=s["z_passes"], lasso_solver=self.lasso_solver, lasso_tol=self.lasso_tol,
                                   z_clip=self.start.z_clip, progress=progress)
        kappa = self.kappa if self.kappa is not None else deviation_kappa(physics.m, r.w[0].numel())
        details = dict(s, kappa_used=kappa, alpha_mean=float(r.alpha.mean()),
                       objective_start_mean=float(r.start_objective.mean()), objective_mean=float(r.objective.mean()),
                       deviation_nonzeros_mean=float((r.w != 0).flatten(1).sum(1).float().mean()),
                       max_rel_gap=float(r.lasso_gap.max()),
                       latent_steps_per_image=r0.latent_steps + r.latent_steps)
        if reused:
            details["reused_seconds"] = reused  # the start came from the cache: its solve's time
        return Reconstruction(r.x, details, generated=r.generated, raw=r)


# ----------------------------------------------------------------------------- least squares
class LeastSquares(Method):
    """The minimum-norm least-squares solution x = A^+ y = A^T (A A^T)^+ y (pseudo-inverse),
    by conjugate gradients on A A^T u = y (batched, any operator with ``A_adjoint``); clipped to
    [-1, 1]. ``tol``: relative residual of the normal equations; ``max_iter``: CG steps."""

    name = "least-squares"

    def __init__(self, tol: float = 1e-6, max_iter: int = 1000, clip: bool = True):
        self.tol, self.max_iter, self.clip = check_number("tol", tol, strict=True), check_int("max_iter", max_iter), clip

    def reconstruct(self, y, physics, state=None, progress=False):
        def AAt(u):
            return physics.A(physics.A_adjoint(u))

        u = torch.zeros_like(y)
        r = y.clone()
        p = r.clone()
        rs = r.flatten(1).pow(2).sum(1)
        target = (self.tol ** 2) * rs.clamp_min(1e-30)
        it = 0
        for it in range(1, self.max_iter + 1):
            if bool((rs <= target).all()):
                it -= 1
                break
            Ap = AAt(p)
            pAp = (p * Ap).flatten(1).sum(1)
            a = torch.where(pAp > 0, rs / pAp.clamp_min(1e-30), torch.zeros_like(rs))
            shape = (-1,) + (1,) * (y.dim() - 1)
            u = u + a.view(shape) * p
            r = r - a.view(shape) * Ap
            rs_new = r.flatten(1).pow(2).sum(1)
            p = r + (rs_new / rs.clamp_min(1e-30)).view(shape) * p
            rs = rs_new
        x = physics.A_adjoint(u)
        if self.clip:
            x = x.clamp(-1, 1)
        rel = (rs / (y.flatten(1).pow(2).sum(1)).clamp_min(1e-30)).sqrt()
        return Reconstruction(x, {"tol": self.tol, "cg_iterations": it, "max_rel_residual": float(rel.max())})


# ----------------------------------------------------------------------------- inpainting
def _mask_of(physics, name):
    mask = getattr(physics, "mask", None)
    if mask is None:
        raise InvganError(f"{name} fills masked pixels: it needs an operator with a mask (invgan.physics.Inpainting)")
    return mask


class YehInpainting(Method):
    """Semantic inpainting (Yeh et al. 2017): fit G(z) to the known pixels (weighted L1 context
    loss + lam * perceptual loss through D), then blend G(z_hat) into them.

    Parameters
    ----------
    generator : LatentGenerator or nn.Module
    discriminator : nn.Module, optional
        Needed when ``lam`` > 0; maps images to one logit each.
    lam, perceptual, window, restarts, iters, lr : the paper's 0.003, "paper", 7, 1, 1500, 0.01
    blend : {"poisson", "none"}
        How G(z_hat) enters the hole; ``Reconstruction.generated`` holds G(z_hat) itself.
    optimizer, history : "adam" (the paper's) or "lbfgs" (per-latent L-BFGS with ``history``
        curvature pairs; ``iters`` then counts passes, ``lr`` is the first step's length).
        ``YehInpainting.preset(budget, ...)`` gives a named budget's (``invgan.yeh.BUDGETS``).
    """

    name = "yeh"

    def __init__(self, generator, discriminator=None, lam: float = 0.003, perceptual: str = "paper", window: int = 7,
                 restarts: int = 1, iters: int = 1500, lr: float = 0.01, z_clip: float | None = None, seed: int = 0,
                 blend: str = "poisson", optimizer: str = "adam", history: int = 10):
        from invgan.blend import BLENDS
        from invgan.generators import as_generator
        from invgan.yeh import PERCEPTUAL_LOSSES

        if generator is None:
            raise InvganError("yeh needs a generator")
        if perceptual not in PERCEPTUAL_LOSSES:
            raise InvganError(f"unknown perceptual loss {perceptual!r}: use one of {', '.join(PERCEPTUAL_LOSSES)}")
        if blend not in BLENDS:
            raise InvganError(f"unknown blend {blend!r}: use one of {', '.join(BLENDS)}")
        check_number("lam", lam)
        if lam and discriminator is None:
            raise InvganError("the perceptual loss needs a discriminator: pass one, or set lam to 0")
        self.generator, self.discriminator = as_generator(generator), discriminator
        self.settings = {"lam": lam, "perceptual": perceptual, "window": window, "iters": check_int("iters", iters),
                         "restarts": check_int("restarts", restarts), "lr": check_number("lr", lr, strict=True),
                         "z_clip": z_clip}
        if optimizer not in ("adam", "lbfgs"):
            raise InvganError(f"optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
        if optimizer == "lbfgs":
            self.settings.update(optimizer="lbfgs", history=check_int("history", history))
        self.seed, self.blend, self.budget = seed, blend, "custom"

    @classmethod
    def preset(cls, budget: str, generator, discriminator=None, **overrides) -> "YehInpainting":
        """The paper's settings with the latent search of ``budget``, "paper" or "lbfgs"
        (``invgan.yeh.BUDGETS``), and any setting overridden (None values are ignored)."""
        from invgan.yeh import budget_settings

        s = budget_settings(budget)
        s.update({k: v for k, v in overrides.items() if v is not None})
        m = cls(generator, discriminator, **s)
        m.budget = budget
        return m

    def reconstruct(self, y, physics, state=None, progress=False):
        from invgan.blend import blend
        from invgan.yeh import yeh_inpaint

        mask = _mask_of(physics, self.name)
        s = self.settings
        r = yeh_inpaint(y, physics, self.generator, self.discriminator, lam=s["lam"], perceptual=s["perceptual"],
                        window=s["window"], restarts=s["restarts"], iters=s["iters"], lr=s["lr"], z_clip=s["z_clip"],
                        seed=self.seed, progress=progress, state=state, optimizer=s.get("optimizer", "adam"),
                        history=s.get("history", 10))
        x = blend(r.x, y, mask[:, :1].expand(y.shape[0], 1, *y.shape[2:]), self.blend)
        return Reconstruction(x, dict(s, blend=self.blend, budget=self.budget, final_loss_mean=float(r.objective.mean())),
                              generated=r.x, raw=r)


class Biharmonic(Method):
    """Biharmonic inpainting (scikit-image), per image and channel."""

    name = "biharmonic"

    def reconstruct(self, y, physics, state=None, progress=False):
        from invgan.classical_inpaint import biharmonic_inpaint

        _mask_of(physics, self.name)
        return Reconstruction(biharmonic_inpaint(y, physics, progress=progress), {})


class TVInpainting(Method):
    """Total-variation inpainting: minimum colour TV with the known pixels fixed (cvxpy)."""

    name = "tv"

    def __init__(self, solver: str | None = None):
        self.solver = solver

    def reconstruct(self, y, physics, state=None, progress=False):
        from invgan.classical_inpaint import tv_inpaint

        _mask_of(physics, self.name)
        return Reconstruction(tv_inpaint(y, physics, solver=self.solver, progress=progress), {})


# ----------------------------------------------------------------------------- registry
@dataclass
class MethodSpec:
    """A registered method: ``build(**context) -> Method`` and what it needs."""

    name: str
    build: Callable[..., Method]
    tasks: tuple = ("cs",)
    needs_generator: bool = False
    needs_discriminator: bool = False
    description: str = ""


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, build: Callable[..., Method], *, tasks=("cs",), needs_generator: bool = False,
                    needs_discriminator: bool = False, description: str = "", replace: bool = False) -> None:
    """Register a method by name for the CLI, experiments and sweeps.

    Parameters
    ----------
    name : str
        The name used in ``--methods`` and recipes (letters, digits, "-", "_", ".").
    build : callable
        ``build(**context) -> Method``; see the module docstring for the context. A method class
        whose constructor takes the context's keywords (and ``**_``) works as is.
    tasks : tuple of {"cs", "inpaint"}
        The experiments it serves.
    needs_generator, needs_discriminator : bool
        Load the generator (and discriminator) for it.
    """
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or "+" in name:
        raise InvganError(f"method name {name!r} must be letters, digits, '-', '_' or '.'")
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise InvganError(f"method {name!r}: tasks must be a non-empty subset of {TASKS}, got {tasks!r}")
    if name in METHODS and not replace:
        raise InvganError(f"method {name!r} is already registered (pass replace=True to override it)")
    if not callable(build):
        raise InvganError(f"method {name!r}: build must be callable")
    METHODS[name] = MethodSpec(name, build, tuple(tasks), needs_generator, needs_discriminator, description)


def available_methods(task: str | None = None) -> list[str]:
    """Registered method names (for ``task`` "cs" or "inpaint" only, if given), plugins included."""
    from invgan.plugins import load_plugins

    load_plugins()
    return [n for n, s in METHODS.items() if task is None or task in s.tasks]


def method_spec(name: str, task: str | None = None) -> MethodSpec:
    """The registration of ``name``; a clear error listing the choices if there is none."""
    names = available_methods(task)
    if name not in names:
        where = f" for {task}" if task else ""
        raise InvganError(f"unknown method {name!r}{where}: choose from {', '.join(names)}")
    return METHODS[name]


def make_method(name: str, task: str | None = None, **context) -> Method:
    """Build the registered method ``name`` from the context (generator, seed, settings...)."""
    spec = method_spec(name, task)
    if spec.needs_generator and context.get("generator") is None:
        raise InvganError(f"method {name!r} needs a generator")
    m = spec.build(**context)
    if not callable(m):
        raise InvganError(f"method {name!r}: its builder returned {type(m).__name__}, which is not callable")
    if getattr(m, "name", None) in (None, "method"):
        try:
            m.name = name
        except AttributeError:
            pass
    return m


def _csgm_builder(preset):
    def build(generator=None, seed=0, budget="auto", iters=None, restarts=None, lr=None, z_reg=None, z_clip=None, **_):
        return CSGM.preset(preset, generator, budget=budget, iters=iters, restarts=restarts, lr=lr, z_reg=z_reg,
                           z_clip=z_clip, seed=seed)
    return build


def _lasso_builder(basis):
    def build(lasso_tol=1e-5, lasso_solver="auto", **_):
        return Lasso(basis, tol=lasso_tol, solver=lasso_solver)
    return build


def _sparse_gen_builder(basis):
    def build(generator=None, seed=0, budget="auto", iters=None, restarts=None, lr=None, z_reg=None, z_clip=None,
              lasso_tol=1e-6, lasso_solver="auto", **_):
        start = CSGM.preset("dcgan-reg", generator, budget=budget, iters=iters, restarts=restarts, lr=lr,
                            z_reg=z_reg, z_clip=z_clip, seed=seed)
        return SparseGen(generator, basis, start=start, lasso_tol=min(lasso_tol, 1e-6), lasso_solver=lasso_solver)
    return build


def _yeh(generator=None, discriminator=None, seed=0, lam=0.003, perceptual="paper", window=7, restarts=1, iters=None,
         lr=None, z_clip=None, blend="poisson", budget="paper", **_):
    return YehInpainting.preset(budget, generator, discriminator if lam else None, lam=lam, perceptual=perceptual,
                                window=window, restarts=restarts, iters=iters, lr=lr, z_clip=z_clip, seed=seed,
                                blend=blend)


register_method("dcgan", _csgm_builder("dcgan"), needs_generator=True,
                description="CSGM, Bora et al. 2017: lambda 0, 2 restarts x 500 Adam steps")
register_method("dcgan-reg", _csgm_builder("dcgan-reg"), needs_generator=True,
                description="CSGM with lambda ||z||^2, lambda 0.001, 10 restarts")
register_method("lasso-dct", _lasso_builder("dct"), description="Lasso in the 2-D DCT basis, alpha 0.1")
register_method("lasso-wavelet", _lasso_builder("wavelet"), description="Lasso in the Haar wavelet basis, alpha 1e-5")
register_method("sparse-gen", _sparse_gen_builder("wavelet"), needs_generator=True,
                description="Sparse-Gen, Dhar et al. 2018: G(z) + a Haar-sparse deviation, from DCGAN+Reg")
register_method("sparse-gen-dct", _sparse_gen_builder("dct"), needs_generator=True,
                description="Sparse-Gen with a DCT-sparse deviation")
register_method("least-squares", lambda **_: LeastSquares(), tasks=("cs", "inpaint"),
                description="minimum-norm least squares (pseudo-inverse)")
register_method("yeh", _yeh, tasks=("inpaint",), needs_generator=True, needs_discriminator=True,
                description="Yeh et al. 2017: context + perceptual loss over z, then blending")
register_method("biharmonic", lambda **_: Biharmonic(), tasks=("inpaint",), description="biharmonic (scikit-image)")
register_method("tv", lambda **_: TVInpainting(), tasks=("inpaint",), description="total variation (cvxpy)")
