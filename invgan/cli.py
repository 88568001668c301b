"""The `invgan` command line. Every user mistake ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from invgan import __version__
from invgan.errors import InvganError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other user error
        self.exit(2, f"invgan: error: {message} (see `{self.prog} --help`)\n")


def _checked(cast, ok, need: str):
    """An argparse type: ``cast`` the text, then require ``ok(value)`` ("must be <need>")."""
    what = "an integer" if cast is int else "a number"

    def parse(text):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {need}, got {v}")
        return v
    return parse


_positive_int = _checked(int, lambda v: v >= 1, ">= 1")
_nonneg_float = _checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
_positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_window = _checked(int, lambda v: v >= 1 and v % 2 == 1, "odd and >= 1")
_fraction = _checked(float, lambda v: 0 < v < 1, "strictly between 0 and 1")


# ----------------------------------------------------------------------------- data
def cmd_data(args):
    from invgan.data import describe_celeba, is_celeba, load_images

    path = args.path
    if path is None:
        from invgan.data import CELEBA_ENV, default_celeba_root

        path = default_celeba_root()
        if path is None:
            raise InvganError(f"no CelebA folder found: give PATH or set {CELEBA_ENV}")
    if not Path(path).exists() and not any(c in str(path) for c in "*?["):
        raise InvganError(f"{str(path)!r} does not exist")
    if is_celeba(Path(path)):
        counts = describe_celeba(Path(path))
        print(f"CelebA folder {path}")
        for name, n in counts.items():
            print(f"  {name:5s}: {n:6d} images listed")
        parts = [args.partition] if args.partition != "all" else [p for p, n in counts.items() if n]
    else:
        if args.partition != "all":
            raise InvganError(f"--partition {args.partition} needs a CelebA folder (with list_eval_partition.txt); "
                              f"{str(path)!r} is a plain folder or glob: leave --partition out")
        print(f"image folder / glob {path}")
        parts = ["all"]
    for part in parts:
        s = load_images(path, partition=part, size=args.size, cache_dir=args.cache_dir,
                        progress=not args.quiet)
        print(f"  {part}: {len(s)} usable images cached ({s.images.shape[1]}x{s.images.shape[2]}), "
              f"{len(s.skipped)} skipped")
        for name, why in s.skipped[:20]:
            print(f"    skipped {name}: {why}")
        if len(s.skipped) > 20:
            print(f"    ... and {len(s.skipped) - 20} more")


# ----------------------------------------------------------------------------- train
def cmd_train(args):
    from invgan.models import ModelConfig
    from invgan.train import TrainConfig, read_recipe, train

    settings, model = ({}, {})
    if args.recipe:
        settings, model = read_recipe(args.recipe)
    for name in ("data", "partition", "epochs", "batch_size", "lr", "loss", "n_critic", "seed",
                 "max_steps", "checkpoint_every", "snapshot_every", "limit", "log_every"):
        v = getattr(args, name)
        if v is not None:
            settings[name] = v
    if args.no_amp:
        settings["amp"] = False
    for name in ("nz", "ngf", "ndf", "d_norm", "latent_prior"):
        v = getattr(args, name)
        if v is not None:
            model[name] = v
    if settings.get("loss") == "wgan-gp" and "d_norm" not in model:
        model["d_norm"] = "layer"  # a WGAN-GP critic must not use batch-norm
    cfg = TrainConfig(**settings)
    if cfg.loss == "wgan-gp" and model.get("d_norm") == "batch":
        raise InvganError("WGAN-GP needs a critic without batch-norm: use --d-norm layer or none")
    summary = train(cfg, ModelConfig(**model), args.out, resume=args.resume, device=args.device,
                    progress=not args.quiet, cache_dir=args.cache_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {summary['steps']} steps ({summary['epochs']:.2f} epochs) in "
              f"{summary['seconds']:.1f} s, {summary['images_per_s']:.0f} images/s; "
              f"checkpoint: {summary['checkpoint']}")


# ----------------------------------------------------------------------------- sample
def resolve_checkpoint(path):
    """A run folder stands for its checkpoint.pt."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    return p


def cmd_sample(args):
    import torch

    from invgan.checkpoint import load_models
    from invgan.models import sample_latent
    from invgan.fileio import save_grid
    from invgan.runtime import pick_device

    from invgan.fileio import check_output_file

    check_output_file(args.out, ("png",))
    dev = pick_device(args.device)
    cfg, G, _, _ = load_models(resolve_checkpoint(args.generator), device=dev)
    z = sample_latent(args.n, cfg, torch.Generator().manual_seed(args.seed)).to(dev)
    with torch.no_grad():
        x = G(z)
    save_grid(x, args.out, nrow=args.nrow or max(1, int(round(args.n ** 0.5))))
    print(f"wrote {args.n} samples to {args.out}")


# ----------------------------------------------------------------------------- cs
def cmd_cs(args):
    from invgan.cs import CSConfig, run_cs

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    cfg = CSConfig(measurements=args.measurements, physics=args.physics, methods=methods,
                   images=args.images, input=args.input, num_images=args.num_images,
                   noise_std=args.noise_std, iters=args.iters, restarts=args.restarts, lr=args.lr,
                   z_reg=args.z_reg, z_clip=args.z_clip, lasso_tol=args.lasso_tol, lasso_solver=args.lasso_solver,
                   budget=args.budget,
                   image_size=args.image_size,
                   superres_factor=args.factor, generator=resolve_checkpoint(args.generator),
                   seed=args.seed, device=args.device, grid_images=args.grid_images)
    run_cs(cfg, args.out, progress=not args.quiet)


# ----------------------------------------------------------------------------- inpaint
def _comma_list(text):
    return tuple(t.strip() for t in text.split(",") if t.strip())


def cmd_inpaint(args):
    from invgan.inpaint import InpaintConfig, run_inpaint

    blends = ("poisson", "none") if args.blend == "both" else (args.blend,)
    mask = args.mask or ("file" if args.mask_file else "center")
    if args.mask_file and mask != "file":
        raise InvganError(f"--mask-file goes with --mask file, not --mask {mask}")
    cfg = InpaintConfig(mask=mask, hole=args.hole_size, fraction=args.fraction, side=args.side,
                        mask_file=args.mask_file, methods=_comma_list(args.methods), blends=blends,
                        lam=args.lam, perceptual=args.perceptual, window=args.window, iters=args.iters,
                        image_size=args.image_size,
                        restarts=args.restarts, lr=args.lr, z_clip=args.z_clip, budget=args.budget, images=args.images,
                        num_images=args.num_images, generator=resolve_checkpoint(args.generator),
                        discriminator=resolve_checkpoint(args.discriminator), seed=args.seed,
                        device=args.device, grid_images=args.grid_images)
    run_inpaint(cfg, args.out, progress=not args.quiet)


# ----------------------------------------------------------------------------- sweep / plot
def cmd_sweep(args):
    from invgan.sweep import merge, parse_shard, read_sweep_recipe, run_sweep, run_sweep_jobs

    recipe = read_sweep_recipe(args.recipe, {"num_images": args.num_images, "images": args.images,
                                             "budget": args.budget, "lasso_tol": args.lasso_tol})
    out = Path(args.out or Path("runs") / "sweeps" / recipe["name"])
    if args.merge_only:
        if not (out / "sweep.json").is_file():
            raise InvganError(f"{str(out)!r} holds no sweep to merge")
        res = merge(out)
    else:
        methods = _comma_list(args.methods) if args.methods else None
        if args.jobs > 1:
            res = run_sweep_jobs(recipe, out, args.jobs, parse_shard(args.shard), args.device,
                                 progress=not args.quiet, methods=methods, order=args.order)
        else:
            res = run_sweep(recipe, out, parse_shard(args.shard), args.device, progress=not args.quiet,
                            methods=methods, order=args.order)
    print(f"{res['cells_done']} of {res['cells_done'] + len(res['cells_missing'])} cells done "
          f"({res['cell_seconds_total']:.0f} s of cell time); results: {out}/results.csv, results.json")


def cmd_plot(args):
    from invgan.plots import plot

    methods = _comma_list(args.methods) if args.methods else None
    what = plot(args.results, args.out, args.kind, args.x, args.metric, methods, args.logy, args.ncols)
    print(f"wrote {args.out} ({what})")


# ----------------------------------------------------------------------------- parser
def _data_parser(sub) -> None:
    """`invgan data`."""
    d = sub.add_parser("data", help="inspect a dataset and fill the decoded-image cache")
    d.add_argument("path", nargs="?", help="CelebA folder, image folder or glob (default: $INVGAN_CELEBA)")
    d.add_argument("--partition", default="all", choices=["train", "val", "test", "all"])
    d.add_argument("--size", type=_positive_int, default=64)
    d.add_argument("--cache-dir", help="where decoded images are cached (default $INVGAN_CACHE or ~/.cache/invgan)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_data)


def _train_parser(sub) -> None:
    """`invgan train`."""
    t = sub.add_parser("train", help="train a DCGAN generator and discriminator")
    t.add_argument("--data", help="CelebA folder, image folder or glob (default: $INVGAN_CELEBA)")
    t.add_argument("--out", required=True, help="run folder (checkpoint, log.csv, samples)")
    t.add_argument("--recipe", help="TOML file with training settings (flags override it)")
    t.add_argument("--partition", choices=["train", "val", "test", "all"])
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--lr", type=_positive_float)
    t.add_argument("--loss", choices=["nonsaturating", "wgan-gp"])
    t.add_argument("--n-critic", type=_positive_int, help="WGAN-GP critic steps per generator step")
    t.add_argument("--max-steps", type=_positive_int, help="stop after N generator steps")
    t.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints")
    t.add_argument("--snapshot-every", type=int, help="epochs between kept G+D snapshots (0: none)")
    t.add_argument("--log-every", type=_positive_int)
    t.add_argument("--limit", type=_positive_int, help="use only the first N images")
    t.add_argument("--seed", type=int)
    t.add_argument("--nz", type=_positive_int)
    t.add_argument("--ngf", type=_positive_int)
    t.add_argument("--ndf", type=_positive_int)
    t.add_argument("--d-norm", choices=["batch", "layer", "none"])
    t.add_argument("--latent-prior", choices=["normal", "uniform"])
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    t.add_argument("--no-amp", action="store_true", help="no bf16 mixed precision on CUDA")
    t.add_argument("--cache-dir")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)


def _sample_parser(sub) -> None:
    """`invgan sample`."""
    s = sub.add_parser("sample", help="write a grid of generator samples")
    s.add_argument("--generator", help="checkpoint or run folder (default: the shipped model)")
    s.add_argument("--n", type=_positive_int, default=64)
    s.add_argument("--nrow", type=_positive_int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="samples.png")
    s.add_argument("--device")
    s.set_defaults(func=cmd_sample)


def _cs_parser(sub) -> None:
    """`invgan cs`."""
    from invgan.csgm import BUDGETS
    from invgan.lasso import SOLVERS
    from invgan.methods import available_methods
    from invgan.physics import available_physics

    c = sub.add_parser("cs", help="compressed sensing: recover images from few measurements",
                       description="Recover images from y = A x + noise with CSGM (Bora et al. 2017) "
                                   "and Lasso baselines; defaults are the paper's settings, except the latent "
                                   "search from m = 500 on the operators where it was measured (per-latent L-BFGS: the "
                                   "paper's error in 0.32 (DCGAN) and 0.14 (DCGAN+Reg) of the work; --budget paper "
                                   "runs the paper's Adam budget).")
    c.add_argument("--measurements", "-m", type=_positive_int, default=500,
                   help="m, number of Gaussian measurements (1 .. C*H*W: 12288 at 3x64x64)")
    c.add_argument("--physics", default="gaussian",
                   help=f"the operator: {', '.join(available_physics())} (default gaussian)")
    c.add_argument("--methods", default="dcgan,lasso-dct,lasso-wavelet",
                   help=f"comma list of {', '.join(available_methods('cs'))} (default dcgan,lasso-dct,lasso-wavelet)")
    c.add_argument("--images", help="CelebA folder, image folder or glob (default: CelebA test, else val, "
                                    "lowest ids; the built-in demo set without CelebA)")
    c.add_argument("--input", default="data", choices=["data", "gen-span"],
                   help="gen-span: images sampled from the generator")
    c.add_argument("--num-images", type=_positive_int, default=64)
    c.add_argument("--image-size", type=_positive_int, help="image side in pixels (default: the generator's, else 64)")
    c.add_argument("--noise-std", type=_nonneg_float, default=0.01, help="per-measurement noise std (paper: 0.01)")
    c.add_argument("--iters", type=_positive_int, help="Adam iterations (paper: 500); with L-BFGS (the default "
                   "from m = 500, --budget lbfgs) its passes per restart")
    c.add_argument("--restarts", type=_positive_int, help="random restarts (paper: 2; dcgan-reg 10)")
    c.add_argument("--lr", type=_positive_float, help="Adam learning rate (paper: 0.1); with L-BFGS (the default "
                   "from m = 500, --budget lbfgs) the first step's length")
    c.add_argument("--z-reg", type=_nonneg_float, help="lambda of lambda ||z||^2 (paper: 0; dcgan-reg 0.001)")
    c.add_argument("--z-clip", type=_positive_float, help="clip z to [-c, c] after each step")
    c.add_argument("--lasso-tol", type=_positive_float, default=1e-5, help="Lasso relative duality-gap tolerance")
    c.add_argument("--lasso-solver", default="auto", choices=list(SOLVERS),
                   help="auto (default), for a Gaussian A: near basis pursuit (alpha <= 1e-3: the wavelet's) the "
                        "exact homotopy path up to m = 1000 and ADMM above; for larger alpha (the DCT's) the "
                        "homotopy below m = 500 and ADMM from there (FISTA at m = n); FISTA for other operators; "
                        "fista; homotopy; admm (README: Lasso solvers)")
    c.add_argument("--budget", default="auto", choices=list(BUDGETS),
                   help="CSGM work: auto (default: the paper's below m = 500; from m = 500 dcgan by 6 restarts x 30 "
                        "passes of per-latent L-BFGS and the best 2 x 70 more, 0.32 of the paper's work at its "
                        "error, dcgan-reg by 8 x 30 passes, the best 2 x 220 more, 0.14; L-BFGS only on the "
                        "operators where it was measured: gaussian, superres and identity, dcgan's also inpaint), paper (Adam, "
                        "every restart runs "
                        "every iteration), fast (restarts that are behind are dropped early) or lbfgs (2 x 150 "
                        "L-BFGS passes, 0.3 of the work); README: CSGM budgets")
    c.add_argument("--factor", type=_positive_int, default=4, help="super-resolution factor")
    c.add_argument("--generator", help="checkpoint or run folder (default: the shipped CelebA model)")
    _experiment_run_args(c, "runs/cs")
    c.set_defaults(func=cmd_cs)


def _experiment_run_args(p, out: str) -> None:
    """The run arguments `invgan cs` and `invgan inpaint` share: seed, device, grid, output folder."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--grid-images", type=_positive_int, default=8)
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--quiet", action="store_true")


def _inpaint_parser(sub) -> None:
    """`invgan inpaint`."""
    from invgan.methods import available_methods
    from invgan.yeh import BUDGETS as YEH_BUDGETS

    i = sub.add_parser("inpaint", help="semantic inpainting: fill masked pixels",
                       description="Fill the missing pixels of masked images with a GAN (Yeh et al. 2017: "
                                   "context + prior loss over z, then Poisson blending) and classical "
                                   "baselines; defaults are the paper's settings.")
    i.add_argument("--mask", choices=["center", "random", "half", "blob", "file"],
                   help="centre block (default), random pixels, half image, random blobs, or file (--mask-file)")
    i.add_argument("--mask-file", help="mask image (white = known) or .npy (nonzero = known), image-sized")
    i.add_argument("--hole-size", type=_positive_int, help="centre hole side in pixels (default half the image: 32)")
    i.add_argument("--fraction", type=_fraction, help="missing fraction for random (0.8) and blob (0.3, >= 0.25)")
    i.add_argument("--side", default="left", choices=["left", "right", "top", "bottom"], help="half: missing side")
    i.add_argument("--methods", default="yeh,biharmonic,tv",
                   help=f"comma list of {', '.join(available_methods('inpaint'))} (default yeh,biharmonic,tv)")
    i.add_argument("--blend", default="poisson", choices=["poisson", "none", "both"],
                   help="how G(z) enters the hole: Poisson blending, plain composite, or report both")
    i.add_argument("--lam", type=_nonneg_float, default=0.003, help="prior weight lambda (paper: 0.003)")
    i.add_argument("--perceptual", default="paper", choices=["paper", "generator"],
                   help="the perceptual loss: paper: log(1 - D(G(z))); generator: -log D(G(z))")
    i.add_argument("--window", type=_window, default=7, help="importance-weight window (odd; paper: 7)")
    i.add_argument("--iters", type=_positive_int, help="Adam iterations (paper: 1500); with --budget lbfgs, "
                   "L-BFGS passes (300)")
    i.add_argument("--restarts", type=_positive_int, default=1, help="random restarts, batched (default 1)")
    i.add_argument("--lr", type=_positive_float, help="Adam learning rate (paper: 0.01); with --budget lbfgs, "
                   "the first step's length (0.1)")
    i.add_argument("--budget", default="paper", choices=list(YEH_BUDGETS),
                   help="Yeh's latent search: paper (default: 1500 Adam steps) or lbfgs (300 passes of "
                        "per-latent L-BFGS, 0.2 of the work; README: Inpainting budgets)")
    i.add_argument("--z-clip", type=_positive_float, help="clip z to [-c, c] after each step (uniform prior: 1)")
    i.add_argument("--images", help="CelebA folder, image folder or glob (default: CelebA test, else val, "
                                    "lowest ids; the built-in demo set without CelebA)")
    i.add_argument("--num-images", type=_positive_int, default=64)
    i.add_argument("--image-size", type=_positive_int, help="image side in pixels (default: the generator's, else 64)")
    i.add_argument("--generator", help="checkpoint or run folder (default: the shipped CelebA model)")
    i.add_argument("--discriminator", help="checkpoint holding D (default: the generator's file, or the shipped D)")
    _experiment_run_args(i, "runs/inpaint")
    i.set_defaults(func=cmd_inpaint)


def _sweep_parser(sub) -> None:
    """`invgan sweep`."""
    from invgan.csgm import BUDGETS
    from invgan.sweepfiles import ORDERS
    from invgan.yeh import BUDGETS as YEH_BUDGETS

    w = sub.add_parser("sweep", help="run a grid of experiments from a recipe (resumable, shardable)",
                       description="Run every cell (method x grid point) of a sweep recipe; finished cells "
                                   "are kept, so rerunning resumes. Results: OUT/results.csv and results.json.")
    w.add_argument("--recipe", required=True, help="sweep recipe (TOML), e.g. recipes/cs_paper.toml")
    w.add_argument("--out", help="sweep folder (default runs/sweeps/<recipe name>)")
    w.add_argument("--shard", help="i/n: run cells i, i+n, ... (default under torchrun: RANK/WORLD_SIZE)")
    w.add_argument("--jobs", type=_positive_int, default=1,
                   help="worker processes on this machine, sharing the cells as each frees up, with the "
                        "threads divided among them (default 1; README: Scaling)")
    w.add_argument("--num-images", type=_positive_int, help="override the recipe's number of images")
    w.add_argument("--images", help="override the recipe's images")
    w.add_argument("--budget", choices=list(dict.fromkeys([*BUDGETS, *YEH_BUDGETS])),
                   help="override the recipe's latent-search budget: auto, paper, fast or lbfgs for cs sweeps "
                        "(the default auto), paper or lbfgs for inpaint sweeps (the default paper)")
    w.add_argument("--lasso-tol", type=_positive_float,
                   help="override the recipe's Lasso tolerance, the certified relative duality gap (cs sweeps)")
    w.add_argument("--methods", help="run only these of the recipe's methods now (comma list)")
    w.add_argument("--order", choices=ORDERS, default="methods",
                   help="the order cells run in: methods (each method over the whole grid, the default) "
                        "or grid (every method at a grid point before the next point; results are the same)")
    w.add_argument("--device")
    w.add_argument("--merge-only", action="store_true", help="only merge finished cells into results")
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(func=cmd_sweep)


def _plot_parser(sub) -> None:
    """`invgan plot`."""
    f = sub.add_parser("plot", help="plot results: error vs measurements / noise, image grids")
    f.add_argument("results", help="sweep folder, results.json, metrics.json or results.csv")
    f.add_argument("--out", default="fig.png", help="figure file (.png, .pdf, .svg)")
    f.add_argument("--kind", default="auto", choices=["auto", "curve", "grid"])
    f.add_argument("--x", choices=["m", "noise_std"], help="x axis of a curve (default: whichever varies)")
    f.add_argument("--metric", default="mse", choices=["mse", "psnr", "ssim", "mse_hole", "psnr_hole", "ssim_hole"])
    f.add_argument("--methods", help="comma list of methods to show (default all)")
    f.add_argument("--logy", action="store_true")
    f.add_argument("--ncols", type=_positive_int, default=6, help="images per row in grids")
    f.set_defaults(func=cmd_plot)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; method and operator names come from the registries (plugins loaded)."""
    p = _Parser(prog="invgan", description="Imaging inverse problems with pretrained generative models.")
    p.add_argument("--version", action="version", version=f"invgan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _data_parser(sub)
    _train_parser(sub)
    _sample_parser(sub)
    _cs_parser(sub)
    _inpaint_parser(sub)
    _sweep_parser(sub)
    _plot_parser(sub)
    return p


def main(argv=None):
    """Entry point of the `invgan` command."""
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()
    try:
        parser = build_parser()  # may import plugins
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            sys.exit(2)
        args.func(args)
    except InvganError as exc:
        print(f"invgan: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("invgan: interrupted", file=sys.stderr)
        sys.exit(130)
    return 0
