"""Compressed-sensing benchmarks, each a ratio measured in this one run.

1. Lasso-DCT and Lasso-wavelet (paper alphas, tol 1e-4): invgan's FISTA solver (B = A Psi formed
   once, support Newton steps) against the previous one (operator path, FISTA only) and, for
   m <= HOMOTOPY_MAX_M, the exact homotopy path, on the same real val images in one batch each,
   and against the exact cvxpy (Clarabel) reference: time ratios, iterations or steps, certified
   gaps and relative objective differences. Where solver="auto" runs ADMM (the DCT's alpha from
   m = 500), ADMM against the exact path (or FISTA above HOMOTOPY_MAX_M), with the paired MSE.
2. CSGM: all images and restarts in one batch against a per-image, per-restart loop (same
   seeds): time ratio and the largest difference between their reconstructions.
3. Peak resident memory of CSGM and Lasso-DCT at m = 10,000.
4. CSGM budgets: DCGAN at m = 500 with the paper's budget (Adam, 2 x 500 steps) against the
   default "auto" (6 x 30 passes of per-latent L-BFGS, the best 2 x 70 more; invgan.csgm.AUTO_SETTINGS) and the lbfgs
   budget (2 x 150 passes, invgan.csgm.BUDGET_SETTINGS), each as `invgan cs --budget NAME` runs it,
   same images, A, noise and starting latents: time ratios, and per image the paired MSE
   difference and which objective is lower.

    python scripts/bench_cs.py [--images 8] [--cvxpy-images 8] [--ms 500,2500] [--iters 500]
        [--device cpu] [--out bench_cs.json]
"""

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from invgan.checkpoint import load_models
from invgan.csgm import csgm_objective, csgm_reconstruct
from invgan.data import load_images
from invgan.lasso import HOMOTOPY_MAX_M, PAPER_ALPHA, choose_solver, lasso_cvxpy, lasso_fista, lasso_homotopy, lasso_solve
from invgan.models import sample_latent
from invgan.physics import GaussianCS
from invgan.runtime import peak_rss_mb


def bench_lasso(x, ms, n_ref, device, tol=1e-4):
    """The solver (B = A Psi formed once, support Newton steps) against the previous one (the
    operator path without Newton steps: dense=False, newton=False) on the same images, A, y and
    tolerance, all images in one batch each, one after the other; and against cvxpy on n_ref."""
    rows = []
    for m in ms:
        p = GaussianCS(m, (3, 64, 64), noise_std=0.01, seed=0, device=device)
        y = p(x, torch.Generator().manual_seed(1))
        for basis in ("dct", "wavelet"):
            t = time.time()
            fast = lasso_fista(y, p, basis, tol=tol)
            t_fast = (time.time() - t) / len(x)
            t = time.time()
            prev = lasso_fista(y, p, basis, tol=tol, dense=False, newton=False)
            t_prev = (time.time() - t) / len(x)
            homo = None
            if m <= HOMOTOPY_MAX_M:  # the exact homotopy path (what solver="auto" runs near basis pursuit to this m)
                t = time.time()
                homo = lasso_homotopy(y, p, basis)
                t_homo = (time.time() - t) / len(x)
            auto = choose_solver("auto", p, PAPER_ALPHA[basis])
            other = auto not in ("fista", "homotopy")  # what solver="auto" runs here (ADMM), against the exact path
            if other:
                t = time.time()
                run, _ = lasso_solve(y, p, basis, solver=auto, tol=tol)
                t_auto = (time.time() - t) / len(x)
            t = time.time()
            ref = lasso_cvxpy(y[:n_ref], p, basis)
            t_ref = (time.time() - t) / n_ref
            gap = ((fast.objective[:n_ref] - ref.objective) / ref.objective).cpu().numpy()
            d = ((fast.objective.double() - prev.objective.double()) / prev.objective.double()).cpu().numpy()
            row = {"m": m, "basis": basis, "tol": tol, "images": len(x), "auto_solver": auto,
                   "fista_s_per_image": t_fast, "previous_s_per_image": t_prev, "speedup_vs_previous": t_prev / t_fast,
                   "cvxpy_s_per_image": t_ref, "speedup": t_ref / t_fast,
                   "rel_objective_gap_max": float(np.max(gap)), "rel_objective_gap_mean": float(np.mean(gap)),
                   "rel_objective_vs_previous_max": float(d.max()), "rel_objective_vs_previous_min": float(d.min()),
                   "lower_objective_than_previous": int((d < 0).sum()),
                   "fista_iterations": fast.iterations, "previous_iterations": prev.iterations,
                   "fista_image_iterations_mean": float(fast.image_iterations.float().mean()),
                   "previous_image_iterations_mean": float(prev.image_iterations.float().mean()),
                   "fista_certified_gap_max": float(fast.gap.max()), "previous_certified_gap_max": float(prev.gap.max()),
                   "certified": int((fast.gap <= tol).sum()), "previous_certified": int((prev.gap <= tol).sum()),
                   "mse_fista": float((fast.x - x).pow(2).mean()), "mse_previous": float((prev.x - x).pow(2).mean()),
                   "images_fista": len(x), "images_cvxpy": n_ref}
            if homo is not None:
                dh = ((homo.objective.double() - fast.objective.double()) / fast.objective.double()).cpu().numpy()
                gh = ((homo.objective[:n_ref] - ref.objective) / ref.objective).cpu().numpy()
                row.update(homotopy_s_per_image=t_homo, homotopy_speedup_vs_fista=t_fast / t_homo,
                           homotopy_speedup_vs_previous=t_prev / t_homo,
                           homotopy_steps_mean=float(homo.image_iterations.float().mean()),
                           homotopy_certified_gap_max=float(homo.gap.max()),
                           homotopy_certified=int((homo.gap <= tol).sum()),
                           homotopy_rel_objective_vs_fista_max=float(dh.max()),
                           homotopy_rel_objective_vs_fista_min=float(dh.min()),
                           homotopy_rel_objective_gap_cvxpy_max=float(gh.max()),
                           mse_homotopy=float((homo.x - x).pow(2).mean()))
            if other:
                against = homo if homo is not None else fast
                da = ((run.objective.double() - against.objective.double()) / against.objective.double()).cpu().numpy()
                ea = ((run.x - x).pow(2).flatten(1).mean(1) - (against.x - x).pow(2).flatten(1).mean(1)).cpu()
                row.update(auto_s_per_image=t_auto, auto_against="homotopy" if homo is not None else "fista",
                           auto_speedup=(t_homo if homo is not None else t_fast) / t_auto,
                           auto_iterations=run.iterations, auto_certified_gap_max=float(run.gap.max()),
                           auto_certified=int((run.gap <= tol).sum()),
                           auto_rel_objective_min=float(da.min()), auto_rel_objective_max=float(da.max()),
                           auto_mse_diff_mean=float(ea.mean()),
                           auto_mse_diff_ci95=float(1.96 * ea.std() / len(ea) ** 0.5) if len(ea) > 1 else 0.0,
                           mse_auto=float((run.x - x).pow(2).mean()))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def bench_csgm(x, G, cfg, iters, restarts, device):
    p = GaussianCS(500, (3, 64, 64), noise_std=0.01, seed=0, device=device)
    y = p(x, torch.Generator().manual_seed(1))
    t = time.time()
    batched = csgm_reconstruct(y, p, G, restarts=restarts, iters=iters, seed=3)
    t_batched = time.time() - t
    # the loop: the same initial latents, one image and one restart at a time
    z0 = sample_latent(restarts * len(x), cfg, torch.Generator().manual_seed(3)).reshape(restarts, len(x), -1)
    t = time.time()
    xs = []
    for b in range(len(x)):
        best, best_x = None, None
        for r in range(restarts):
            z = z0[r, b:b + 1].clone().to(device).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=0.1)
            for _ in range(iters):
                opt.zero_grad()
                csgm_objective(y[b:b + 1], p, G(z), z).sum().backward()
                opt.step()
            with torch.no_grad():
                xh = G(z)
                obj = csgm_objective(y[b:b + 1], p, xh, z).item()
            if best is None or obj < best:
                best, best_x = obj, xh
        xs.append(best_x)
    t_loop = time.time() - t
    loop_x = torch.cat(xs)
    # Same maths, but conv round-off differs between batch sizes and 500 non-convex Adam steps
    # amplify it, so compare what matters too: each image's error against the truth.
    err_b = (batched.x - x).pow(2).flatten(1).mean(1)
    err_l = (loop_x - x).pow(2).flatten(1).mean(1)
    row = {"images": len(x), "restarts": restarts, "iters": iters, "batched_s": t_batched, "loop_s": t_loop,
           "speedup": t_loop / t_batched, "max_abs_pixel_diff": (loop_x - batched.x).abs().max().item(),
           "mean_abs_pixel_diff": (loop_x - batched.x).abs().mean().item(),
           "mse_batched_mean": err_b.mean().item(), "mse_loop_mean": err_l.mean().item(),
           "mse_abs_diff_per_image_max": (err_b - err_l).abs().max().item()}
    print(json.dumps(row), flush=True)
    return row


def bench_budget(x, G, device):
    """DCGAN at m = 500: the paper budget against the default "auto" (6 x 30 L-BFGS passes, the best 2 x 70 more) and the
    lbfgs budget (2 x 150), each as ``CSGM.preset`` builds it, on the same faces, A, y and starts."""
    from invgan.methods import CSGM
    from invgan.metrics import summarize

    p = GaussianCS(500, (3, 64, 64), noise_std=0.01, seed=0, device=device)
    y = p(x, torch.Generator().manual_seed(1))
    runs = {}
    for name in ("paper", "auto", "lbfgs"):
        t = time.time()
        r, _ = CSGM.preset("dcgan", G, budget=name, seed=2).solve(y, p)
        runs[name] = (r, time.time() - t, (r.x - x).pow(2).flatten(1).mean(1))
    paper, t_paper, e_paper = runs["paper"]
    row = {"m": 500, "images": len(x), "paper_s": t_paper, "paper_passes_per_image": paper.latent_steps,
           "mse_paper_mean": float(e_paper.mean())}
    for name in ("auto", "lbfgs"):
        r, t, e = runs[name]
        d = summarize((e - e_paper).tolist())
        row.update({f"{name}_s": t, f"{name}_speedup": t_paper / t, f"{name}_passes_per_image": r.latent_steps,
                    f"mse_{name}_mean": float(e.mean()), f"mse_{name}_diff_mean": d["mean"],
                    f"mse_{name}_diff_ci95": d["ci95"], f"{name}_objective_lower": int((r.objective < paper.objective).sum())})
    print(json.dumps(row), flush=True)
    return row


def bench_memory(x, G, cfg, iters, device):
    before = peak_rss_mb()
    p = GaussianCS(10000, (3, 64, 64), noise_std=0.01, seed=0, device=device)
    y = p(x, torch.Generator().manual_seed(1))
    csgm_reconstruct(y, p, G, restarts=2, iters=iters, seed=0)
    after_csgm = peak_rss_mb()
    lasso_fista(y, p, "dct", max_iter=200)
    after_lasso = peak_rss_mb()
    row = {"m": 10000, "images": len(x), "peak_rss_mb_before": before, "peak_rss_mb_after_csgm": after_csgm,
           "peak_rss_mb_after_lasso_dct": after_lasso, "A_matrix_mb": 10000 * 12288 * 4 / 2**20}
    if device.type == "cuda":
        row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--cvxpy-images", type=int, default=8)
    ap.add_argument("--ms", default="500,2500")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", default="", help="comma list of lasso,csgm,budget,memory to skip")
    ap.add_argument("--out")
    a = ap.parse_args()
    device = torch.device(a.device)
    x = load_images(None, "val", limit=a.images, progress=False).tensor().to(device)
    cfg, G, _, _ = load_models(None, device=device)
    res = {"command": " ".join(sys.argv), "device": str(device), "platform": platform.platform(),
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    skip = set(a.skip.split(","))
    if "lasso" not in skip:
        res["lasso"] = bench_lasso(x, [int(m) for m in a.ms.split(",")], min(a.cvxpy_images, a.images), device)
    if "csgm" not in skip:
        res["csgm"] = bench_csgm(x, G, cfg, a.iters, a.restarts, device)
    if "budget" not in skip:
        res["budget"] = bench_budget(x, G, device)
    if "memory" not in skip:
        res["memory"] = bench_memory(x, G, cfg, a.iters, device)
    if a.out:
        from invgan.fileio import write_json

        write_json(a.out, res)


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
