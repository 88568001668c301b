"""The compressed-sensing experiment behind `invgan cs`: images -> measurements -> methods -> metrics.

Methods: "dcgan" (CSGM, lambda 0, 2 restarts), "dcgan-reg" (CSGM, lambda 0.001, 10 restarts),
"lasso-dct" (alpha 0.1), "lasso-wavelet" (alpha 1e-5): the paper's settings unless overridden.
Outputs in the run folder: metrics.json (config, per-image rows, per-method summary),
results.csv (the rows), images.npz (uint8 (N, H, W, 3) arrays: ids, original and one per method)
and grid.png (originals on top, one row per method).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from invgan import InvganError
from invgan.csgm import BUDGETS, PAPER_SETTINGS, csgm_reconstruct
from invgan.fileio import atomic_path, save_figure, write_images_npz, write_json
from invgan.lasso import PAPER_ALPHA, lasso_fista
from invgan.metrics import mse_per_image, psnr_from_mse, ssim_per_image, summarize
from invgan.physics import make_physics
from invgan.resume import SolveState

METHODS = ("dcgan", "dcgan-reg", "lasso-dct", "lasso-wavelet")
DEFAULT_METHODS = ("dcgan", "lasso-dct", "lasso-wavelet")
ROW_FIELDS = ["id", "method", "measurement", "m", "noise_std", "mse", "psnr", "ssim", "seconds"]


@dataclass
class CSConfig:
    measurements: int | None = 500
    measurement: str = "gaussian"
    methods: tuple = DEFAULT_METHODS
    images: str | None = None
    input: str = "data"              # "data" or "gen-span"
    num_images: int = 64
    noise_std: float = 0.01
    iters: int | None = None         # None: the method's paper value
    restarts: int | None = None
    lr: float | None = None
    z_prior: float | None = None
    z_clip: float | None = None
    lasso_tol: float = 1e-5
    budget: str = "paper"            # CSGM work: "paper" (fixed budget) or "fast" (restart pruning)
    superres_factor: int = 4
    generator: str | None = None
    seed: int = 0
    device: str | None = None
    grid_images: int = 8
    notes: list = field(default_factory=list)

    def validate(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise InvganError(f"unknown method {bad[0]!r}: choose from {', '.join(METHODS)}")
        if not self.methods:
            raise InvganError("no method given")
        if self.input not in ("data", "gen-span"):
            raise InvganError(f"unknown input {self.input!r}: use data or gen-span")
        if self.num_images < 1:
            raise InvganError(f"num-images must be >= 1, got {self.num_images}")
        if self.noise_std < 0:
            raise InvganError(f"noise-std must be >= 0, got {self.noise_std}")
        if self.budget not in BUDGETS:
            raise InvganError(f"unknown budget {self.budget!r}: use {' or '.join(BUDGETS)}")


def needs_generator(cfg: CSConfig) -> bool:
    return cfg.input == "gen-span" or any(m.startswith("dcgan") for m in cfg.methods)


def demo_images(n: int, G, model_cfg, seed: int, device) -> tuple[torch.Tensor, list[str]]:
    """The built-in demo set: scikit-image's astronaut face (64x64), then generator samples."""
    from PIL import Image
    from skimage import data as skdata

    from invgan.data import to_tensor
    from invgan.models import sample_latent

    face = Image.fromarray(skdata.astronaut()[10:230, 130:350]).resize((64, 64), Image.BILINEAR)
    x = to_tensor(np.asarray(face)[None]).to(device)
    ids = ["astronaut"]
    if n > 1:
        if G is None:
            raise InvganError("the demo set needs a generator for its samples; pass --images")
        z = sample_latent(n - 1, model_cfg, torch.Generator().manual_seed(seed + 7)).to(device)
        with torch.no_grad():
            x = torch.cat([x, G(z)])
        ids += [f"sample-{i}" for i in range(n - 1)]
    return x, ids


def select_images(images, num_images: int, G, model_cfg, device, seed: int = 0, input: str = "data",
                  notes: list | None = None):
    """The experiment's images: (x (N, 3, 64, 64) in [-1, 1], ids, source description).

    ``images`` None: CelebA's test partition (else val), lowest ids; without CelebA, the built-in
    demo set. ``input`` "gen-span": N generator samples instead. Notes for the user go to ``notes``.
    """
    from invgan.data import default_celeba_root, is_celeba, load_images, read_partition_file
    from invgan.models import sample_latent

    notes = [] if notes is None else notes
    if input == "gen-span":
        z = sample_latent(num_images, model_cfg, torch.Generator().manual_seed(seed + 7)).to(device)
        with torch.no_grad():
            x = G(z)
        return x, [f"gen-{i}" for i in range(num_images)], "generator samples (gen-span)"
    spec = images
    if spec is None:
        spec = default_celeba_root()
        if spec is None or not is_celeba(spec):
            notes.append("no CelebA found (set INVGAN_CELEBA): using the built-in demo set "
                         "(scikit-image astronaut + generator samples)")
            x, ids = demo_images(num_images, G, model_cfg, seed, device)
            return x, ids, "demo"
    if is_celeba(Path(spec)):
        parts = set(read_partition_file(Path(spec)).values())
        partition = "test" if 2 in parts else "val"
        data = load_images(spec, partition=partition, limit=num_images, progress=False)
        source = f"CelebA {partition} partition, {len(data)} lowest ids ({spec})"
    else:
        data = load_images(spec, limit=num_images, progress=False)
        source = f"images at {spec}"
    for name, why in data.skipped:
        notes.append(f"skipped {name}: {why}")
    return data.tensor().to(device), list(data.ids), source


def run_method(method: str, y, physics, cfg: CSConfig, G, model_cfg, progress: bool, state=None):
    if method.startswith("dcgan"):
        s = dict(PAPER_SETTINGS[method])
        for k in ("iters", "restarts", "lr", "z_prior"):
            if getattr(cfg, k) is not None:
                s[k] = getattr(cfg, k)
        prune = BUDGETS[cfg.budget][method]
        r = csgm_reconstruct(y, physics, G, model_cfg, z_prior=s["z_prior"], restarts=s["restarts"],
                             iters=s["iters"], lr=s["lr"], z_clip=cfg.z_clip, seed=cfg.seed + 2,
                             progress=progress, state=state, prune=prune)
        s.update(budget=cfg.budget, prune=[list(p) for p in prune],
                 latent_steps_per_image=r.latent_steps)
        return r.x, s
    basis = method.split("-", 1)[1]
    r = lasso_fista(y, physics, basis, img_shape=tuple(physics.img_shape), tol=cfg.lasso_tol,
                    progress=progress, state=state)
    return r.x, {"alpha": PAPER_ALPHA[basis], "tol": cfg.lasso_tol, "iterations": r.iterations,
                 "image_iterations_mean": float(r.image_iterations.float().mean()),
                 "max_rel_gap": float(r.gap.max())}


def run_cs(cfg: CSConfig, out_dir=None, progress: bool = True, verbose: bool = True,
           keep_images: bool = False, state_dir=None) -> dict:
    """Run the experiment; write outputs to ``out_dir`` if given; return the metrics dict.

    ``keep_images``: also return the images under "images" ({"original": x, method: x_hat}, CPU tensors).
    ``state_dir``: each method saves its solver state there as it runs (STATE_DIR/<method>.pt) and
    resumes from it; the reported time then includes the time the saved state stands for.
    """
    from tqdm import tqdm

    from invgan.checkpoint import load_models
    from invgan.train import pick_device

    cfg.validate()
    dev = pick_device(cfg.device)
    G, model_cfg, meta = None, None, {}
    if needs_generator(cfg) or cfg.images is None:
        try:
            model_cfg, G, _, meta = load_models(cfg.generator, device=dev)
        except InvganError:
            if needs_generator(cfg):
                raise
    x, ids, source = select_images(cfg.images, cfg.num_images, G, model_cfg, dev, cfg.seed, cfg.input, cfg.notes)
    img_shape = tuple(x.shape[1:])
    if model_cfg is not None and needs_generator(cfg) and (model_cfg.image_size, model_cfg.channels) != (img_shape[1], img_shape[0]):
        raise InvganError(f"the generator makes {model_cfg.image_size}px images; the inputs are {img_shape[1]}px")
    physics = make_physics(cfg.measurement, cfg.measurements, img_shape, cfg.noise_std, cfg.seed,
                           cfg.superres_factor, dev)
    y = physics(x, torch.Generator().manual_seed(cfg.seed + 1))

    rows, recon, settings, resumed = [], {}, {}, 0.0
    for method in tqdm(cfg.methods, desc="methods", disable=not progress or len(cfg.methods) == 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        state = SolveState(Path(state_dir) / f"{method}.pt") if state_dir is not None else None
        x_hat, settings[method] = run_method(method, y, physics, cfg, G, model_cfg, progress, state)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        resumed += state.carried if state else 0.0
        secs = (time.time() - t0 + (state.carried if state else 0.0)) / len(ids)
        recon[method] = x_hat.detach().cpu()
        mse = mse_per_image(x_hat, x)
        psnr, ssim = psnr_from_mse(mse), ssim_per_image(x_hat, x)
        for i, name in enumerate(ids):
            rows.append({"id": name, "method": method, "measurement": cfg.measurement, "m": physics.m,
                         "noise_std": cfg.noise_std, "mse": float(mse[i]), "psnr": float(psnr[i]),
                         "ssim": float(ssim[i]), "seconds": secs})
    summary = {}
    for method in cfg.methods:
        mr = [r for r in rows if r["method"] == method]
        summary[method] = {k: summarize([r[k] for r in mr]) for k in ("mse", "psnr", "ssim")}
        summary[method]["seconds_per_image"] = mr[0]["seconds"]
    conf = {k: v for k, v in asdict(cfg).items() if k != "notes"}
    conf.update(m=physics.m, image_source=source, num_images=len(ids), device=str(dev),
                generator=str(cfg.generator or ("shipped default" if G is not None else None)),
                method_settings=settings)
    result = {"config": conf, "notes": list(cfg.notes), "summary": summary, "rows": rows}
    if resumed:
        result["resumed_seconds"] = resumed  # solve time of earlier, interrupted runs
    if verbose:
        for note in cfg.notes:
            print(f"note: {note}")
        print(format_table(result))
    if out_dir is not None:
        write_outputs(result, x.cpu(), recon, ids, out_dir, cfg.grid_images)
        if verbose:
            print(f"wrote {out_dir}/metrics.json, results.csv, images.npz, grid.png")
    if keep_images:
        result["images"] = {"original": x.cpu(), **recon}
    return result


def format_table(result: dict) -> str:
    c = result["config"]
    lines = [f"{c['measurement']} measurements, m = {c['m']}, noise std {c['noise_std']}, "
             f"{c['num_images']} images ({c['image_source']})",
             f"{'method':15s} {'MSE/pixel':>20s} {'PSNR dB':>14s} {'SSIM':>14s} {'s/image':>9s}"]
    for method, s in result["summary"].items():
        lines.append(f"{method:15s} {s['mse']['mean']:10.5f} +- {s['mse']['ci95']:.5f} "
                     f"{s['psnr']['mean']:7.2f} +- {s['psnr']['ci95']:.2f} "
                     f"{s['ssim']['mean']:6.3f} +- {s['ssim']['ci95']:.3f} {s['seconds_per_image']:9.3f}")
    return "\n".join(lines)


def write_rows_csv(rows: list[dict], path, fields=ROW_FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def image_grid_figure(rows: list[tuple[str, torch.Tensor]], ncols: int):
    """Figure with one labelled row per (label, images (N, 3, H, W) in [-1, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, rows[0][1].shape[0]))
    label_w = 0.3 + 0.075 * max(len(line) for label, _ in rows for line in label.splitlines())  # inches for the row labels
    width = 1.2 * ncols + label_w
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width, 1.25 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.imshow(((imgs[c].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(left=label_w / width, right=0.99, top=0.99, bottom=0.01, wspace=0.04, hspace=0.04)
    return fig


def write_outputs(result, x, recon, ids, out_dir, grid_images):
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result)
    write_rows_csv(result["rows"], out / "results.csv")
    write_images_npz(out / "images.npz", {"original": x, **recon}, ids)
    fig = image_grid_figure([("original", x)] + [(m, r) for m, r in recon.items()], grid_images)
    save_figure(fig, out / "grid.png", dpi=100)
    plt.close(fig)
