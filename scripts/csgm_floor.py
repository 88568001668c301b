"""The least time a sweep recipe's CSGM cells can take on a machine: generator passes x FLOPs per pass / peak.

    python scripts/csgm_floor.py --recipe recipes/cs_paper.toml
        (the peak: the best float32 GEMM rate this process measures now, the most a pass could run at)
    python scripts/csgm_floor.py --recipe recipes/cs_paper.toml --peak 190
        (a peak given in GFLOP/s: 190 is the brief's AMD EPYC, 2 cores, AVX2 + FMA)
    python scripts/csgm_floor.py --recipe recipes/cs_paper.toml --sweep runs/sweeps/cs_paper
        (and, for each finished cell in that folder, its measured seconds and the rate they imply)

Every cell's settings are the ones the sweep runs (``make_method`` and ``settings_for`` on the cell's own
operator), so the recipe's budget ("auto": the paper's Adam budget below m = 500, L-BFGS from there)
decides the passes. A pass is one forward and one backward (to the latent) of every latent of a restart;
its FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the shipped generator and the
cell's operator (convolutions and matrix products; the elementwise work is not counted, so the floor is
a lower bound). Only the CSGM methods (dcgan, dcgan-reg) are counted; the Lasso cells have no such
floor and are left out.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from invgan.cs import CSExperiment
from invgan.errors import InvganError
from invgan.csgm import AUTO_FROM_M, csgm_objective, prune_schedule_work
from invgan.generators import as_generator, frozen
from invgan.latent import lbfgs_prune_work
from invgan.methods import CSGM, make_method
from invgan.runtime import keep_freed_memory
from invgan.sweep import cell_config, read_sweep_recipe
from invgan.sweepfiles import cell_name, cells


def passes_per_image(settings: dict) -> int:
    """Generator passes per image (all restarts) of CSGM ``settings`` (as ``CSGM.settings_for`` gives them):
    what a run records as ``latent_steps_per_image``."""
    if settings["optimizer"] == "lbfgs":
        return lbfgs_prune_work(settings["restarts"], settings["iters"], settings["prune"])
    return prune_schedule_work(settings["restarts"], settings["iters"], settings["prune"])


def _frozen_latents(generator, latents: int, fuse: bool = True):
    """The frozen eval-mode copy of G that CSGM and Yeh optimise through (no gradients to its weights),
    and ``latents`` latents from its prior that require gradients. ``fuse=False``: without the faster
    layer forms (``invgan.fused``), whose FLOPs are not the model's (the counts use the model's)."""
    gen = as_generator(generator)
    return frozen(gen.module, fuse=fuse), gen.sample(latents, torch.Generator().manual_seed(0)).requires_grad_(True)


def flops_per_pass(generator, physics, z_reg: float, latents: int = 4) -> float:
    """FLOPs of one pass for one latent: G(z), the objective, and its gradient to z."""
    net, z = _frozen_latents(generator, latents, fuse=False)
    with torch.no_grad():
        y = physics(net(z))
    with FlopCounterMode(display=False) as counter:
        csgm_objective(y, physics, net(z), z, z_reg).sum().backward()
    return counter.get_total_flops() / latents


def pass_rate(generator, physics, z_reg: float, latents: int, flops: float, repeat: int = 3) -> float:
    """The best rate (GFLOP/s) of ``repeat`` passes of ``latents`` latents at once (as a cell batches its
    images' restarts); ``flops``: one latent's pass (``flops_per_pass``)."""
    net, z = _frozen_latents(generator, latents)
    with torch.no_grad():
        y = physics(net(z))
    best = 0.0
    for i in range(repeat + 1):
        t = time.perf_counter()
        torch.autograd.grad(csgm_objective(y, physics, net(z), z, z_reg).sum(), z)
        if i:  # the first warms up
            best = max(best, flops * latents / (time.perf_counter() - t) / 1e9)
    return best


def yeh_flops_per_pass(generator, discriminator, img_shape, latents: int = 4) -> float:
    """FLOPs of one pass of Yeh et al.'s latent search for one latent (the paper's loss: G(z), the
    importance-weighted context loss, lam log(1 - D(G(z))), and the gradient to z), centre mask."""
    from invgan.masks import make_masks
    from invgan.yeh import PAPER_SETTINGS, importance_weights, yeh_objective

    (net, z), D = _frozen_latents(generator, latents, fuse=False), frozen(discriminator, fuse=False)
    masks = make_masks("center", latents, tuple(img_shape[1:]), seed=0)
    weights = importance_weights(masks, PAPER_SETTINGS["window"])
    with torch.no_grad():
        y = net(z) * masks
    with FlopCounterMode(display=False) as counter:
        yeh_objective(y, weights, D, net(z), PAPER_SETTINGS["lam"]).sum().backward()
    return counter.get_total_flops() / latents


def inpaint_floor(peak: float, num_images: int = 64) -> list:
    """Rows for ``invgan inpaint``'s budgets (the shipped G and D, ``num_images`` faces, one restart)."""
    from invgan.checkpoint import load_models
    from invgan.yeh import BUDGETS, budget_settings

    _, G, D, _ = load_models(need_discriminator=True)
    G = as_generator(G)
    flops = yeh_flops_per_pass(G, D, G.image_shape)
    rows = []
    for budget in BUDGETS:
        s = budget_settings(budget)
        passes = s["restarts"] * s["iters"]
        total = num_images * passes * flops
        rows.append({"budget": budget, "optimizer": s.get("optimizer", "adam"), "passes_per_image": passes,
                     "gflop_per_pass": flops / 1e9, "tflop": total / 1e12, "floor_seconds": total / (peak * 1e9)})
        print(f"invgan inpaint --budget {budget}: {passes} passes per image x {flops / 1e9:.3f} GFLOP (G and D) "
              f"x {num_images} faces = {total / 1e12:.1f} TFLOP, floor {total / (peak * 1e9):.0f} s")
    return rows


def gemm_rate(size: int = 4096, repeat: int = 5) -> float:
    """The best float32 GEMM rate (GFLOP/s) of ``repeat`` products of two size x size matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * size ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def measured_cell(sweep: Path, cell: dict):
    """(seconds, passes per image) of a finished cell of a sweep folder, or None."""
    path = sweep / "cells" / f"{cell_name(cell)}.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    details = res.get("config", {}).get("method_settings", {}).get(cell["method"], {})
    return float(res["seconds"]), details.get("latent_steps_per_image")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/cs_paper.toml")
    ap.add_argument("--peak", type=float, help="GFLOP/s (default: the best float32 GEMM rate measured now)")
    ap.add_argument("--sweep", type=Path, help="a sweep folder of this recipe: compare with its finished cells")
    ap.add_argument("--rate", action="store_true",
                    help="also time one pass of each CSGM method's batch (restarts x images) at the grid's first m")
    ap.add_argument("--inpaint", action="store_true", help="also count `invgan inpaint`'s budgets (64 faces)")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    keep_freed_memory()  # as the invgan command and its sweep workers do: passes time as they run there
    recipe = read_sweep_recipe(args.recipe)
    if recipe["experiment"] != "cs":
        sys.exit("csgm_floor.py: only cs recipes (compressed sensing) are counted")
    from invgan.experiment import load_networks
    from invgan.physics import make_physics

    G, _, _ = load_networks(recipe["settings"].get("generator"), None, True, False, True, torch.device("cpu"))
    peak = args.peak or gemm_rate()
    print(f"peak: {peak:.0f} GFLOP/s ({'given' if args.peak else 'float32 GEMM, measured now'}), "
          f"{torch.get_num_threads()} threads")
    rows, flops_at, rates = [], {}, {}
    for cell in cells(recipe):
        cfg = cell_config(recipe, cell)
        context = CSExperiment(cfg).method_context()  # the cell's budget and overrides, as the sweep builds it
        method = make_method(cell["method"], "cs", **context, generator=G, seed=cfg.seed + 2)
        if not isinstance(method, CSGM):
            continue
        physics = make_physics(cfg.physics, tuple(G.image_shape), cfg.measurements, cfg.noise_std, cfg.seed,
                               cfg.superres_factor)
        s = method.settings_for(physics)
        key = (physics.m, s["z_reg"])
        if key not in flops_at:
            flops_at[key] = flops_per_pass(G, physics, s["z_reg"])
        if args.rate and cell["method"] not in rates:
            latents = s["restarts"] * cfg.num_images
            rates[cell["method"]] = {"m": physics.m, "latents": latents,
                                     "gflops": pass_rate(G, physics, s["z_reg"], latents, flops_at[key])}
            print(f"{cell['method']}: a pass of {latents} latents at m = {physics.m} ran at "
                  f"{rates[cell['method']]['gflops']:.0f} GFLOP/s ({100 * rates[cell['method']]['gflops'] / peak:.0f}% "
                  "of the peak)", flush=True)
        passes = passes_per_image(s)
        total = cfg.num_images * passes * flops_at[key]
        row = {"cell": cell_name(cell), "method": cell["method"], "m": physics.m,
               "optimizer": s["optimizer"], "passes_per_image": passes, "gflop_per_pass": flops_at[key] / 1e9,
               "tflop": total / 1e12, "floor_seconds": total / (peak * 1e9)}
        if args.sweep is not None:
            got = measured_cell(args.sweep, cell)
            if got is not None:
                row["seconds"], row["recorded_passes_per_image"] = got
                row["gflops"] = total / got[0] / 1e9
        rows.append(row)
        print(f"{row['method']:>10} m = {row['m']:>5}: {s['optimizer']:>5}, {passes:>5} passes per image x "
              f"{row['gflop_per_pass']:.3f} GFLOP = {row['tflop']:6.1f} TFLOP, floor {row['floor_seconds']:6.0f} s"
              + (f"; measured {row['seconds']:.0f} s ({row['gflops']:.0f} GFLOP/s)" if "seconds" in row else "")
              + (f" [the cell recorded {row['recorded_passes_per_image']} passes per image: another recipe or "
                 "code version?]" if row.get("recorded_passes_per_image") not in (None, passes) else ""),
              flush=True)
    floor = sum(r["floor_seconds"] for r in rows)
    print(f"CSGM cells: {len(rows)}, {sum(r['tflop'] for r in rows):.0f} TFLOP, floor {floor / 60:.1f} min at "
          f"{peak:.0f} GFLOP/s")
    for method in sorted({r["method"] for r in rows}):
        for below in (True, False):
            part = [r for r in rows if r["method"] == method and (r["m"] < AUTO_FROM_M) == below]
            if part:
                print(f"  {method}, m {'<' if below else '>='} {AUTO_FROM_M}: {len(part)} cells, floor "
                      f"{sum(r['floor_seconds'] for r in part) / 60:.1f} min")
    inpaint = inpaint_floor(peak) if args.inpaint else None
    if args.out is not None:
        from invgan.fileio import write_json

        write_json(args.out, {"command": " ".join(["python", "scripts/csgm_floor.py", *(argv or sys.argv[1:])]),
                              "peak_gflops": peak, "peak_given": args.peak is not None,
                              "threads": torch.get_num_threads(), "rows": rows, "floor_seconds": floor,
                              "pass_rates": rates, "inpaint": inpaint})


if __name__ == "__main__":
    try:
        main()
    except InvganError as exc:  # a bad recipe or path: one line, as the invgan command says it
        sys.exit(f"csgm_floor.py: {exc}")
