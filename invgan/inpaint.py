"""The inpainting experiment behind `invgan inpaint`: images -> masks -> methods -> metrics.

Methods come from the registry (``invgan.methods``): "yeh" (Yeh et al. 2017, paper settings, then
blended: Poisson and/or plain composite), "biharmonic" (skimage), "tv" (total variation, cvxpy),
"least-squares", or a user's. Metrics per image: MSE, PSNR and SSIM on the whole image and on the
missing region ("hole"), outputs clipped to [-1, 1].
Outputs in the run folder: metrics.json (config, per-image rows, per-method summaries),
results.csv, masks.npy (uint8 (N, H, W), 1 = known), images.npz (uint8 (N, H, W, C) arrays:
original, masked, generated, one per method) and grid.png (the same, as rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from invgan.blend import BLENDS, blend
from invgan.errors import InvganError, check_int, check_number
from invgan.experiment import Experiment, run_experiment
from invgan.masks import MASK_KINDS, describe, make_masks
from invgan.metrics import mse_per_image, psnr_from_mse, ssim_per_image
from invgan.physics import Inpainting
from invgan.yeh import BUDGETS as YEH_BUDGETS, PAPER_SETTINGS, PERCEPTUAL_LOSSES, budget_settings

DEFAULT_METHODS = ("yeh", "biharmonic", "tv")
METRICS = ("mse", "psnr", "ssim", "mse_hole", "psnr_hole", "ssim_hole")
ROW_FIELDS = ["id", "method", "mask", "mask_description", "missing_fraction", *METRICS, "seconds"]


@dataclass
class InpaintConfig:
    """Settings of one inpainting run (the fields of `invgan inpaint` and of inpaint recipes).

    ``mask`` kind with ``hole``, ``fraction``, ``side``, ``mask_file``; ``methods``: registered
    names; ``blends``: how a generator's output enters the hole ("poisson", "none");
    ``lam``, ``perceptual``, ``window``, ``iters``, ``restarts``, ``lr``: Yeh's settings (paper's
    defaults; ``iters`` and ``lr`` None: the budget's); ``budget``: Yeh's latent search, "paper"
    (Adam, 1500 steps) or "lbfgs" (opt-in, 0.2 of the work; ``invgan.yeh.BUDGETS``);
    ``image_size``: None follows the generator.
    """

    mask: str = "center"
    hole: int | None = None          # centre hole side (default half the image side)
    fraction: float | None = None    # random / blob: fraction missing (0.8 / 0.3)
    side: str = "left"               # half: the missing side
    mask_file: str | None = None
    methods: tuple = DEFAULT_METHODS
    blends: tuple = ("poisson",)
    lam: float = PAPER_SETTINGS["lam"]
    perceptual: str = PAPER_SETTINGS["perceptual"]
    window: int = PAPER_SETTINGS["window"]
    iters: int | None = None         # None: the budget's (paper: 1500 Adam steps)
    restarts: int = PAPER_SETTINGS["restarts"]
    lr: float | None = None          # None: the budget's (paper: Adam lr 0.01)
    budget: str = "paper"            # Yeh's latent search: "paper" or "lbfgs" (invgan.yeh.BUDGETS)
    z_clip: float | None = None
    images: str | None = None
    num_images: int = 64
    image_size: int | None = None
    generator: str | None = None
    discriminator: str | None = None
    seed: int = 0
    device: str | None = None
    grid_images: int = 8
    notes: list = field(default_factory=list)

    def __post_init__(self):
        # iters and lr left as None take the budget's values, so that a run records what it ran
        if self.budget in YEH_BUDGETS:  # (an unknown one is reported by validate)
            s = budget_settings(self.budget)
            self.iters = s["iters"] if self.iters is None else self.iters
            self.lr = s["lr"] if self.lr is None else self.lr

    def validate(self):
        """Raise ``InvganError`` naming the first bad setting."""
        from invgan.methods import method_spec

        if not self.methods:
            raise InvganError("no method given")
        for m in self.methods:
            method_spec(m, "inpaint")
        bad = [b for b in self.blends if b not in BLENDS]
        if bad or not self.blends:
            raise InvganError(f"unknown blend {bad[0] if bad else ''!r}: use poisson, none or both")
        if self.mask not in MASK_KINDS:
            raise InvganError(f"unknown mask {self.mask!r}: use one of {', '.join(MASK_KINDS)}")
        if self.perceptual not in PERCEPTUAL_LOSSES:
            raise InvganError(f"unknown perceptual loss {self.perceptual!r}: use one of {', '.join(PERCEPTUAL_LOSSES)}")
        for k in ("num_images", "restarts", "grid_images", "window"):
            check_int(k, getattr(self, k), 1)
        if self.iters is not None:
            check_int("iters", self.iters, 1)
        budget_settings(self.budget)  # an unknown budget: one line naming the known ones
        if self.window % 2 == 0:
            raise InvganError(f"window must be odd, got {self.window}")
        if self.image_size is not None:
            check_int("image_size", self.image_size, 8)
        check_number("lam", self.lam, 0)
        if self.lr is not None:
            check_number("lr", self.lr, 0, strict=True)
        if self.z_clip is not None:
            check_number("z_clip", self.z_clip, 0, strict=True)
        if self.fraction is not None:
            check_number("fraction", self.fraction, 0, strict=True)
            if self.mask not in ("random", "blob"):
                raise InvganError(f"fraction applies to random and blob masks only, not to {self.mask!r}")
        if self.hole is not None:
            check_int("hole", self.hole, 1)

    def method_names(self) -> list[str]:
        """The reported names: "yeh+poisson" etc. for generator methods, else the method's."""
        names = []
        for m in self.methods:
            names += [f"{m}+{b}" for b in self.blends] if m == "yeh" else [m]
        return names


class InpaintExperiment(Experiment):
    """Inpainting: y = mask * x; metrics on the whole image and on the hole."""

    task = "inpaint"
    metrics = METRICS
    row_fields = ROW_FIELDS

    def measure(self, x, ids, device):
        c = self.cfg
        n, (C, H, W) = len(ids), tuple(x.shape[1:])
        self.masks = make_masks(c.mask, n, (H, W), seed=c.seed + 3, hole=c.hole, fraction=c.fraction,
                                side=c.side, path=c.mask_file).to(device)
        self.hole = 1 - self.masks
        self.missing = self.hole.flatten(1).mean(1).cpu().numpy()
        self.mask_name = describe(c.mask, c.hole, c.fraction, c.side, c.mask_file, (H, W))
        physics = Inpainting(self.masks, (C, H, W)).to(device)
        return physics, physics.A(x)

    def variants(self, name, rec, y, physics):
        if rec.generated is None:
            return {name: rec.x.clamp(-1, 1)}
        return {f"{name}+{b}": blend(rec.generated, y, self.masks, b).clamp(-1, 1) for b in self.cfg.blends}

    def score(self, x_hat, x):
        mse, mse_h = mse_per_image(x_hat, x), mse_per_image(x_hat, x, self.hole)
        return {"mse": mse, "psnr": psnr_from_mse(mse), "ssim": ssim_per_image(x_hat, x),
                "mse_hole": mse_h, "psnr_hole": psnr_from_mse(mse_h), "ssim_hole": ssim_per_image(x_hat, x, self.hole)}

    def row_info(self, i):
        return {"mask": self.cfg.mask, "mask_description": self.mask_name, "missing_fraction": float(self.missing[i])}

    def config_info(self):
        return {"mask_description": self.mask_name, "missing_fraction_mean": float(self.missing.mean())}

    def method_context(self):
        c = self.cfg
        ctx = {k: getattr(c, k) for k in ("lam", "perceptual", "window", "iters", "restarts", "lr", "z_clip", "budget")}
        return ctx | {"blend": "none"}  # the harness blends G(z) itself, once per cfg.blends

    def load_discriminator(self):
        return self.cfg.lam > 0

    def grid_rows(self, x, y, recon, names):
        rows = [("original", x), ("masked", y)]  # missing pixels show as grey (0)
        if "generated" in recon:
            rows.append(("generated", recon["generated"].clamp(-1, 1)))
        return rows + [(n, recon[n]) for n in names]

    def write_extra(self, out):
        from invgan.fileio import atomic_path

        with atomic_path(out / "masks.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, self.masks[:, 0].cpu().numpy().astype(np.uint8))

    def table(self, result):
        return format_table(result)


def run_inpaint(cfg: InpaintConfig, out_dir=None, progress: bool = True, verbose: bool = True,
                keep_images: bool = False, state_dir=None, cache_dir=None) -> dict:
    """Run the inpainting experiment ``cfg``; see ``invgan.experiment.run_experiment``."""
    return run_experiment(InpaintExperiment(cfg), out_dir, progress, verbose, keep_images, state_dir, cache_dir)


def format_table(result: dict) -> str:
    """The printed summary: one line per method, hole and whole-image PSNR and SSIM."""
    c = result["config"]
    lines = [f"inpainting, mask {c['mask_description']} ({c['missing_fraction_mean']:.0%} missing), "
             f"{c['num_images']} images ({c['image_source']})",
             f"{'method':14s} {'PSNR hole':>15s} {'SSIM hole':>15s} {'PSNR all':>15s} {'SSIM all':>15s} {'s/image':>8s}"]
    for name, s in result["summary"].items():
        cells = [f"{s[k]['mean']:{'7.2f' if 'psnr' in k else '7.3f'}} +- {s[k]['ci95']:{'.2f' if 'psnr' in k else '.3f'}}"
                 for k in ("psnr_hole", "ssim_hole", "psnr", "ssim")]
        lines.append(f"{name:14s} " + " ".join(f"{c_:>15s}" for c_ in cells) + f" {s['seconds_per_image']:8.2f}")
    return "\n".join(lines)
