"""Sweep scaling on one machine: one process against worker processes sharing the cells.

    python scripts/bench_scaling.py --out docs/bench_scaling.json          # about 12 minutes, 2 cores

Runs the same small sweep (the cs_paper methods at m = 100 and 500, 16 val faces, 100 Adam steps)
three ways into fresh folders, one after the other, alone on the machine:

1. ``invgan sweep`` (one process, all torch threads): the baseline;
2. ``invgan sweep --jobs J`` (J workers of threads / J threads each, sharing cells as each frees up);
3. J static shards started at once (``OMP_NUM_THREADS=threads/J invgan sweep --shard i/J``), as
   the README's recipe for a machine did before ``--jobs``.

Reports each wall time, the speedups against 1., the per-cell times, and the per-image paired
result differences against 1. (the Lasso's exact solutions must agree to rounding; CSGM's change
with the thread count only by float rounding). From 1.'s measured cell times it also simulates
what N machines (or processes) would take: dynamic sharing (each takes the next free cell, as
``--jobs`` and processes on a shared folder do) against static ``--shard i/N`` striding.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

RECIPE = """
[sweep]
experiment = "cs"
methods = ["dcgan", "lasso-dct", "lasso-wavelet", "dcgan-reg"]
num_images = {images}
seed = 0
[settings]
physics = "gaussian"
noise_std = 0.01
iters = {iters}
[grid]
measurements = [{ms}]
"""


def sweep_cmd(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "invgan", "sweep", "--recipe", str(recipe), "--out", str(out), "--quiet", *extra]


def timed(cmds: list[list[str]], env: dict) -> float:
    t0 = time.time()
    procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"bench_scaling: {' '.join(p.args)} failed:\n{err[-3000:]}")
    return time.time() - t0


def results(out: Path) -> tuple[dict, dict]:
    res = json.loads((out / "results.json").read_text())
    if not res["complete"]:
        sys.exit(f"bench_scaling: {out} is incomplete")
    rows = {(r["cell"], r["method"], r["id"]): r["mse"] for r in res["rows"]}
    secs = {s["cell"]: s["seconds"] for s in res["summaries"]}
    return rows, secs


def simulate(seconds: list[float], n: int) -> tuple[float, float]:
    """Wall time of cells (in recipe order) on n workers: dynamic (each worker takes the next cell
    when it frees up) and static (worker i takes cells i, i + n, ...)."""
    free = [0.0] * n
    for s in seconds:
        k = min(range(n), key=free.__getitem__)
        free[k] += s
    static = max(sum(seconds[i::n]) for i in range(n))
    return max(free), static


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/bench_scaling.json")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--ms", default="100,500")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    import torch

    threads = torch.get_num_threads()
    per = max(1, threads // a.jobs)
    r = {"command": "python scripts/bench_scaling.py " + " ".join(sys.argv[1:]), "cpu_cores": os.cpu_count(),
         "torch_threads": threads, "jobs": a.jobs, "threads_per_job": per, "images": a.images, "iters": a.iters,
         "ms": [int(v) for v in a.ms.split(",")]}
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recipe = tmp / "scaling.toml"
        recipe.write_text(RECIPE.format(images=a.images, iters=a.iters, ms=a.ms))
        one, jobs, shards = tmp / "one", tmp / "jobs", tmp / "shards"
        r["one_process_s"] = timed([sweep_cmd(recipe, one)], dict(env, OMP_NUM_THREADS=str(threads)))
        print(f"one process, {threads} threads: {r['one_process_s']:.1f} s", flush=True)
        r["jobs_s"] = timed([sweep_cmd(recipe, jobs, "--jobs", str(a.jobs))], dict(env, OMP_NUM_THREADS=str(threads)))
        print(f"--jobs {a.jobs}: {r['jobs_s']:.1f} s", flush=True)
        r["static_shards_s"] = timed([sweep_cmd(recipe, shards, "--shard", f"{i}/{a.jobs}") for i in range(a.jobs)],
                                     dict(env, OMP_NUM_THREADS=str(per)))
        print(f"{a.jobs} static shards: {r['static_shards_s']:.1f} s", flush=True)
        ref, secs_one = results(one)
        for name, folder in (("jobs", jobs), ("static_shards", shards)):
            got, secs = results(folder)
            if got.keys() != ref.keys():
                sys.exit(f"bench_scaling: {name} has other rows than the one-process run")
            diff, paired = {}, {}
            for key, v in got.items():
                diff[key[1]] = max(diff.get(key[1], 0.0), abs(v - ref[key]) / max(ref[key], 1e-12))
                paired.setdefault(key[1], []).append(v - ref[key])
            r[f"{name}_max_rel_mse_diff"] = diff  # per image, largest |this - one process| / one process
            r[f"{name}_paired_mse_diff"] = {  # mean of (this - one process) per image, 95% interval half-width
                k: {"mean": float(np.mean(d)), "ci95": float(1.96 * np.std(d, ddof=1) / np.sqrt(len(d))), "n": len(d)}
                for k, d in paired.items()}
            r[f"{name}_cell_seconds"] = secs
        r["one_process_cell_seconds"] = secs_one
    r["jobs_speedup"] = r["one_process_s"] / r["jobs_s"]
    r["static_shards_speedup"] = r["one_process_s"] / r["static_shards_s"]
    # N workers of the one-process cell times (each cell on the whole machine): an upper bound on
    # what N machines gain, as a cell on one core of a shared machine is slower than on both
    order = list(secs_one.values())
    r["simulated"] = []
    for n in (1, 2, 4, 8, 16):
        dyn, sta = simulate(order, n)
        r["simulated"].append({"workers": n, "dynamic_s": dyn, "static_s": sta, "dynamic_speedup": sum(order) / dyn,
                               "static_speedup": sum(order) / sta})
    sys.path.insert(0, str(REPO))
    from invgan.fileio import write_json

    write_json(a.out, r)
    print(json.dumps({k: v for k, v in r.items() if not k.endswith("cell_seconds")}, indent=1))


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()
