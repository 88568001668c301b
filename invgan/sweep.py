"""Sweeps: run an experiment over a grid of settings, one result file per finished cell.

A recipe (TOML) names the experiment, its methods, fixed settings and a grid:

    [sweep]
    experiment = "cs"                         # "cs" (invgan cs) or "inpaint" (invgan inpaint)
    methods = ["dcgan", "lasso-dct"]
    num_images = 64
    [settings]                                # fixed fields of CSConfig / InpaintConfig
    noise_std = 0.01
    [grid]                                    # lists; every combination x every method is a cell
    measurements = [20, 50, 100]

A cell is one method at one grid point, run on all images at once (one batch). Each finished
cell is written at once to OUT/cells/<cell>.json (rows, summary, wall time) and
OUT/cells/<cell>.npz (the first few reconstructions, uint8); a rerun skips finished cells, so an
interrupted sweep resumes. Within a cell, the solver saves its state every minute to
OUT/partial/<cell>/ (see ``invgan.resume``), so an interrupted cell continues where it stopped
rather than from the start; a cell's recorded time includes its interrupted runs' solve time.
Finished solves that another cell reuses (the ``dcgan-reg`` cell's solve is the ``sparse-gen``
cell's start at the same grid point) are kept in OUT/solutions/ (``invgan.resume.SolutionCache``),
so each is computed once per sweep folder; the reusing cell's rows still count its time.
``shard=(i, n)`` runs cells i, i+n, i+2n, ...; under torchrun the shard is the process's RANK / WORLD_SIZE and each process takes GPU LOCAL_RANK. Every process
merges the cell files present into OUT/results.csv and OUT/results.json (one row per image x
method x cell); the last to finish writes the complete set. A process locks a cell while it runs
it (``cell_lock``), so processes whose cells overlap skip each other's running cells;
``run_sweep_jobs`` (``invgan sweep --jobs N``) starts N such processes on one machine, which
share the cells as each frees up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
import tomllib
from pathlib import Path

from invgan.errors import InvganError
from invgan.fileio import write_images_npz, write_json
from invgan.sweepfiles import ORDERS, cell_name, cells

EXPERIMENTS = ("cs", "inpaint")
SAVED_IMAGES = 8


def _config_class(experiment: str):
    if experiment == "cs":
        from invgan.cs import CSConfig
        return CSConfig
    if experiment == "inpaint":
        from invgan.inpaint import InpaintConfig
        return InpaintConfig
    raise InvganError(f"unknown experiment {experiment!r}: use one of {', '.join(EXPERIMENTS)}")


def read_sweep_recipe(path, overrides: dict | None = None) -> dict:
    """Parse and check a sweep recipe; ``overrides`` (e.g. num_images) replace [settings] values."""
    p = Path(path)
    if not p.is_file():
        raise InvganError(f"recipe {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvganError(f"recipe {str(path)!r} is not valid TOML ({exc})") from None
    unknown = set(raw) - {"sweep", "settings", "grid"}
    if unknown:
        raise InvganError(f"recipe {str(path)!r}: unknown table [{sorted(unknown)[0]}]; use [sweep], [settings], [grid]")
    head = dict(raw.get("sweep", {}))
    experiment = head.pop("experiment", "cs")
    cls = _config_class(experiment)
    fields = {f.name for f in dataclasses.fields(cls)} - {"notes", "methods"}
    methods = head.pop("methods", None)
    if not methods or not isinstance(methods, list):
        raise InvganError(f"recipe {str(path)!r}: [sweep] needs a non-empty list 'methods'")
    settings = dict(raw.get("settings", {}))
    for k in list(head):  # num_images, seed, images may sit in [sweep] too
        settings[k] = head.pop(k)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for k in overrides:
        if k not in fields:
            raise InvganError(f"--{k.replace('_', '-')} does not apply to {experiment} sweeps; leave it out")
    settings.update(overrides)
    grid = dict(raw.get("grid", {}))
    for table, keys in (("settings", settings), ("grid", grid)):
        bad = sorted(set(keys) - fields)
        if bad:
            raise InvganError(f"recipe {str(path)!r}: unknown {table} key {bad[0]!r} for a {experiment} "
                              f"sweep; known: {', '.join(sorted(fields))}")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise InvganError(f"recipe {str(path)!r}: grid key {k!r} must be a non-empty list")
        if k in settings:
            raise InvganError(f"recipe {str(path)!r}: {k!r} is both a setting and a grid key")
    recipe = {"name": p.stem, "experiment": experiment, "methods": list(methods),
              "settings": settings, "grid": grid}
    check_cells(recipe)  # fail now, not hours into the sweep
    return recipe


def check_cells(recipe: dict) -> None:
    """Validate every cell's settings, including those that depend on the image shape (m against
    the number of pixel values, the super-resolution factor), before anything runs."""
    from invgan.experiment import expected_image_shape

    shapes = {}
    for cell in cells(recipe):
        cfg = cell_config(recipe, cell)
        cfg.validate()
        check = getattr(cfg, "check_shape", None)
        if check is not None:
            key = (str(cfg.generator), cfg.image_size, str(cfg.images), tuple(cfg.methods), getattr(cfg, "input", None))
            if key not in shapes:
                shapes[key] = expected_image_shape(cfg)
            check(shapes[key])


def cell_config(recipe: dict, cell: dict):
    """The experiment config (CSConfig / InpaintConfig) of one cell of ``recipe``."""
    cls = _config_class(recipe["experiment"])
    kw = {**recipe["settings"], **{k: v for k, v in cell.items() if k != "method"}, "methods": (cell["method"],)}
    for k, v in kw.items():
        if isinstance(v, list):
            kw[k] = tuple(v)
    try:
        return cls(**kw)
    except TypeError as exc:
        raise InvganError(f"bad sweep settings ({exc})") from None


def recipe_hash(recipe: dict) -> str:
    """A short hash that identifies a recipe (its folder refuses another)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_shard(text: str | None) -> tuple[int, int]:
    """"i/n" -> (i, n); None -> torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    if text is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise InvganError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _check_out(out: Path, recipe: dict) -> None:
    """OUT/sweep.json records the recipe; a different recipe in the same folder is an error.

    Checked and written under an exclusive lock (OUT/sweep.lock), so of two sweeps started at once
    on one folder with different recipes, one is refused; with the same recipe, both go on and
    share the cells (as ``--shard`` does)."""
    meta = out / "sweep.json"
    h = recipe_hash(recipe)
    with open(out / "sweep.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if meta.is_file():
                old = _read_json(meta)
                if old is None:
                    raise InvganError(f"{str(meta)!r} is unreadable: delete it to start this folder afresh "
                                      "with this recipe, or use another --out")
                if old.get("hash") != h:
                    raise InvganError(f"{str(out)!r} holds a sweep of a different recipe or settings "
                                      f"({old.get('recipe', {}).get('name')}); use another --out")
            else:
                write_json(meta, {"hash": h, "recipe": recipe})
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_json(path: Path):
    """The JSON object in ``path``, or None if it is unreadable or not an object."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _warn(text: str) -> None:
    import sys

    print(f"invgan: warning: {text}", file=sys.stderr)


def cell_done(out: Path, name: str) -> bool:
    """True if OUT/cells/<name>.json holds a finished cell. A damaged file is reported by name and
    moved aside (<name>.json.corrupt), so the cell is computed again."""
    f = out / "cells" / f"{name}.json"
    if not f.is_file():
        return False
    r = _read_json(f)
    if r is not None and r.get("name") == name and isinstance(r.get("rows"), list) and isinstance(r.get("summary"), dict):
        return True
    _warn(f"{f} is damaged: it is set aside as {f.name}.corrupt and the cell is computed again")
    try:
        f.replace(f.with_name(f.name + ".corrupt"))
    except OSError:
        pass
    return False


def _open_out(out, recipe: dict) -> Path:
    """The sweep folder, created if needed and checked to hold this recipe's sweep (``_check_out``)."""
    from invgan.fileio import check_output_dir

    out = Path(out)
    check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_out(out, recipe)
    return out


def _plan(recipe: dict, out: Path, shard, methods, order: str = "methods") -> tuple[list, list]:
    """This shard's cells (of ``methods`` only, if given; in ``order``) and those not yet finished."""
    if methods:
        bad = [m for m in methods if m not in recipe["methods"]]
        if bad:
            raise InvganError(f"method {bad[0]!r} is not in the recipe ({', '.join(recipe['methods'])})")
    if order not in ORDERS:
        raise InvganError(f"unknown cell order {order!r}: use {' or '.join(ORDERS)}")
    todo = [c for c in cells(recipe, order) if not methods or c["method"] in methods][shard[0]::shard[1]]
    return todo, [c for c in todo if not cell_done(out, cell_name(c))]


def run_sweep(recipe: dict, out, shard=(0, 1), device: str | None = None, progress: bool = True,
              methods=None, merged: bool = True, order: str = "methods") -> dict | None:
    """Run this shard's unfinished cells, then merge; returns the merged results dict.

    ``methods``: run only these of the recipe's methods now (the others stay to do). ``order``:
    "methods" (each method over the whole grid in turn, the default) or "grid" (every method at
    one grid point before the next point: an interrupted sweep then has complete comparisons at
    the first points; ``invgan.sweepfiles.cells``). The order does not change any cell's result;
    it also decides which cells a ``shard`` takes. ``merged``:
    False skips the merge and returns None (``run_sweep_jobs``' workers: their parent merges).
    Several processes on one folder share its cells (``cell_lock``); ``run_sweep_jobs`` starts them.
    """
    from tqdm import tqdm

    out = _open_out(out, recipe)
    if device is None and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    todo, pending = _plan(recipe, out, shard, methods, order)
    if progress:
        print(f"sweep {recipe['name']}: {len(todo)} cells in shard {shard[0]}/{shard[1]}, "
              f"{len(todo) - len(pending)} already done")
    busy = []
    for cell in tqdm(pending, desc="cells", unit="cell", disable=not progress):
        name = cell_name(cell)
        with cell_lock(out, name) as mine:
            if not mine:
                busy.append(name)
            elif not cell_done(out, name):  # else another process finished it meanwhile
                run_cell(recipe, cell, out, device, progress)
    if busy and progress:
        print(f"skipped, as another process is running them: {', '.join(busy)}")
    return merge(out) if merged else None


def _job_worker(recipe: dict, out: str, shard, device, methods, threads: int, order: str = "methods") -> None:
    """One process of ``run_sweep_jobs``: ``threads`` threads, this shard's cells claimed one by one."""
    import sys

    import torch

    from invgan.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    try:
        run_sweep(recipe, out, shard, device, progress=False, methods=methods, merged=False, order=order)
    except InvganError as exc:
        print(f"invgan: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C reaches the workers too: the parent reports it
        sys.exit(130)


def run_sweep_jobs(recipe: dict, out, jobs: int, shard=(0, 1), device: str | None = None, progress: bool = True,
                   methods=None, threads: int | None = None, order: str = "methods") -> dict:
    """Run this shard's unfinished cells in ``jobs`` worker processes on this machine, then merge.

    The workers share the cells dynamically: each walks the shard's cells in ``order`` and runs
    the next one no other worker holds (``cell_lock``) or has finished, so a worker that drew short
    cells takes more of them; the wall time is about the cell time divided by ``jobs``, plus at
    most the longest cell. Each worker uses ``threads`` threads (default: this process's torch
    threads divided among the workers, at least 1). Results equal ``run_sweep``'s up to the
    thread count's effect on float rounding (the Lasso's are exact; README: Scaling). A worker that
    fails is reported after the others end; finished cells are kept, so a rerun resumes.
    """
    import multiprocessing as mp
    import signal
    import threading

    import torch
    from tqdm import tqdm

    if not isinstance(jobs, int) or jobs < 1:
        raise InvganError(f"jobs must be a whole number >= 1, got {jobs!r}")
    out = _open_out(out, recipe)
    todo, pending = _plan(recipe, out, shard, methods, order)
    pending = [cell_name(c) for c in pending]
    threads = threads or max(1, torch.get_num_threads() // jobs)
    if progress:
        print(f"sweep {recipe['name']}: {len(todo)} cells in shard {shard[0]}/{shard[1]}, "
              f"{len(todo) - len(pending)} already done; {jobs} workers of {threads} thread(s)")
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no forked thread pools
    procs = [ctx.Process(target=_job_worker, args=(recipe, str(out), shard, device, methods, threads, order), daemon=True)
             for _ in range(min(jobs, len(pending)))]  # none if nothing is left to do

    def stop(signum, frame):  # `kill PID` of this process: stop the workers as Ctrl-C does
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        for p in procs:
            p.start()
        with tqdm(total=len(pending), desc="cells", unit="cell", disable=not progress) as bar:
            left = set(pending)
            while left:
                for p in procs:
                    p.join(timeout=1.0 / len(procs))
                alive = any(p.is_alive() for p in procs)
                done = {n for n in left if cell_done(out, n)}  # each file read once, when it appears
                left -= done
                bar.update(len(done))
                if not alive:
                    break
        for p in procs:  # every cell is done (or a worker ended): the workers end by themselves
            p.join()
    finally:
        for p in procs:  # interrupted (Ctrl-C, SIGTERM): the workers stop too; their cells resume later
            if p.is_alive():
                p.terminate()
                p.join()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise InvganError(f"{len(failed)} of {len(procs)} sweep workers failed (exit code {failed[0]}); "
                          f"the finished cells are kept in {str(out)!r}: rerun the same command to resume")
    return merge(out)


@contextlib.contextmanager
def cell_lock(out: Path, name: str):
    """Yield True if this process now holds the cell's lock (OUT/locks/<cell>.lock), else False.

    An advisory ``flock``: the system releases it when its holder exits or is killed, so a stale
    lock cannot block a resumed sweep. Two processes with overlapping cells (no ``--shard``, or
    overlapping ``--methods``) thus never run the same cell at once.
    """
    path = out / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_cell(recipe: dict, cell: dict, out: Path, device, progress: bool) -> None:
    """Run one cell and write OUT/cells/<cell>.json (last, meaning "done") and .npz."""
    cfg = cell_config(recipe, cell)
    cfg.device = device or cfg.device
    name = cell_name(cell)
    state_dir = out / "partial" / name
    t0 = time.time()
    if recipe["experiment"] == "cs":
        from invgan.cs import run_cs
        res = run_cs(cfg, None, progress=progress, verbose=False, keep_images=True, state_dir=state_dir,
                     cache_dir=out / "solutions")
    else:
        from invgan.inpaint import run_inpaint
        res = run_inpaint(cfg, None, progress=progress, verbose=False, keep_images=True, state_dir=state_dir,
                          cache_dir=out / "solutions")
    seconds = time.time() - t0 + res.pop("resumed_seconds", 0.0)  # this cell's compute, not "reused_seconds"
    images = res.pop("images")
    for row in res["rows"]:
        for k, v in cell.items():
            row.setdefault(k, v)
        row["cell"] = name
    write_images_npz(out / "cells" / f"{name}.npz", {k: v[:SAVED_IMAGES] for k, v in images.items()})
    import torch

    from invgan.runtime import cpu_facts, onednn_products, peak_rss_mb

    res.update(cell=cell, name=name, seconds=seconds,
               process={"pid": os.getpid(), "host": socket.gethostname(), "threads": torch.get_num_threads(),
                        **cpu_facts(), "onednn_products": onednn_products("cpu"),
                        "peak_rss_mb": peak_rss_mb()})
    write_json(out / "cells" / f"{name}.json", res)  # written last: its presence means "done"
    shutil.rmtree(state_dir, ignore_errors=True)
    if progress:
        from tqdm import tqdm

        s = res["summary"]
        tqdm.write(f"  {name}: " + ", ".join(f"{m} mse {v['mse']['mean']:.4f}" for m, v in s.items())
                   + f" ({seconds:.0f} s)")


def merge(out) -> dict:
    """Collect OUT/cells/*.json into OUT/results.json and OUT/results.csv.

    If another shard finished a cell meanwhile, merge again, so the last writer is complete.
    """
    out = Path(out)
    while True:
        before = sorted(p.name for p in (out / "cells").glob("*.json"))
        result = _merge_once(out)
        if sorted(p.name for p in (out / "cells").glob("*.json")) == before:
            return result


def _merge_once(out: Path) -> dict:
    from invgan.fileio import write_rows_csv

    meta = _read_json(out / "sweep.json")
    if meta is None or "recipe" not in meta:
        raise InvganError(f"{str(out / 'sweep.json')!r} is unreadable: delete it and rerun the sweep there")
    recipe = meta["recipe"]
    done, rows, summaries = {}, [], []
    for f in sorted((out / "cells").glob("*.json")):
        if cell_done(out, f.stem):
            done[f.stem] = _read_json(f)
    for cell in cells(recipe):
        r = done.get(cell_name(cell))
        if r is None:
            continue
        rows += r["rows"]
        for method, s in r["summary"].items():
            summaries.append({"cell": r["name"], **cell, "method": method, "seconds": r["seconds"],
                              **{k: v for k, v in s.items()}})
    missing = [cell_name(c) for c in cells(recipe) if cell_name(c) not in done]
    result = {"recipe": recipe, "complete": not missing, "cells_done": len(done), "cells_missing": missing,
              "cell_seconds_total": sum(r["seconds"] for r in done.values()),
              "devices": sorted({r["config"].get("device", "?") for r in done.values()}),
              "summaries": summaries, "rows": rows}
    write_json(out / "results.json", result)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    write_rows_csv(rows, out / "results.csv", fields)
    return result
