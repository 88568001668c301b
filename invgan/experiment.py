"""The experiment harness shared by `invgan cs` and `invgan inpaint`:
images -> measurements -> methods -> metrics -> outputs.

An ``Experiment`` (``invgan.cs.CSExperiment``, ``invgan.inpaint.InpaintExperiment``) says how to
measure, which metrics to compute and what to write besides the common outputs; ``run_experiment``
does the rest the same way for both: load the models the methods need, pick the images (their
size and channels follow the generator), build every method from the registry
(``invgan.methods``), time each one (with resumable solver state), check its output, score it
per image, summarise, print and write the run folder (metrics.json, results.csv, images.npz,
grid.png).
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from invgan.errors import InvganError
from invgan.fileio import image_grid_figure, save_figure, write_images_npz, write_json, write_rows_csv
from invgan.metrics import summarize
from invgan.resume import SolutionCache, SolveState

DEFAULT_IMAGE_SIZE = 64  # CelebA images without a generator to take the size from


class Experiment:
    """One kind of experiment. Subclasses set ``task``, ``metrics``, ``row_fields`` and define
    ``measure``, ``score``, ``table``; the others have defaults."""

    task = "cs"
    metrics = ("mse", "psnr", "ssim")
    row_fields: list = []

    def __init__(self, cfg):
        self.cfg = cfg

    # what differs between experiments
    def measure(self, x: torch.Tensor, ids, device):
        """(physics, y) for the images x (N, C, H, W)."""
        raise NotImplementedError

    def score(self, x_hat: torch.Tensor, x: torch.Tensor) -> dict:
        """Per-image metric arrays (N,) by name."""
        raise NotImplementedError

    def row_info(self, i: int) -> dict:
        """Extra columns of image i's rows."""
        return {}

    def variants(self, name, rec, y, physics) -> dict:
        """The reported results of one method's ``Reconstruction`` (name -> images)."""
        return {name: rec.x}

    def config_info(self) -> dict:
        """Extra entries of the result's "config"."""
        return {}

    def grid_rows(self, x, y, recon, names) -> list:
        """(label, images) rows of grid.png and images.npz."""
        return [("original", x)] + [(n, recon[n]) for n in names]

    def write_extra(self, out: Path) -> None:
        """Write the experiment's own files into the run folder ``out``."""

    def table(self, result: dict) -> str:
        """The printed summary of ``result``."""
        raise NotImplementedError

    def method_context(self) -> dict:
        """Settings the method builders may use (``invgan.methods``), from the config."""
        return {}

    def load_discriminator(self) -> bool:
        """Whether methods that can use a discriminator need it in this run."""
        return True


def load_networks(generator_path, discriminator_path, need_generator: bool, need_discriminator: bool,
                  want_generator: bool, device):
    """(LatentGenerator or None, D or None, description).

    ``generator_path``: an invgan checkpoint (None: the shipped model), or a generator object
    (``LatentGenerator`` or module, see ``as_generator``) used as is; ``discriminator_path`` likewise
    a checkpoint or an ``nn.Module``. ``want_generator``: load it if available (for the demo set)
    without requiring it."""
    from torch import nn

    from invgan.checkpoint import load_models
    from invgan.generators import LatentGenerator, as_generator

    if isinstance(generator_path, (nn.Module, LatentGenerator)):
        D = discriminator_path if isinstance(discriminator_path, nn.Module) else None
        if need_discriminator and D is None:
            raise InvganError("with a generator object, pass the discriminator as a module too (discriminator)")
        return as_generator(generator_path), D, type(getattr(generator_path, "module", generator_path)).__name__
    if not (need_generator or want_generator):
        return None, None, None
    try:
        _, G, D, _ = load_models(generator_path, discriminator_path, device=device,
                                 need_discriminator=need_discriminator)
    except InvganError:
        if need_generator:
            raise
        return None, None, None
    return as_generator(G), D, str(generator_path or "shipped default")


def expected_image_shape(cfg) -> tuple[int, int, int]:
    """The (C, H, W) a run of ``cfg`` will have, found without loading images or running anything:
    from the generator (object or checkpoint) when the run uses one, else 3 x 64 x 64
    (``cfg.image_size`` overrides the size)."""
    from torch import nn

    from invgan.generators import LatentGenerator, as_generator
    from invgan.methods import method_spec

    shape = (3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    gen = cfg.generator
    if isinstance(gen, (nn.Module, LatentGenerator)):
        shape = tuple(as_generator(gen).image_shape)
    elif torch.is_tensor(cfg.images):
        shape = tuple(cfg.images.shape[1:])
    else:
        task = "inpaint" if hasattr(cfg, "mask") else "cs"
        need = any(method_spec(m, task).needs_generator for m in cfg.methods) or getattr(cfg, "input", "data") == "gen-span"
        if need or cfg.images is None:
            from invgan.checkpoint import DEFAULT_GENERATOR, load_checkpoint
            from invgan.models import ModelConfig

            path = gen if gen is not None else DEFAULT_GENERATOR
            try:
                mc = ModelConfig.from_dict(load_checkpoint(path)["model"])
                shape = (mc.channels, mc.image_size, mc.image_size)
            except (InvganError, KeyError, TypeError):
                if need:
                    raise
    size = cfg.image_size or shape[1]
    return (shape[0], size, size if cfg.image_size else shape[2])


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB (N, 3, H, W) -> grey (N, 1, H, W) with ITU-R 601 weights (as PIL's "L"), or unchanged."""
    if channels == x.shape[1]:
        return x
    if channels == 1 and x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        return (x * w[:, None, None]).sum(1, keepdim=True)
    raise InvganError(f"the generator makes {channels}-channel images; the inputs have {x.shape[1]} channels")


def demo_images(n: int, G, seed: int, device, size: int) -> tuple[torch.Tensor, list[str]]:
    """The built-in demo set: scikit-image's astronaut face, then generator samples."""
    from PIL import Image
    from skimage import data as skdata

    from invgan.data import to_tensor

    face = Image.fromarray(skdata.astronaut()[10:230, 130:350]).resize((size, size), Image.BILINEAR)
    x = to_tensor(np.asarray(face)[None]).to(device)
    ids = ["astronaut"]
    if n > 1:
        if G is None:
            raise InvganError("the demo set needs a generator for its samples; pass images")
        z = G.sample(n - 1, torch.Generator().manual_seed(seed + 7), device)
        with torch.no_grad():
            x = torch.cat([to_channels(x, G.image_shape[0]), G(z)])
        ids += [f"sample-{i}" for i in range(n - 1)]
    return x, ids


def select_images(images, num_images: int, G, device, seed: int = 0, input: str = "data", notes=None,
                  size: int = DEFAULT_IMAGE_SIZE, channels: int = 3):
    """The experiment's images: (x (N, C, H, W) in [-1, 1], ids, source description).

    ``images`` None: CelebA's test partition (else val), lowest ids; without CelebA, the built-in
    demo set. ``input`` "gen-span": N samples of the generator G instead. Images are resized to
    ``size`` and converted to ``channels``. Notes for the user go to ``notes``.
    """
    from invgan.data import default_celeba_root, is_celeba, load_images, read_partition_file

    notes = [] if notes is None else notes
    if torch.is_tensor(images):
        if images.dim() != 4 or not torch.isfinite(images).all():
            raise InvganError(f"images must be a finite tensor (N, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        x = images[:num_images].to(device)
        return to_channels(x, channels), [f"image-{i}" for i in range(len(x))], f"{len(x)} given images"
    if input == "gen-span":
        z = G.sample(num_images, torch.Generator().manual_seed(seed + 7), device)
        with torch.no_grad():
            x = G(z)
        return x, [f"gen-{i}" for i in range(num_images)], "generator samples (gen-span)"
    spec = images
    if spec is None:
        spec = default_celeba_root()
        if spec is None or not is_celeba(spec):
            notes.append("no CelebA found (set INVGAN_CELEBA): using the built-in demo set "
                         "(scikit-image astronaut + generator samples)")
            x, ids = demo_images(num_images, G, seed, device, size)
            return to_channels(x, channels), ids, "demo"
    if is_celeba(Path(spec)):
        parts = set(read_partition_file(Path(spec)).values())
        partition = "test" if 2 in parts else "val"
        data = load_images(spec, partition=partition, size=size, limit=num_images, progress=False)
        source = f"CelebA {partition} partition, {len(data)} lowest ids ({spec})"
    else:
        data = load_images(spec, size=size, limit=num_images, progress=False)
        source = f"images at {spec}"
    for name, why in data.skipped:
        notes.append(f"skipped {name}: {why}")
    return to_channels(data.tensor().to(device), channels), list(data.ids), source


def run_experiment(exp: Experiment, out_dir=None, progress: bool = True, verbose: bool = True,
                   keep_images: bool = False, state_dir=None, cache_dir=None) -> dict:
    """Run ``exp``; write its outputs to ``out_dir`` if given; return the metrics dict.

    ``keep_images``: also return the images under "images" (CPU tensors by name).
    ``state_dir``: each method saves its solver state there as it runs (STATE_DIR/<method>.pt)
    and resumes from it; the reported time then includes the time the saved state stands for.
    ``cache_dir``: finished solves that another method reuses (Sparse-Gen's DCGAN+Reg start) are
    kept there as well as in memory (``invgan.resume.SolutionCache``), so other runs sharing the
    folder reuse them. A method that reuses one reports the seconds its solve took
    ("reused_seconds" in its settings) and they count in its time per image, so a method's time
    is what it costs alone; the result's "reused_seconds" is their sum.
    """
    from tqdm import tqdm

    from invgan.methods import make_method, method_spec
    from invgan.runtime import pick_device

    from invgan.fileio import check_output_dir

    cfg = exp.cfg
    cfg.validate()
    if out_dir is not None:
        check_output_dir(out_dir)
    specs = [method_spec(m, exp.task) for m in cfg.methods]
    dev = pick_device(cfg.device)
    need_g = any(s.needs_generator for s in specs) or getattr(cfg, "input", "data") == "gen-span"
    need_d = any(s.needs_discriminator for s in specs) and exp.load_discriminator()
    G, D, gen_name = load_networks(cfg.generator, getattr(cfg, "discriminator", None), need_g, need_d,
                                   cfg.images is None, dev)
    shape = G.image_shape if G is not None else (
        cfg.images.shape[1] if torch.is_tensor(cfg.images) else 3, cfg.image_size or DEFAULT_IMAGE_SIZE, 0)
    size = cfg.image_size or shape[1]
    if G is not None and need_g and size != shape[1]:
        raise InvganError(f"image_size {size} differs from the generator's {shape[1]}px images")
    x, ids, source = select_images(cfg.images, cfg.num_images, G, dev, cfg.seed, getattr(cfg, "input", "data"),
                                   cfg.notes, size=size, channels=shape[0])
    if need_g and tuple(x.shape[1:]) != tuple(G.image_shape):
        raise InvganError(f"the generator makes {'x'.join(map(str, G.image_shape))} images; "
                          f"the inputs are {'x'.join(map(str, x.shape[1:]))}")
    physics, y = exp.measure(x, ids, dev)
    context = dict(exp.method_context(), generator=G, discriminator=D, seed=cfg.seed + 2)
    methods = {name: make_method(name, exp.task, **context) for name in cfg.methods}
    cache = SolutionCache(cache_dir)
    for method in methods.values():
        if hasattr(method, "use_cache"):
            method.use_cache(cache)
    for method in methods.values():  # every method's settings against this problem, before any runs
        check = getattr(method, "check", None)
        if check is not None:
            check(y, physics)

    recon, settings, seconds, resumed, reused, names = {}, {}, {}, 0.0, 0.0, []
    for name, method in tqdm(methods.items(), desc="methods", disable=not progress or len(methods) == 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        state = SolveState(Path(state_dir) / f"{name}.pt") if state_dir is not None else None
        rec = method(y, physics, state=state, progress=progress)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        carried = state.carried if state else 0.0
        resumed += carried
        settings[name] = rec.details
        took = float(rec.details.get("reused_seconds", 0.0))  # a reused solve's time counts as the method's
        carried += took
        reused += took
        for vname, xv in exp.variants(name, rec, y, physics).items():
            recon[vname] = xv.detach()
            names.append(vname)
            seconds[vname] = (time.time() - t0 + carried) / len(ids)
        if rec.generated is not None and exp.task == "inpaint":
            recon["generated"] = rec.generated.detach()

    rows = []
    for name in names:
        vals = exp.score(recon[name], x)
        for i, img_id in enumerate(ids):
            rows.append({"id": img_id, "method": name, **exp.row_info(i),
                         **{k: float(v[i]) for k, v in vals.items()}, "seconds": seconds[name]})
    summary = {}
    for name in names:
        mr = [r for r in rows if r["method"] == name]
        summary[name] = {k: summarize([r[k] for r in mr]) for k in exp.metrics}
        summary[name]["seconds_per_image"] = mr[0]["seconds"]
    conf = {f.name: _describe(getattr(cfg, f.name)) for f in fields(cfg) if f.name != "notes"}
    conf.update(exp.config_info())
    conf.update(ids=list(ids), image_source=source, num_images=len(ids), device=str(dev),
                image_shape=list(x.shape[1:]), generator=gen_name, method_settings=settings)
    result = {"config": conf, "notes": list(cfg.notes), "summary": summary, "rows": rows}
    if resumed:
        result["resumed_seconds"] = resumed  # solve time of earlier, interrupted runs
    if reused:
        result["reused_seconds"] = reused  # solve time of results reused from the cache (not spent here)
    if verbose:
        for note in cfg.notes:
            print(f"note: {note}")
        print(exp.table(result))
    images = {"original": x.cpu(), **({"masked": y.cpu()} if exp.task == "inpaint" else {}),
              **{k: v.cpu() for k, v in recon.items()}}
    if out_dir is not None:
        write_outputs(exp, result, images, names, out_dir, cfg.grid_images)
        if verbose:
            print(f"wrote {out_dir}/metrics.json, results.csv, images.npz, grid.png")
    if keep_images:
        result["images"] = {k: v for k, v in images.items() if k != "generated"}
    return result


def _describe(v):
    """A config value as JSON-ready data (objects such as tensors or modules by their type)."""
    if torch.is_tensor(v):
        return f"tensor {tuple(v.shape)}"
    if v is None or isinstance(v, (str, int, float, bool, list, tuple, dict)):
        return v
    return type(getattr(v, "module", v)).__name__


def write_outputs(exp: Experiment, result: dict, images: dict, names, out_dir, grid_images: int) -> None:
    """The run folder: metrics.json, results.csv, images.npz (uint8), grid.png, plus the
    experiment's own files.

    All are written into a hidden staging folder first and then renamed into place, metrics.json
    last: an interrupted run leaves the folder as it was (a staging folder left by a killed run
    is removed by the next one), and a metrics.json always sits beside the complete outputs of
    its own run."""
    import os
    import shutil

    from invgan.fileio import remove_stale_staging

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    stage = out / f".staging.{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        write_rows_csv(result["rows"], stage / "results.csv", exp.row_fields)
        exp.write_extra(stage)
        rows = exp.grid_rows(images["original"], images.get("masked"), images, names)
        write_images_npz(stage / "images.npz", dict(rows), result["config"]["ids"])
        save_figure(image_grid_figure(rows, grid_images), stage / "grid.png", dpi=100)
        write_json(stage / "metrics.json", result)
        (out / "metrics.json").unlink(missing_ok=True)  # the old run's marker goes before its files change
        for f in sorted(stage.iterdir(), key=lambda p: p.name == "metrics.json"):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
