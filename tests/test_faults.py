"""Interruptions: `invgan cs` and `invgan sweep` killed (SIGKILL, SIGINT) at random points, then
rerun, give exactly the results of an uninterrupted run and leave no temporary file; a run folder
holds a metrics.json only beside complete outputs. (Training: tests/test_train.py.)"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, default_sigint, run_cli

SIGNALS = [signal.SIGKILL, signal.SIGINT]


def _start(args):
    return subprocess.Popen([sys.executable, "-m", "invgan", *map(str, args)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def _interrupt(args, delay, sig):
    proc = _start(args)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    return proc.returncode


def _temporaries(folder: Path):
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".staging"))


def _results(rows):
    return sorted((r["id"], r["method"], str(r.get("cell", "")), r["mse"], r["psnr"], r["ssim"]) for r in rows)


def test_cs_interrupted_then_rerun_equals_uninterrupted(tiny_ckpt, tmp_path):
    args = ["cs", "--input", "gen-span", "--generator", tiny_ckpt, "--num-images", 2, "--iters", 40,
            "--methods", "dcgan,lasso-dct", "--measurements", 200, "--quiet"]
    t0 = time.time()
    ref = run_cli(*args, "--out", tmp_path / "ref")
    took = time.time() - t0
    assert ref.returncode == 0, ref.stderr
    expect = _results(json.loads((tmp_path / "ref" / "metrics.json").read_text())["rows"])
    out = tmp_path / "cut"
    rng = random.Random(0)
    for sig in SIGNALS:
        code = _interrupt([*args, "--out", out], rng.uniform(0.3, 1.1) * took, sig)
        # 130: interrupted (SIGINT); -2: SIGINT during the interpreter's exit, after the run finished
        assert code in (0, -signal.SIGKILL, 130) or (code == -signal.SIGINT and (out / "metrics.json").is_file()), code
        files = {p.name for p in out.iterdir() if not p.name.startswith(".")} if out.is_dir() else set()
        # complete outputs or none: a metrics.json always has the others beside it, and no output
        # file appears without one (the outputs are staged and renamed into place, metrics.json last)
        assert files in (set(), {"metrics.json", "results.csv", "images.npz", "grid.png"}), files
    res = run_cli(*args, "--out", out)
    assert res.returncode == 0, res.stderr
    assert _results(json.loads((out / "metrics.json").read_text())["rows"]) == expect
    assert not _temporaries(out)


def test_sweep_interrupted_then_rerun_equals_uninterrupted(tiny_ckpt, tmp_path):
    recipe = tmp_path / "faults.toml"
    recipe.write_text('[sweep]\nexperiment = "cs"\nmethods = ["lasso-dct", "dcgan"]\nnum_images = 2\n'
                      f'[settings]\ninput = "gen-span"\ngenerator = "{tiny_ckpt}"\niters = 40\n'
                      '[grid]\nmeasurements = [100, 300]\n')
    t0 = time.time()
    ref = run_cli("sweep", "--recipe", recipe, "--out", tmp_path / "ref", "--quiet")
    took = time.time() - t0
    assert ref.returncode == 0, ref.stderr
    expect = _results(json.loads((tmp_path / "ref" / "results.json").read_text())["rows"])
    out = tmp_path / "cut"
    rng = random.Random(1)
    for sig in SIGNALS:
        _interrupt(["sweep", "--recipe", recipe, "--out", out, "--quiet"], rng.uniform(0.3, 1.0) * took, sig)
    # a damaged cell file (a disk problem, an editor) is reported by name and recomputed
    cells = sorted((out / "cells").glob("*.json"))
    if cells:
        cells[0].write_text('{"name": "cut off')
    res = run_cli("sweep", "--recipe", recipe, "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    if cells:
        assert f"{cells[0]} is damaged" in res.stderr
    merged = json.loads((out / "results.json").read_text())
    assert merged["complete"] and _results(merged["rows"]) == expect
    assert not _temporaries(out)


def test_a_different_recipe_on_a_running_sweeps_folder_is_refused(tiny_ckpt, tmp_path):
    base = '[sweep]\nexperiment = "cs"\nmethods = ["lasso-dct"]\nnum_images = 2\n[settings]\ninput = "gen-span"\n' \
           f'generator = "{tiny_ckpt}"\n[grid]\n'
    (tmp_path / "a.toml").write_text(base + "measurements = [100, 200]\n")
    (tmp_path / "b.toml").write_text(base + "measurements = [300]\n")
    out = tmp_path / "sw"
    procs = [_start(["sweep", "--recipe", tmp_path / n, "--out", out, "--quiet"]) for n in ("a.toml", "b.toml")]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2], (codes, errs)
    loser = errs[codes.index(2)]
    assert "holds a sweep of a different recipe" in loser and "Traceback" not in loser
    winner = json.loads((out / "sweep.json").read_text())["recipe"]["name"]
    assert json.loads((out / "results.json").read_text())["complete"]
    assert {json.loads(p.read_text())["cell"]["measurements"] for p in (out / "cells").glob("*.json")} == \
        ({100, 200} if winner == "a" else {300})


def test_stale_temporary_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    from invgan.fileio import write_text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".checkpoint.pt.{dead.pid}.abcd.tmp"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".checkpoint.pt.{os.getpid()}.efgh.tmp"  # a writer still running: kept
    live.write_bytes(b"y")
    write_text(tmp_path / "checkpoint.pt", "new")
    assert not stale.exists() and live.exists()
    assert (tmp_path / "checkpoint.pt").read_text() == "new"
