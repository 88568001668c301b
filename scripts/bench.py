"""All benchmarks in one run, on this machine: one JSON and a Markdown table for the README.

    python scripts/bench.py --out docs/bench.json                       # CPU, about 10 minutes
    python scripts/bench.py --device cuda --out docs/bench_gpu.json     # on a GPU machine
    python scripts/bench.py --sweep runs/sweeps/cs_paper ...            # add a sweep's wall time
    python scripts/bench.py --skip train,csgm,lasso,budget,inpaint,main,libs --update --sweep runs/sweeps/cs_paper
                                        # refresh only the sweep row; keep the measured rows

Measured side by side in this run, each against a named baseline:
1. training: invgan's loop (images/s) against the reference PyTorch-examples DCGAN loop
   (scripts/bench_train.py);
2. CSGM: all images and restarts in one batch against a per-image, per-restart loop
   (scripts/bench_cs.py);
3. Lasso: the exact homotopy path (m <= 1000) and batched FISTA against the previous FISTA and
   cvxpy (Clarabel): time, certified images and objective gaps (scripts/bench_cs.py);
4. CSGM budgets: DCGAN's paper budget (Adam, 500 steps) against the default (auto: 6 x 30
   passes of per-latent L-BFGS, the best 2 x 70 more) and the lbfgs budget (per-latent
   L-BFGS, 150 passes, 60 curvature pairs) on the same faces, with the paired error difference (scripts/bench_cs.py);
5. inpainting budgets: Yeh's paper budget (Adam, 1500 steps) against the lbfgs budget (300
   passes) on the same faces, centre mask, with the paired hole error (scripts/inpaint_budgets.py);
6. the main job, `invgan cs --measurements 500` on 64 faces as a user runs it, against the same
   command with the C allocator's defaults (INVGAN_KEEP_FREED_MEMORY=0): wall time, page faults,
   and every image's metrics compared (bench_main_job, below);
7. Lasso against the libraries: invgan's `Lasso("dct")` (64 faces in one batch) against
   scikit-learn, celer and skglm (one face at a time, those installed) at a relative objective
   excess of at most 1e-6, each timed --libs-rounds times in alternating order, medians
   (scripts/bench_lasso_libs.py);
8. generator passes (forward and latent gradient) of the shipped DCGAN through the frozen copy's faster
   layer forms (invgan.fused) against the plain copy, frozen(G, fuse=False), with a bit-for-bit check
   (scripts/bench_passes.py).
The full cs_paper sweep takes hours on a CPU, so it is not rerun here: --sweep DIR reports the
wall time that sweep's cells recorded when they ran (sum over cells, with how many are done).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine(device: str) -> dict:
    import torch

    from invgan.runtime import cpu_facts, onednn_products

    return {"platform": platform.platform(), **cpu_facts(), "onednn_products": onednn_products("cpu"),
            "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None}


def run_script(args: list[str]) -> tuple[dict, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, *args, "--out", str(out)]
        t0 = time.time()
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"bench: {' '.join(args)} failed:\n{p.stderr[-3000:]}")
        return json.loads(out.read_text()), time.time() - t0, " ".join(args)


def sweep_time(folder: Path) -> dict:
    res = json.loads((folder / "results.json").read_text())
    total = res["cells_done"] + len(res["cells_missing"])
    from invgan.runtime import cpu_label

    cpus = set()  # the CPUs the cells ran on, as each cell recorded them (invgan.runtime.cpu_facts; older cells: none)
    for f in (folder / "cells").glob("*.json"):
        proc = json.loads(f.read_text()).get("process", {})
        if "simd" in proc:
            cpus.add(cpu_label(proc))
    return {"folder": str(folder), "recipe": res["recipe"]["name"], "cells_done": res["cells_done"],
            "cells_total": total, "complete": res["complete"], "cell_seconds_total": res["cell_seconds_total"],
            "devices": res["devices"], "num_images": res["recipe"]["settings"].get("num_images"),
            "cpus": sorted(cpus)}


BENCHMARKS = ("train", "csgm", "passes", "lasso", "budget", "inpaint", "main", "libs")


def bench_main_job(images: int, measurements: int = 500) -> dict:
    """``invgan cs --measurements 500`` (the README's main job) as a user runs it, against the same
    command with ``INVGAN_KEEP_FREED_MEMORY=0`` (the C allocator's defaults: what it ran before
    ``invgan.runtime.keep_freed_memory``), one after the other: wall time, page faults and system
    time of each run (``getrusage`` of the children), and every image's metrics compared."""
    import csv
    import resource

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, keep in (("default_allocator", "0"), ("invgan", "1")):
            out = Path(tmp) / name
            cmd = [sys.executable, "-m", "invgan", "cs", "--measurements", str(measurements), "--num-images",
                   str(images), "--out", str(out), "--quiet"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.time()
            p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                               env={**os.environ, "INVGAN_KEEP_FREED_MEMORY": keep})
            wall = time.time() - t0
            if p.returncode != 0:
                sys.exit(f"bench: {' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            rows = list(csv.DictReader(open(out / "results.csv")))
            runs[name] = {"wall_s": wall, "minor_page_faults": after.ru_minflt - before.ru_minflt,
                          "system_s": after.ru_stime - before.ru_stime, "user_s": after.ru_utime - before.ru_utime,
                          "s_per_image": {r["method"]: float(r["seconds"]) for r in rows},
                          "mse": {(r["id"], r["method"]): float(r["mse"]) for r in rows}}
    a, b = runs["invgan"], runs["default_allocator"]
    methods = sorted({k[1] for k in a["mse"]})
    diff = {m: max(abs(a["mse"][k] - b["mse"][k]) for k in a["mse"] if k[1] == m) for m in methods}
    mean = {m: sum(v for k, v in a["mse"].items() if k[1] == m) / images for m in methods}
    for r in runs.values():
        del r["mse"]
    return {"command": f"invgan cs --measurements {measurements} --num-images {images}", "images": images,
            **runs, "speedup": b["wall_s"] / a["wall_s"], "mse_mean": mean, "mse_max_abs_diff": diff}


def carried_over(path: Path, skip: set, r: dict) -> dict:
    """``r`` with the skipped benchmarks' entries taken from an earlier run's JSON at ``path``.

    If every benchmark is carried over, so are that run's machine and command (the table's machine
    line describes where the measured rows ran); this run's command is kept as "updated_by".
    """
    try:
        prev = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"bench: --update needs an earlier result at {path}: {e}")
    for name in skip:
        for key in (name, f"{name}_seconds", f"{name}_command"):
            if key in prev:
                r[key] = prev[key]
    if "sweep" in prev:  # replaced when --sweep names a folder
        r["sweep"] = prev["sweep"]
    if skip >= set(BENCHMARKS):
        r = {"command": prev["command"], "machine": prev["machine"], "updated_by": r["command"],
             **{k: v for k, v in r.items() if k not in ("command", "machine")}}
    return r


def table(r: dict) -> str:
    lines = ["| benchmark | invgan | baseline | ratio |", "|---|---|---|---|"]
    if "train" in r:
        t = r["train"]
        lines.append(f"| training, batch {t['batch_size']} ({t['device']}) | {_med(t['invgan_images_per_s']):.0f} images/s "
                     f"| reference DCGAN loop: {_med(t['reference_images_per_s']):.0f} images/s | {t['ratio_median']:.2f}x |")
    if "csgm" in r:
        c = r["csgm"]
        lines.append(f"| CSGM, {c['images']} images x {c['restarts']} restarts x {c['iters']} its | batched: "
                     f"{c['batched_s']:.1f} s | per-image loop: {c['loop_s']:.1f} s | {c['speedup']:.2f}x |")
    for p in r.get("passes", {}).get("rows", []):
        same = "same images and gradients" if p["same_images"] and p["same_gradients"] else "NOT the same results"
        lines.append(f"| generator pass (forward + latent gradient), shipped DCGAN, {p['latents']} latents | faster layer "
                     f"forms (`invgan.fused`): {p['fused_s_per_pass'] * 1e3:.0f} ms | unfused (`frozen(G, fuse=False)`): "
                     f"{p['unfused_s_per_pass'] * 1e3:.0f} ms | {p['speedup']:.2f}x ({same}) |")
    if "budget" in r:
        b = r["budget"]
        for name, label, paper in (("auto", "CSGM default budget (auto: 6 x 30 L-BFGS passes, best 2 x 70 more)", "Adam 2 x 500"),
                                   ("lbfgs", "CSGM lbfgs budget", "Adam 500")):
            lines.append(f"| {label}, DCGAN, m = {b['m']}, {b['images']} faces | {b[name + '_s']:.1f} s "
                         f"(MSE {b[f'mse_{name}_mean']:.4f}, paired {b[f'mse_{name}_diff_mean']:+.4f} +- "
                         f"{b[f'mse_{name}_diff_ci95']:.4f}) | paper budget ({paper}): {b['paper_s']:.1f} s "
                         f"(MSE {b['mse_paper_mean']:.4f}) | {b[name + '_speedup']:.2f}x |")
    if "inpaint" in r:
        b = r["inpaint"]
        lines.append(f"| Yeh inpainting, lbfgs budget, {b['mask']} mask, {b['images']} faces | {b['lbfgs_s']:.1f} s "
                     f"(hole MSE {b['mse_hole_lbfgs_mean']:.4f}, paired {b['mse_hole_diff_mean']:+.4f} +- "
                     f"{b['mse_hole_diff_ci95']:.4f}; loss lower on {b['loss_lower']}) | paper budget (Adam 1500): "
                     f"{b['paper_s']:.1f} s (hole MSE {b['mse_hole_paper_mean']:.4f}) | {b['speedup']:.2f}x |")
    for row in r.get("lasso", []):
        name = f"{_lasso_name(row['basis'])}, m = {row['m']}"
        if "previous_s_per_image" in row:
            imgs, tol = row.get("images", row.get("images_fista")), row.get("tol", 1e-4)
            lines.append(f"| {name}, {imgs} faces, tol {tol:g} | {row['fista_s_per_image']:.2f} s/image, "
                         f"{row['certified']}/{imgs} certified | previous solver (FISTA through the operator): "
                         f"{row['previous_s_per_image']:.2f} s/image, {row['previous_certified']}/{imgs} certified "
                         f"| {row['speedup_vs_previous']:.2f}x (objective {row['rel_objective_vs_previous_min']:+.1e} to "
                         f"{row['rel_objective_vs_previous_max']:+.1e}) |")
        if "homotopy_s_per_image" in row:
            imgs = row.get("images", row.get("images_fista"))
            who = "; solver auto" if row.get("auto_solver", "homotopy") == "homotopy" else ""
            lines.append(f"| {name}, {imgs} faces: homotopy (exact path{who}) | "
                         f"{row['homotopy_s_per_image']:.3f} s/image, {row['homotopy_certified']}/{imgs} certified "
                         f"(largest gap {row['homotopy_certified_gap_max']:.0e}) | FISTA + Newton steps, tol "
                         f"{row.get('tol', 1e-4):g}: {row['fista_s_per_image']:.3f} s/image, {row['certified']}/{imgs} "
                         f"certified | {row['homotopy_speedup_vs_fista']:.2f}x ({row['homotopy_speedup_vs_previous']:.1f}x "
                         f"against the previous FISTA; objective {row['homotopy_rel_objective_vs_fista_min']:+.1e} to "
                         f"{row['homotopy_rel_objective_vs_fista_max']:+.1e}) |")
        if "auto_s_per_image" in row:
            imgs = row.get("images", row.get("images_fista"))
            against = ("homotopy (exact path)" if row["auto_against"] == "homotopy" else
                       f"FISTA + Newton steps, tol {row.get('tol', 1e-4):g}")
            lines.append(f"| {name}, {imgs} faces: {row['auto_solver'].upper()} (solver auto), tol {row.get('tol', 1e-4):g} | "
                         f"{row['auto_s_per_image']:.3f} s/image, {row['auto_certified']}/{imgs} certified (largest gap "
                         f"{row['auto_certified_gap_max']:.0e}) | {against}: "
                         f"{row[row['auto_against'] + '_s_per_image']:.3f} s/image | {row['auto_speedup']:.2f}x "
                         f"(objective {row['auto_rel_objective_min']:+.1e} to {row['auto_rel_objective_max']:+.1e}; mse "
                         f"{row['auto_mse_diff_mean']:+.1e} +- {row['auto_mse_diff_ci95']:.1e}, paired) |")
        lines.append(f"| {name} | {row['fista_s_per_image']:.2f} s/image | cvxpy (Clarabel) {row['cvxpy_s_per_image']:.1f} "
                     f"s/image | {row['speedup']:.1f}x (objective gap {row['rel_objective_gap_max']:+.1e}) |")
    for m, rows in _by_m(r.get("libs", [])):
        ours = rows.get("invgan")
        libs = {k: v for k, v in rows.items() if k not in ("invgan", "invgan-fista")}
        if ours is None or not libs:
            continue
        best = min(libs, key=lambda k: libs[k]["seconds_per_image"])
        b = libs[best]
        others = ", ".join(f"{k} {v['seconds_per_image']:.2f}" for k, v in sorted(libs.items()) if k != best)
        lines.append(f"| {_lasso_name(ours['basis'])}, m = {m}, against "
                     f"the libraries (objective within 1e-6 of the best) | {ours['seconds_per_image']:.3f} s/image "
                     f"({ours['invgan_solver']}, {ours['images']} faces in one batch, {ours['certified_1e4']}/{ours['images']} "
                     f"certified at 1e-4; excess {ours['rel_excess_max']:.1e}) | fastest library: {best} (tol "
                     f"{b['lib_tol']:g}) {b['seconds_per_image']:.2f} s/image (excess {b['rel_excess_max']:.1e}; "
                     f"{others}) | {b['seconds_per_image'] / ours['seconds_per_image']:.1f}x |")
    if "main" in r:
        b = r["main"]
        times = lambda v: ", ".join(f"{k} {t:.3f}" for k, t in v["s_per_image"].items())
        lines.append(f"| main job `{b['command']}` | {b['invgan']['wall_s']:.1f} s wall ({times(b['invgan'])} s/image; "
                     f"{b['invgan']['minor_page_faults'] / 1e6:.1f} M page faults, {b['invgan']['system_s']:.0f} s system) "
                     f"| C allocator's defaults (`INVGAN_KEEP_FREED_MEMORY=0`): {b['default_allocator']['wall_s']:.1f} s "
                     f"({times(b['default_allocator'])}; {b['default_allocator']['minor_page_faults'] / 1e6:.1f} M, "
                     f"{b['default_allocator']['system_s']:.0f} s) | {b['speedup']:.2f}x (largest per-image MSE "
                     f"difference {max(b['mse_max_abs_diff'].values()):.1e}) |")
    if "sweep" in r:
        s = r["sweep"]
        lines.append(f"| sweep {s['recipe']} ({s['cells_done']}/{s['cells_total']} cells, {s['num_images']} images, "
                     f"{', '.join(s['devices'])}) | {s['cell_seconds_total'] / 60:.0f} min, sum of the cells' recorded times "
                     f"(not rerun here{'; ' + ', '.join(s['cpus']) if s.get('cpus') else ''}) | | |")
    m = r["machine"]
    lines.append("")
    from invgan.runtime import cpu_label

    lines.append(f"Machine: {cpu_label(m)} ({m['cpu_cores']} cores, {m['torch_threads']} torch threads)"
                 + (f", GPU {m['gpu']}" if m["gpu"] else "") + f"; torch {m['torch']}. Command: `{r['command']}`.")
    if "updated_by" in r:
        lines.append(f"Sweep row refreshed from its folder by `{r['updated_by']}`.")
    return "\n".join(lines)


def _lasso_name(basis: str) -> str:
    """The table's name of a Lasso row: Lasso-DCT, Lasso-wavelet."""
    return f"Lasso-{basis.upper() if basis == 'dct' else basis}"


def _by_m(rows):
    """bench_lasso_libs rows grouped by (m, basis): [(m, {solver: row})], in order."""
    out = {}
    for row in rows:
        out.setdefault((row["m"], row["basis"]), {})[row["solver"]] = row
    return [(m, v) for (m, _), v in out.items()]


def _med(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="docs/bench.json")
    ap.add_argument("--sweep", help="a sweep folder whose recorded wall time to report")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--csgm-images", type=int, default=8)
    ap.add_argument("--csgm-iters", type=int, default=200)
    ap.add_argument("--lasso-images", type=int, default=64)
    ap.add_argument("--lasso-ms", default="100,500", help="comma list of m for the Lasso rows")
    ap.add_argument("--budget-images", type=int, default=16)
    ap.add_argument("--cvxpy-images", type=int, default=1)
    ap.add_argument("--inpaint-images", type=int, default=16)
    ap.add_argument("--main-images", type=int, default=64, help="faces of the main job's row (the README's: 64)")
    ap.add_argument("--libs-ms", default="100,500,2500,10000", help="comma list of m for the libraries' rows")
    ap.add_argument("--libs-rounds", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of " + ",".join(BENCHMARKS))
    ap.add_argument("--update", action="store_true",
                    help="keep the skipped benchmarks' results (and their machine and command) from --out")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    if skip - set(BENCHMARKS):
        sys.exit(f"bench: --skip takes {','.join(BENCHMARKS)}, got {a.skip!r}")
    r = {"command": "python scripts/bench.py " + " ".join(sys.argv[1:]), "machine": machine(a.device)}
    if a.update:
        r = carried_over(Path(a.out), skip, r)
    t_all = time.time()
    if "train" not in skip:
        r["train"], r["train_seconds"], r["train_command"] = run_script(
            ["scripts/bench_train.py", "--device", a.device, "--steps", str(a.train_steps), "--warmup", "2",
             "--rounds", "3", "--batch-size", "64"])
    if "csgm" not in skip:
        res, r["csgm_seconds"], r["csgm_command"] = run_script(
            ["scripts/bench_cs.py", "--device", a.device, "--images", str(a.csgm_images), "--iters",
             str(a.csgm_iters), "--skip", "lasso,budget,memory"])
        r["csgm"] = res["csgm"]
    if "passes" not in skip:
        r["passes"], r["passes_seconds"], r["passes_command"] = run_script(["scripts/bench_passes.py"])
    if "budget" not in skip:
        res, r["budget_seconds"], r["budget_command"] = run_script(
            ["scripts/bench_cs.py", "--device", a.device, "--images", str(a.budget_images), "--skip", "lasso,csgm,memory"])
        r["budget"] = res["budget"]
    if "inpaint" not in skip:
        res, r["inpaint_seconds"], r["inpaint_command"] = run_script(
            ["scripts/inpaint_budgets.py", "bench", "--device", a.device, "--num-images", str(a.inpaint_images)])
        r["inpaint"] = res["inpaint"]
    if "lasso" not in skip:
        res, r["lasso_seconds"], r["lasso_command"] = run_script(
            ["scripts/bench_cs.py", "--device", a.device, "--images", str(a.lasso_images), "--cvxpy-images",
             str(a.cvxpy_images), "--ms", a.lasso_ms, "--skip", "csgm,budget,memory"])
        r["lasso"] = res["lasso"]
    if "libs" not in skip:
        res, r["libs_seconds"], r["libs_command"] = run_script(
            ["scripts/bench_lasso_libs.py", "--ms", a.libs_ms, "--bases", "dct", "--rounds", str(a.libs_rounds)])
        r["libs"] = res["rows"]
    if "main" not in skip:
        t0 = time.time()
        r["main"] = bench_main_job(a.main_images)
        r["main_seconds"], r["main_command"] = time.time() - t0, r["main"]["command"]
    if a.sweep:
        r["sweep"] = sweep_time(Path(a.sweep))
    r["seconds"] = time.time() - t_all
    r["table_markdown"] = table(r)
    sys.path.insert(0, str(REPO))
    from invgan.fileio import write_json, write_text

    write_json(a.out, r)
    write_text(Path(a.out).with_suffix(".md"), r["table_markdown"] + "\n")
    print(r["table_markdown"])


if __name__ == "__main__":
    main()
