"""Record CSGM's paper-budget run latent by latent, then replay restart-pruning schedules on it.

Every latent of a CSGM batch is optimised independently (eval-mode G, per-latent objective,
elementwise Adam), so a schedule that drops restarts at given steps leaves the survivors'
trajectories unchanged: its result is the paper-budget run's, restricted to the survivors.
One paper-budget run therefore scores every schedule exactly, image by image.

    python scripts/csgm_trajectories.py record --method dcgan-reg -m 500 --num-images 64 \
        --out runs/traj/dcgan-reg_m500.pt
    python scripts/csgm_trajectories.py replay runs/traj/*.pt --schedule 100:5,200:2
    python scripts/csgm_trajectories.py compare runs/traj/dcgan-reg_m500.pt --iters 200 \
        --lr-decay cosine --schedule 50:5,100:2      # runs that budget, pairs it with the record
    python scripts/csgm_trajectories.py compare runs/traj/dcgan_m500.pt --budget lbfgs   # as `invgan cs --budget lbfgs`
    python scripts/csgm_trajectories.py starts runs/traj/dcgan_m500.pt --screen 0:100 8:100 --halve 4:25:1:100
        # L-BFGS (60 pairs, first step 1) from screened starts (the best R of K*R prior draws by
        # a forward pass, K counted as passes) or with one pruning round (K starts x p1 passes,
        # the best `keep` per image go on p2 passes with their curvature), paired with the record

Recording uses the same images, A, noise and seeds as `invgan cs` (64 lowest CelebA val ids).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from invgan.csgm import BUDGETS, PAPER_SETTINGS, csgm_objective, prune_schedule_work, replay_pruning
from invgan.fileio import atomic_path
from invgan.metrics import summarize


def problem(m: int, num_images: int):
    """The images, operator and measurements of `invgan cs -m M --num-images N` (seed 0)."""
    from invgan.checkpoint import load_models
    from invgan.generators import as_generator
    from invgan.experiment import select_images
    from invgan.physics import GaussianCS

    model_cfg, G, _, _ = load_models(None)
    x, ids, source = select_images(None, num_images, as_generator(G), "cpu", 0)
    p = GaussianCS(m, tuple(x.shape[1:]), 0.01, seed=0)
    return model_cfg, G, x, ids, p, p(x, torch.Generator().manual_seed(1))


def record(args):
    from invgan.models import sample_latent
    from tqdm import tqdm

    s = PAPER_SETTINGS[args.method]
    model_cfg, G, x, ids, p, y = problem(args.m, args.num_images)
    R, B = s["restarts"], x.shape[0]
    G.to(memory_format=torch.channels_last)
    z = sample_latent(R * B, model_cfg, torch.Generator().manual_seed(2)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=s["lr"])
    losses = []
    t0 = time.time()
    for _ in tqdm(range(s["iters"]), desc=f"{args.method} m={args.m}"):
        opt.zero_grad(set_to_none=True)
        obj = csgm_objective(y, p, G(z), z, s["z_reg"])
        losses.append(obj.detach().clone())
        obj.sum().backward()
        opt.step()
    with torch.no_grad():
        xh = G(z)
        final = csgm_objective(y, p, xh, z, s["z_reg"])
        err = (xh - x.repeat(R, 1, 1, 1)).pow(2).flatten(1).mean(1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        torch.save({"method": args.method, "m": args.m, "ids": ids, "restarts": R, "num_images": B,
                    "losses": torch.stack(losses), "final": final, "mse": err, "seconds": time.time() - t0}, tmp)
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")


def recorded_problem(path):
    """A record, its method's paper settings, restarts R, images B, and the problem it was made on
    (G, x, operator p, measurements y)."""
    r = torch.load(path, weights_only=True)
    R, B = r["restarts"], r["num_images"]
    _, G, x, ids, p, y = problem(r["m"], B)
    assert list(ids) == list(r["ids"])
    return r, PAPER_SETTINGS[r["method"]], R, B, G, x, p, y


def parse_schedule(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in part.split(":")) for part in text.split(",") if part]


def paper_pick(r: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The record's paper-budget result: (restart kept per image (B,), its per-pixel MSE (B,))."""
    R, B = r["restarts"], r["num_images"]
    full = r["final"].view(R, B).argmin(0)
    return full, r["mse"].view(R, B).gather(0, full[None])[0]


def paired(mse_fast: torch.Tensor, mse_full: torch.Tensor) -> str:
    """Fast minus paper, image by image: means, paired mean and 95% interval, its upper end in %."""
    d = summarize((mse_fast - mse_full).tolist())
    base = float(mse_full.mean())
    return (f"mse {base:.5f} -> {float(mse_fast.mean()):.5f}; paired diff {d['mean']:+.5f} +- {d['ci95']:.5f} "
            f"(upper end {100 * (d['mean'] + d['ci95']) / base:+.2f}% of the error)")


def replay(args):
    sched = parse_schedule(args.schedule)
    for path in args.files:
        r = torch.load(path, weights_only=True)
        R, B, iters = r["restarts"], r["num_images"], r["losses"].shape[0]
        full, mse_full = paper_pick(r)
        k = min(args.restarts or R, R)  # the first k restarts only: fewer Adam restarts, exactly
        pick = replay_pruning(r["losses"][:, :k * B], r["final"][:k * B], k, B, sched)
        mse_fast = r["mse"].view(R, B).gather(0, pick[None])[0]
        work = prune_schedule_work(k, iters, sched) / (R * iters)
        print(f"{r['method']:10s} m={r['m']:6d} restarts {k} schedule {args.schedule or 'none'}: work {work:.2f} of the "
              f"paper budget; {paired(mse_fast, mse_full)}; same restart on {int((pick == full).sum())}/{B}")


def compare(args):
    """Run a cheaper budget on the record's problem and pair it image by image with the paper pick."""
    from invgan.methods import CSGM

    r, s, R, B, G, x, p, y = recorded_problem(args.files[0])
    if args.budget:  # the method `invgan cs --budget NAME` runs, with the record's starting latents
        method = CSGM.preset(r["method"], G, budget=args.budget, seed=2)
    else:
        method = CSGM(G, z_reg=s["z_reg"], restarts=args.restarts or R, iters=args.iters, lr=args.lr or s["lr"], seed=2,
                      prune=parse_schedule(args.schedule), lr_decay=args.lr_decay, optimizer=args.optimizer,
                      history=args.history, name=r["method"])
    run = method.settings_for(p)
    run.update(lr_decay=method.lr_decay, schedule=",".join(f"{a}:{k}" for a, k in run["prune"]) or "none")
    t0 = time.time()
    fast = method.reconstruct(y, p, progress=True).raw
    secs = time.time() - t0
    _, mse_full = paper_pick(r)
    obj_full = r["final"].view(R, B).min(0).values
    mse_fast = (fast.x - x).pow(2).flatten(1).mean(1)
    work = fast.latent_steps / (R * r["losses"].shape[0])
    print(f"{r['method']:10s} m={r['m']:6d} budget {args.budget or 'custom'}: {run['optimizer']} restarts {run['restarts']} iters {run['iters']} "
          f"lr {run['lr']} history {run['history']} lr-decay {run['lr_decay']} schedule {run['schedule']}: "
          f"work {work:.3f} of the paper budget ({secs:.0f} s against {r['seconds']:.0f} s recorded); "
          f"{paired(mse_fast, mse_full)}; better on {int((mse_fast < mse_full).sum())}/{B}; "
          f"objective lower on {int((fast.objective < obj_full).sum())}/{B}", flush=True)


def starts(args):
    """Cheaper starts for per-latent L-BFGS at about 100 passes per restart (issue 18, item 2)."""
    from invgan.generators import as_generator, frozen
    from invgan.latent import _lbfgs_rows, lbfgs_latents, lbfgs_prune_work

    r, s, R, B, G, x, p, y = recorded_problem(args.files[0])
    gen = as_generator(G)
    net = frozen(gen.module)
    _, mse_full = paper_pick(r)
    obj_full = r["final"].view(R, B).min(0).values

    def objective(v):  # (csgm_objective repeats y for however many restarts v holds)
        return csgm_objective(y, p, net(v), v, s["z_reg"])

    def report(label, z, rows, passes, t0):
        with torch.no_grad():
            xh = net(z)
            fin = csgm_objective(y, p, xh, z, s["z_reg"]).view(rows, B)
        best = fin.argmin(0)
        mse = (xh.view(rows, B, *xh.shape[1:])[best, torch.arange(B)] - x).pow(2).flatten(1).mean(1)
        print(f"{r['method']:10s} m={r['m']:6d} {label} ({passes} passes per image, paper {R * r['losses'].shape[0]}): "
              f"{time.time() - t0:.0f} s; {paired(mse, mse_full)}; better on {int((mse < mse_full).sum())}/{B}; "
              f"objective lower on {int((fin.min(0).values < obj_full).sum())}/{B} "
              f"(mean {float(fin.min(0).values.mean()):.2f}, paper {float(obj_full.mean()):.2f})", flush=True)

    for spec in args.screen:
        K, P = (int(v) for v in spec.split(":"))
        t0 = time.time()
        z0 = gen.sample(max(K, 1) * R * B, torch.Generator().manual_seed(2))
        if K:
            with torch.no_grad():
                f = torch.cat([objective(c) for c in z0.split(K * B)])
            pick = f.view(K * R, B).argsort(0)[:R]
            z0 = z0.view(K * R, B, -1).gather(0, pick[:, :, None].expand(R, B, z0.shape[1])).reshape(R * B, -1)
        z = lbfgs_latents(objective, z0, P - K, args.lr, args.history)
        report(f"screen best {R} of {max(K, 1) * R} draws, then {P - K} L-BFGS passes", z, R, R * P, t0)
    for spec in args.halve:
        K, p1, keep, p2 = (int(v) for v in spec.split(":"))
        t0 = time.time()
        z, alive, _ = _lbfgs_rows(objective,  # the pruning that auto runs
                                  gen.sample(K * B, torch.Generator().manual_seed(2)), p1 + p2, args.lr,
                                  args.history, prune=[(p1, keep)], num_images=B)
        report(f"{K} starts x {p1} passes, best {keep} x {p2} more", z, alive.shape[0],
               lbfgs_prune_work(K, p1 + p2, [(p1, keep)]), t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("record")
    a.add_argument("--method", choices=sorted(PAPER_SETTINGS), required=True)
    a.add_argument("-m", type=int, required=True)
    a.add_argument("--num-images", type=int, default=64)
    a.add_argument("--out", required=True)
    b = sub.add_parser("replay")
    b.add_argument("files", nargs="+")
    b.add_argument("--schedule", default="", help="STEP:KEEP,... restarts kept per image after STEP steps")
    b.add_argument("--restarts", type=int, default=None, help="replay the record's first K restarts only")
    c = sub.add_parser("compare")
    c.add_argument("files", nargs=1)
    c.add_argument("--iters", type=int, default=500)
    c.add_argument("--lr-decay", default="constant", choices=["constant", "cosine"])
    c.add_argument("--schedule", default="")
    c.add_argument("--optimizer", default="adam", choices=["adam", "lbfgs"],
                   help="lbfgs: per-latent L-BFGS, --iters generator passes")
    c.add_argument("--history", type=int, default=10, help="L-BFGS curvature pairs per latent")
    c.add_argument("--lr", type=float, default=None, help="Adam's lr, or L-BFGS's first step (default: the paper's 0.1)")
    c.add_argument("--restarts", type=int, default=None,
                   help="restarts per image (default: the record's; the first R of them start where the record's do)")
    c.add_argument("--budget", choices=sorted(BUDGETS), default=None,
                   help="run a named budget of invgan cs exactly (overrides --iters, --optimizer, --schedule, ...)")
    d = sub.add_parser("starts")
    d.add_argument("files", nargs=1)
    d.add_argument("--screen", nargs="*", default=[], help="K:P  best R of K*R draws, then P-K passes per restart")
    d.add_argument("--halve", nargs="*", default=[], help="K:P1:KEEP:P2  K starts x P1 passes, best KEEP x P2 more")
    d.add_argument("--lr", type=float, default=1.0, help="L-BFGS first step")
    d.add_argument("--history", type=int, default=60)
    args = ap.parse_args(argv)
    {"record": record, "replay": replay, "compare": compare, "starts": starts}[args.cmd](args)


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    sys.exit(main())
