"""The compressed-sensing experiment behind `invgan cs`: images -> measurements -> methods -> metrics.

Methods come from the registry (``invgan.methods``): "dcgan" (CSGM, lambda 0, 2 restarts),
"dcgan-reg" (CSGM, lambda 0.001, 10 restarts), "lasso-dct" (alpha 0.1), "lasso-wavelet"
(alpha 1e-5), "least-squares", or a user's: the paper's settings unless overridden.
Outputs in the run folder: metrics.json (config, per-image rows, per-method summary),
results.csv (the rows), images.npz (uint8 (N, H, W, C) arrays: ids, original and one per method)
and grid.png (originals on top, one row per method).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from invgan.errors import InvganError, check_int, check_number
from invgan.experiment import Experiment, run_experiment
from invgan.metrics import mse_per_image, psnr_from_mse, ssim_per_image

DEFAULT_METHODS = ("dcgan", "lasso-dct", "lasso-wavelet")
ROW_FIELDS = ["id", "method", "physics", "m", "noise_std", "mse", "psnr", "ssim", "seconds"]


@dataclass
class CSConfig:
    """Settings of one compressed-sensing run (the fields of `invgan cs` and of cs sweep recipes).

    ``measurements``: m; ``physics``: the operator's registered name ("gaussian", "superres",
    "inpaint", "identity" or a user's); ``methods``: registered method names; ``images``: a
    CelebA folder, image folder or glob (None: CelebA test, else val, else the demo set);
    ``input`` "gen-span": generator samples instead; ``image_size``: None follows the generator
    (64 without one). ``iters``, ``restarts``, ``lr``, ``z_reg``, ``z_clip`` override the CSGM
    presets (None: the paper's); ``budget`` "auto" (the paper's below m = 500; from there DCGAN by 6 x 30 L-BFGS passes and the best 2 x 70 more,
    DCGAN+Reg by 8 x 30 and the best 2 x 220 more, on the operators where they were measured;
    ``invgan.csgm.AUTO_FROM_M``, ``AUTO_SETTINGS``),
    "paper", "fast" or "lbfgs" (``invgan.csgm.BUDGETS``); ``lasso_tol`` the Lasso's
    relative duality-gap tolerance; ``lasso_solver`` "auto", "fista" or "homotopy" (``invgan.methods.Lasso``).
    """

    measurements: int | None = 500
    physics: str = "gaussian"
    methods: tuple = DEFAULT_METHODS
    images: str | None = None
    input: str = "data"              # "data" or "gen-span"
    num_images: int = 64
    image_size: int | None = None
    noise_std: float = 0.01
    iters: int | None = None         # None: the method's paper value
    restarts: int | None = None
    lr: float | None = None
    z_reg: float | None = None
    z_clip: float | None = None
    lasso_tol: float = 1e-5
    lasso_solver: str = "auto"       # "auto" for a Gaussian A: near basis pursuit (alpha <= 1e-3, the wavelet's) the
    # exact homotopy up to m = 1000, ADMM above; else (the DCT's) the homotopy below m = 500, ADMM above (from m = 5937
    # for batches of 16 images or more), FISTA at m = n (invgan.lasso.choose_solver)
    budget: str = "auto"             # CSGM work: "auto" (the paper's below m = 500, L-BFGS per method and operator from there:
    # invgan.csgm.AUTO_FROM_M, AUTO_SETTINGS), "paper" (the
    # paper's fixed Adam budget), "fast" (restart pruning) or "lbfgs"
    superres_factor: int = 4
    generator: str | None = None
    seed: int = 0
    device: str | None = None
    grid_images: int = 8
    notes: list = field(default_factory=list)

    def validate(self):
        """Raise ``InvganError`` naming the first bad setting."""
        from invgan.csgm import BUDGETS
        from invgan.methods import method_spec
        from invgan.physics import available_physics

        if not self.methods:
            raise InvganError("no method given")
        for m in self.methods:
            method_spec(m, "cs")
        if self.physics not in available_physics():
            raise InvganError(f"unknown physics {self.physics!r}: use one of {', '.join(available_physics())}")
        if self.input not in ("data", "gen-span"):
            raise InvganError(f"unknown input {self.input!r}: use data or gen-span")
        check_int("num_images", self.num_images, 1)
        check_int("grid_images", self.grid_images, 1)
        check_int("superres_factor", self.superres_factor, 1)
        if self.measurements is not None:
            check_int("measurements", self.measurements, 1)
        if self.image_size is not None:
            check_int("image_size", self.image_size, 8)
        check_number("noise_std", self.noise_std, 0)
        check_number("lasso_tol", self.lasso_tol, 0, strict=True)
        from invgan.lasso import check_solver_name

        check_solver_name(self.lasso_solver, "lasso_solver")
        for k in ("iters", "restarts"):
            if getattr(self, k) is not None:
                check_int(k, getattr(self, k), 1)
        for k, strict in (("lr", True), ("z_reg", False), ("z_clip", True)):
            if getattr(self, k) is not None:
                check_number(k, getattr(self, k), 0, strict=strict)
        if self.budget not in BUDGETS:
            raise InvganError(f"unknown budget {self.budget!r}: use {' or '.join(BUDGETS)}")

    def check_shape(self, img_shape) -> None:
        """Raise ``InvganError`` if the measurement settings do not fit images of ``img_shape``."""
        n = math.prod(img_shape)
        m = self.measurements
        if self.physics == "gaussian" and m is not None and not 1 <= m <= n:
            raise InvganError(f"number of measurements m must be an integer between 1 and {n} "
                              f"(the values of a {'x'.join(map(str, img_shape))} image), got {m}")
        f = self.superres_factor
        if self.physics == "superres" and (img_shape[1] % f or img_shape[2] % f):
            raise InvganError(f"super-resolution factor {f} must be a positive integer dividing the image size "
                              f"{img_shape[1]}x{img_shape[2]}")


class CSExperiment(Experiment):
    """Compressed sensing: y = A x + noise under a registered operator; MSE, PSNR, SSIM."""

    task = "cs"
    metrics = ("mse", "psnr", "ssim")
    row_fields = ROW_FIELDS

    def measure(self, x, ids, device):
        from invgan.physics import make_physics

        c = self.cfg
        self.physics = make_physics(c.physics, tuple(x.shape[1:]), c.measurements, c.noise_std, c.seed,
                                    c.superres_factor, device)
        return self.physics, self.physics(x, torch.Generator().manual_seed(c.seed + 1))

    def score(self, x_hat, x):
        mse = mse_per_image(x_hat, x)
        return {"mse": mse, "psnr": psnr_from_mse(mse), "ssim": ssim_per_image(x_hat, x)}

    def row_info(self, i):
        return {"physics": self.cfg.physics, "m": self.physics.m, "noise_std": self.cfg.noise_std}

    def config_info(self):
        return {"m": self.physics.m}

    def method_context(self):
        c = self.cfg
        return {k: getattr(c, k) for k in ("iters", "restarts", "lr", "z_reg", "z_clip", "budget", "lasso_tol",
                                           "lasso_solver")}

    def table(self, result):
        return format_table(result)


def run_cs(cfg: CSConfig, out_dir=None, progress: bool = True, verbose: bool = True,
           keep_images: bool = False, state_dir=None, cache_dir=None) -> dict:
    """Run the compressed-sensing experiment ``cfg``; see ``invgan.experiment.run_experiment``."""
    return run_experiment(CSExperiment(cfg), out_dir, progress, verbose, keep_images, state_dir, cache_dir)


def format_table(result: dict) -> str:
    """The printed summary: one line per method (mean +- 95% interval)."""
    c = result["config"]
    lines = [f"{c['physics']} measurements, m = {c['m']}, noise std {c['noise_std']}, "
             f"{c['num_images']} images ({c['image_source']})",
             f"{'method':15s} {'MSE/pixel':>20s} {'PSNR dB':>14s} {'SSIM':>14s} {'s/image':>9s}"]
    for method, s in result["summary"].items():
        lines.append(f"{method:15s} {s['mse']['mean']:10.5f} +- {s['mse']['ci95']:.5f} "
                     f"{s['psnr']['mean']:7.2f} +- {s['psnr']['ci95']:.2f} "
                     f"{s['ssim']['mean']:6.3f} +- {s['ssim']['ci95']:.3f} {s['seconds_per_image']:9.3f}")
    return "\n".join(lines)
