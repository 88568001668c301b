"""The inpainting experiment behind `invgan inpaint`: images -> masks -> methods -> metrics.

Methods: "yeh" (Yeh et al. 2017, paper settings, then blended: Poisson and/or plain composite),
"biharmonic" (skimage) and "tv" (total variation, cvxpy). Metrics per image: MSE, PSNR and SSIM
on the whole image and on the missing region ("hole"), outputs clipped to [-1, 1].
Outputs in the run folder: metrics.json (config, per-image rows, per-method summaries),
results.csv, masks.npy (uint8 (N, H, W), 1 = known), images.npz (uint8 (N, H, W, 3) arrays:
original, masked, generated, one per method) and grid.png (the same, as rows).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from invgan import InvganError
from invgan.blend import BLENDS, blend
from invgan.classical_inpaint import biharmonic_inpaint, tv_inpaint
from invgan.masks import MASK_KINDS, describe, make_masks
from invgan.metrics import mse_per_image, psnr_from_mse, ssim_per_image, summarize
from invgan.physics import Inpainting
from invgan.resume import SolveState
from invgan.yeh import PAPER_SETTINGS, PRIORS, yeh_inpaint

METHODS = ("yeh", "biharmonic", "tv")
METRICS = ("mse", "psnr", "ssim", "mse_hole", "psnr_hole", "ssim_hole")
ROW_FIELDS = ["id", "method", "mask", "mask_description", "missing_fraction", *METRICS, "seconds"]


@dataclass
class InpaintConfig:
    mask: str = "center"
    hole: int | None = None          # centre hole side (default half the image side)
    fraction: float | None = None    # random / blob: fraction missing (0.8 / 0.3)
    side: str = "left"               # half: the missing side
    mask_file: str | None = None
    methods: tuple = METHODS
    blends: tuple = ("poisson",)
    lam: float = PAPER_SETTINGS["lam"]
    prior: str = PAPER_SETTINGS["prior"]
    window: int = PAPER_SETTINGS["window"]
    iters: int = PAPER_SETTINGS["iters"]
    restarts: int = PAPER_SETTINGS["restarts"]
    lr: float = PAPER_SETTINGS["lr"]
    z_clip: float | None = None
    images: str | None = None
    num_images: int = 64
    generator: str | None = None
    discriminator: str | None = None
    seed: int = 0
    device: str | None = None
    grid_images: int = 8
    notes: list = field(default_factory=list)

    def validate(self):
        if not self.methods:
            raise InvganError("no method given")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise InvganError(f"unknown method {bad[0]!r}: choose from {', '.join(METHODS)}")
        bad = [b for b in self.blends if b not in BLENDS]
        if bad or not self.blends:
            raise InvganError(f"unknown blend {bad[0] if bad else ''!r}: use poisson, none or both")
        if self.mask not in MASK_KINDS:
            raise InvganError(f"unknown mask {self.mask!r}: use one of {', '.join(MASK_KINDS)}")
        if self.prior not in PRIORS:
            raise InvganError(f"unknown prior {self.prior!r}: use one of {', '.join(PRIORS)}")
        if self.num_images < 1:
            raise InvganError(f"num-images must be >= 1, got {self.num_images}")
        if self.lam < 0:
            raise InvganError(f"lambda must be >= 0, got {self.lam}")

    def method_names(self) -> list[str]:
        names = []
        for m in self.methods:
            names += [f"yeh+{b}" for b in self.blends] if m == "yeh" else [m]
        return names


def run_inpaint(cfg: InpaintConfig, out_dir=None, progress: bool = True, verbose: bool = True,
                keep_images: bool = False, state_dir=None) -> dict:
    """Run the experiment; write outputs to ``out_dir`` if given; return the metrics dict.

    ``keep_images``: also return the images under "images" (original, masked, one per method).
    ``state_dir``: the GAN fit saves its state there as it runs (STATE_DIR/yeh.pt) and resumes
    from it; the reported time then includes the time the saved state stands for.
    """
    from invgan.checkpoint import load_models
    from invgan.cs import select_images
    from invgan.train import pick_device

    cfg.validate()
    dev = pick_device(cfg.device)
    use_gan = "yeh" in cfg.methods
    G = D = model_cfg = None
    if use_gan or cfg.images is None:
        try:
            model_cfg, G, D, _ = load_models(cfg.generator, cfg.discriminator, device=dev,
                                             need_discriminator=use_gan and cfg.lam > 0)
        except InvganError:
            if use_gan:
                raise
    x, ids, source = select_images(cfg.images, cfg.num_images, G, model_cfg, dev, cfg.seed, "data", cfg.notes)
    n, (C, H, W) = len(ids), tuple(x.shape[1:])
    if use_gan and (model_cfg.image_size, model_cfg.channels) != (H, C):
        raise InvganError(f"the generator makes {model_cfg.image_size}px images; the inputs are {H}px")
    masks = make_masks(cfg.mask, n, H, seed=cfg.seed + 3, hole=cfg.hole, fraction=cfg.fraction,
                       side=cfg.side, path=cfg.mask_file).to(dev)
    physics = Inpainting(masks, (C, H, W)).to(dev)
    y = physics.A(x)
    hole = 1 - masks
    missing = hole.flatten(1).mean(1).cpu().numpy()
    mask_name = describe(cfg.mask, cfg.hole, cfg.fraction, cfg.side, cfg.mask_file, H)

    recon, settings, seconds, resumed = {}, {}, {}, 0.0
    for method in cfg.methods:
        t0 = time.time()
        if method == "yeh":
            state = SolveState(Path(state_dir) / "yeh.pt") if state_dir is not None else None
            r = yeh_inpaint(y, physics, G, D, model_cfg, lam=cfg.lam, prior=cfg.prior, window=cfg.window,
                            restarts=cfg.restarts, iters=cfg.iters, lr=cfg.lr, z_clip=cfg.z_clip,
                            seed=cfg.seed + 2, progress=progress, state=state)
            resumed += state.carried if state else 0.0
            t_fit = time.time() - t0 + (state.carried if state else 0.0)
            for b in cfg.blends:
                t1 = time.time()
                recon[f"yeh+{b}"] = blend(r.x, y, masks, b)
                seconds[f"yeh+{b}"] = (t_fit + time.time() - t1) / n
            recon["generated"] = r.x
            settings["yeh"] = {k: getattr(cfg, k) for k in ("lam", "prior", "window", "iters", "restarts", "lr", "z_clip")}
            settings["yeh"]["final_loss_mean"] = float(r.objective.mean())
        else:
            f = biharmonic_inpaint if method == "biharmonic" else tv_inpaint
            recon[method] = f(y, physics, progress=progress)
            seconds[method] = (time.time() - t0) / n

    rows = []
    for name in cfg.method_names():
        xh = recon[name].clamp(-1, 1)
        recon[name] = xh
        mse, mse_h = mse_per_image(xh, x), mse_per_image(xh, x, hole)
        vals = {"mse": mse, "psnr": psnr_from_mse(mse), "ssim": ssim_per_image(xh, x),
                "mse_hole": mse_h, "psnr_hole": psnr_from_mse(mse_h), "ssim_hole": ssim_per_image(xh, x, hole)}
        for i, img_id in enumerate(ids):
            rows.append({"id": img_id, "method": name, "mask": cfg.mask, "mask_description": mask_name,
                         "missing_fraction": float(missing[i]),
                         **{k: float(v[i]) for k, v in vals.items()}, "seconds": seconds[name]})
    summary = {}
    for name in cfg.method_names():
        mr = [r for r in rows if r["method"] == name]
        summary[name] = {k: summarize([r[k] for r in mr]) for k in METRICS}
        summary[name]["seconds_per_image"] = mr[0]["seconds"]
    conf = {k: v for k, v in asdict(cfg).items() if k != "notes"}
    conf.update(ids=list(ids), mask_description=mask_name, image_source=source, num_images=n, device=str(dev),
                missing_fraction_mean=float(missing.mean()), method_settings=settings,
                generator=str(cfg.generator or ("shipped default" if G is not None else None)))
    result = {"config": conf, "notes": list(cfg.notes), "summary": summary, "rows": rows}
    if resumed:
        result["resumed_seconds"] = resumed  # solve time of earlier, interrupted runs
    if verbose:
        for note in cfg.notes:
            print(f"note: {note}")
        print(format_table(result))
    if out_dir is not None:
        write_outputs(result, x.cpu(), y.cpu(), masks.cpu(), {k: v.cpu() for k, v in recon.items()}, out_dir,
                      cfg.grid_images)
        if verbose:
            print(f"wrote {out_dir}/metrics.json, results.csv, masks.npy, grid.png")
    if keep_images:
        result["images"] = {"original": x.cpu(), "masked": y.cpu(),
                            **{k: v.cpu() for k, v in recon.items() if k in result["summary"]}}
    return result


def format_table(result: dict) -> str:
    c = result["config"]
    lines = [f"inpainting, mask {c['mask_description']} ({c['missing_fraction_mean']:.0%} missing), "
             f"{c['num_images']} images ({c['image_source']})",
             f"{'method':14s} {'PSNR hole':>15s} {'SSIM hole':>15s} {'PSNR all':>15s} {'SSIM all':>15s} {'s/image':>8s}"]
    for name, s in result["summary"].items():
        cells = [f"{s[k]['mean']:{'7.2f' if 'psnr' in k else '7.3f'}} +- {s[k]['ci95']:{'.2f' if 'psnr' in k else '.3f'}}"
                 for k in ("psnr_hole", "ssim_hole", "psnr", "ssim")]
        lines.append(f"{name:14s} " + " ".join(f"{c_:>15s}" for c_ in cells) + f" {s['seconds_per_image']:8.2f}")
    return "\n".join(lines)


def write_outputs(result, x, y, masks, recon, out_dir, grid_images=8):
    import matplotlib.pyplot as plt

    from invgan.cs import image_grid_figure, write_rows_csv
    from invgan.fileio import atomic_path, save_figure, write_images_npz, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result)
    write_rows_csv(result["rows"], out / "results.csv", ROW_FIELDS)
    with atomic_path(out / "masks.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, masks[:, 0].numpy().astype(np.uint8))
    rows = [("original", x), ("masked", y)]  # missing pixels show as grey (0)
    if "generated" in recon:
        rows.append(("generated", recon["generated"].clamp(-1, 1)))
    rows += [(name, recon[name]) for name in result["summary"]]
    write_images_npz(out / "images.npz", dict(rows), result["config"]["ids"])
    fig = image_grid_figure(rows, grid_images)
    save_figure(fig, out / "grid.png", dpi=100)
    plt.close(fig)
