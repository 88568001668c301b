"""invgan's Lasso against the libraries a user would pick instead, on the same problem.

Same CelebA val faces, same Gaussian A (seed 0), same noisy y (seed 1) and the same objective
1/(2m) ||y - A Psi w||^2 + alpha ||w||_1 (paper alpha per basis): invgan's batched solver
(all images in one batch) against scikit-learn, celer and skglm (one image at a time, on the
dense B = A Psi), each solver timed alone. invgan runs as a user gets it (``Lasso(basis)``:
solver "auto" at tol 1e-4: ``invgan.lasso.choose_solver``) and, for reference, its
FISTA solver (``invgan-fista``). Reports seconds per image and each solver's relative
objective excess over the best objective any of them reached on that image. The issue's
comparison is at a relative excess of at most 1e-6 (``--match``): a library that stops above it at
``--tol`` is run again with its tolerance 10x tighter until it is within it (down to 1e-10), and its
row gives the time of the run that got there (``lib_tol``; every try is in ``tries``). Every solver
first solves once untimed (invgan its whole batch, and where ADMM ran a second batch with the set-up
kept; a library the first face; ``--no-warmup``: not), so that one-off costs (numba's compilation or
cache load, skglm's JIT, thread pools, and the process's heap growing to the solve's peak: fresh memory
costs this VM about 12 microseconds a page) are not counted against either side: the rows are
steady-state seconds per image. invgan's warm-up is reported beside them (``warmup``: its seconds per
image and page faults, this size's first solve in the process). invgan's row is a first solve on this A: its
set-up (B = A Psi, ADMM's factorisations) made in the call (the set-up that the warm-up kept is freed
first); where ADMM ran, ``invgan-kept`` is a second batch on the same A, with the set-up kept from the
first (``invgan.lasso._SetupCache``; the same bits, checked: ``same_bits_as_first_solve``). This
machine's speed drifts by tens of percent within minutes, so ``--rounds N`` times invgan and each
library (at the tolerance it needed) N times in alternating order and reports each one's median
(``round_seconds``: all of them; ``page_faults``: invgan's minor page faults in each of those calls, as
fresh memory costs this VM about 12 microseconds a page).

    python scripts/bench_lasso_libs.py --ms 500 --bases dct --images 4 --out lasso_libs.json

Libraries that are not installed are skipped (pip install scikit-learn celer skglm).
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from invgan.bases import make_basis
from invgan.data import load_images
from invgan.lasso import PAPER_ALPHA, clear_setup_cache, explicit_matrix, lasso_fista, lasso_objective
from invgan.methods import Lasso
from invgan.physics import GaussianCS
from invgan.runtime import cpu_facts

LIBRARIES = {  # name: (module, class path, extra keyword arguments)
    "scikit-learn": ("sklearn.linear_model", "Lasso", {"max_iter": 10000}),
    "celer": ("celer", "Lasso", {"max_iter": 100}),
    "skglm": ("skglm", "Lasso", {"max_iter": 100}),
}


def library_solve(name, B, y, alpha, tol):
    mod, cls, extra = LIBRARIES[name]
    est = getattr(importlib.import_module(mod), cls)(alpha=alpha, fit_intercept=False, tol=tol, **extra)
    est.fit(B, y)
    return est.coef_


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ms", default="500")
    ap.add_argument("--bases", default="dct,wavelet")
    ap.add_argument("--images", type=int, default=4, help="images per library (invgan runs --batch)")
    ap.add_argument("--batch", type=int, default=64, help="images in invgan's batch")
    ap.add_argument("--tol", type=float, default=1e-6, help="the libraries' tolerance")
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--match", type=float, default=1e-6,
                    help="rerun a library at 10x tighter tolerances until its relative excess is at most this "
                         "(0: one run at --tol)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="time invgan and the libraries this many times, alternating, and report medians")
    ap.add_argument("--no-warmup", action="store_true", help="time each solver's first call in the process too")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    x = load_images(None, partition="val", limit=max(args.images, args.batch), progress=False).tensor()
    rows = []
    for m in [int(v) for v in args.ms.split(",")]:
        p = GaussianCS(m, (3, 64, 64), noise_std=0.01, seed=0)
        y = p(x, torch.Generator().manual_seed(1))
        for basis_name in args.bases.split(","):
            alpha, basis = PAPER_ALPHA[basis_name], make_basis(basis_name, 64)
            method = Lasso(basis_name, tol=1e-4)
            faults = {}  # invgan's minor page faults per call (fresh memory: what makes a slow round here)

            def run_ours(kept=False):  # the reconstruction, seconds per image; as a first solve on this A (its
                if not kept:  # set-up made in the call), or with the set-up that the solve before it kept
                    clear_setup_cache()
                f, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.time()
                rec = method(y[:args.batch], p)
                dt = (time.time() - t) / args.batch
                faults.setdefault("invgan-kept" if kept else "invgan", []).append(
                    resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
                return rec, dt

            warmup = {}
            if not args.no_warmup:  # untimed: the whole batch, as timed below (the process's heap grows to this
                # solve's peak here, once), and where ADMM ran a second batch with the set-up kept (its pattern)
                rec, sec = run_ours()
                warmup["invgan"] = {"seconds_per_image": sec, "page_faults": faults.pop("invgan")[0]}
                if rec.details["solver"] == "admm":
                    _, sec = run_ours(kept=True)
                    warmup["invgan-kept"] = {"seconds_per_image": sec, "page_faults": faults.pop("invgan-kept")[0]}
            rec, t_ours = run_ours()
            ours = rec.raw
            objs = {"invgan": ours.objective[:args.images].double().numpy()}
            secs = {"invgan": t_ours}
            results = {"invgan": (ours, rec.details["solver"])}  # the solver that ran
            ours_kept = ["invgan"]
            if rec.details["solver"] == "admm":  # a second batch on the same A: the set-up kept (ADMM's _SetupCache)
                again, secs["invgan-kept"] = run_ours(kept=True)
                objs["invgan-kept"] = again.raw.objective[:args.images].double().numpy()
                results["invgan-kept"] = (again.raw, again.details["solver"])
                ours_kept.append("invgan-kept")
                same_bits = torch.equal(again.raw.w, ours.w)
            if rec.details["solver"] != "fista":
                if not args.no_warmup:
                    lasso_fista(y[:2], p, basis_name, tol=1e-4)
                t = time.time()
                fista = lasso_fista(y[:args.batch], p, basis_name, tol=1e-4)
                secs["invgan-fista"] = (time.time() - t) / args.batch
                objs["invgan-fista"] = fista.objective[:args.images].double().numpy()
                results["invgan-fista"] = (fista, "fista")
            B = explicit_matrix(p, basis, (m,))

            def run_library(lib, tol):  # seconds per image, objectives
                ws, t = [], time.time()
                for yi in y[:args.images].double().numpy():
                    ws.append(library_solve(lib, B, yi, alpha, tol))
                sec = (time.time() - t) / args.images
                w = torch.tensor(np.stack(ws), dtype=torch.float32).reshape(args.images, *x.shape[1:])
                return sec, lasso_objective(y[:args.images], p, basis, w, alpha).double().numpy()

            libs, tries, lib_tol = [], {}, {}
            for lib in args.libraries.split(","):
                try:
                    importlib.import_module(LIBRARIES[lib][0])
                except ImportError:
                    print(f"{lib}: not installed, skipped")
                    continue
                libs.append(lib)
                if not args.no_warmup:
                    library_solve(lib, B, y[0].double().numpy(), alpha, args.tol)
                secs[lib], objs[lib] = run_library(lib, args.tol)
                tries[lib], lib_tol[lib] = [], args.tol

            def best_objective():  # per image, the best any solver reached in any try so far
                return np.min(np.stack(list(objs.values()) + [o for t in tries.values() for *_, o in t]), 0)

            def excess(name):
                best = best_objective()
                return float(np.max((objs[name] - best) / best))

            for lib in libs if args.match > 0 else []:  # tighter until within --match of the best
                tol = args.tol
                tries[lib].append((tol, secs[lib], objs[lib]))
                while excess(lib) > args.match and tol > 1e-10:
                    tol /= 10
                    secs[lib], objs[lib] = run_library(lib, tol)
                    tries[lib].append((tol, secs[lib], objs[lib]))
                    lib_tol[lib] = tol
            rounds = {name: [secs[name]] for name in ours_kept + libs}
            for r in range(1, args.rounds):  # alternating order; objectives as in the first round
                for name in (ours_kept + libs)[::-1 if r % 2 else 1]:
                    if name == "invgan":
                        rounds[name].append(run_ours()[1])
                    elif name == "invgan-kept":  # (the set-up of this A kept by invgan's last solve, in this
                        rounds[name].append(run_ours(kept=True)[1])  # round or the one before: no solve between)
                    else:
                        rounds[name].append(run_library(name, lib_tol[name])[0])
                print({k: [round(v, 4) for v in vs] for k, vs in rounds.items()}, flush=True)
            for name, vs in rounds.items():
                secs[name] = float(np.median(vs))
            best = best_objective()
            for name in objs:
                row = {"m": m, "basis": basis_name, "solver": name, "seconds_per_image": secs[name],
                       "images": args.batch if name in results else args.images,
                       "rel_excess_max": float(np.max((objs[name] - best) / best))}
                if args.rounds > 1 and name in rounds:
                    row["round_seconds"] = rounds[name]
                if name in faults:  # (the first call, then one per later round)
                    row["page_faults"] = faults[name]
                if name in warmup:  # the untimed warm-up: this size's first solve in the process
                    row["warmup"] = warmup[name]
                if name in lib_tol:
                    row.update(lib_tol=lib_tol[name], tries=[
                        {"tol": t, "seconds_per_image": sec, "rel_excess_max": float(np.max((o - best) / best))}
                        for t, sec, o in tries[name]])
                if name in results:
                    r, solver = results[name]
                    row.update(invgan_solver=solver, certified_gap_max=float(r.gap.max()), iterations=r.iterations,
                               certified_1e4=int((r.gap <= 1e-4).sum()))
                if name == "invgan-kept":
                    row["same_bits_as_first_solve"] = same_bits
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "warmup": not args.no_warmup, "rounds": args.rounds,
                                              "command": "python scripts/bench_lasso_libs.py", **cpu_facts()},
                                             indent=1))


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
