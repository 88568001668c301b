import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_main, REPO, assert_user_error, run_cli


def write_recipe(path, ckpt, images, extra_grid=""):
    path.write_text(f"""
[sweep]
experiment = "cs"
methods = ["dcgan", "lasso-dct"]
num_images = 2
images = "{images}"
[settings]
generator = "{ckpt}"
iters = 3
lasso_tol = 0.05
[grid]
measurements = [20, 100]
{extra_grid}
""")
    return path


def cell_mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}


def test_sweep_shards_resume_merge_and_plot(tiny_ckpt, celeba_root, tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", tiny_ckpt, celeba_root, "noise_std = [0.01, 1.0]")
    out = tmp_path / "sw"
    p = run_main("sweep", "--recipe", recipe, "--out", out, "--shard", "1/3", "--quiet")
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert not res["complete"] and res["cells_done"] == 3 and len(res["cells_missing"]) == 5  # 8 cells
    p = run_main("sweep", "--recipe", recipe, "--out", out, "--methods", "dcgan", "--quiet")  # a subset now
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["cells_done"] == 6 and all(c.startswith("method=lasso") for c in res["cells_missing"])
    first = cell_mtimes(out)
    # the rest: finished cells are skipped, not recomputed
    p = run_main("sweep", "--recipe", recipe, "--out", out)
    assert p.returncode == 0, p.stderr
    assert "6 already done" in p.stdout and "8 of 8 cells done" in p.stdout
    after = cell_mtimes(out)
    assert all(after[k] == v for k, v in first.items()) and len(after) == 8
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and len(res["rows"]) == 8 * 2
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 16
    assert {(r["method"], r["m"], r["noise_std"]) for r in rows} == {
        (meth, m, n) for meth in ("dcgan", "lasso-dct") for m in ("20", "100") for n in ("0.01", "1.0")}
    assert all(int(r["id"][:6]) >= 162771 for r in rows)
    # every cell keeps a few reconstructions for image grids
    npz = np.load(next((out / "cells").glob("method=dcgan*.npz")))
    assert npz["original"].shape == (2, 64, 64, 3) and npz["dcgan"].dtype == np.uint8
    # a second run does nothing at all
    p = run_main("sweep", "--recipe", recipe, "--out", out, "--quiet")
    assert p.returncode == 0 and cell_mtimes(out) == after

    from invgan.plots import curves, load_results

    data = curves(load_results(out)[0], "m", "mse")  # the noise varies too: one series per noise level
    assert len(data) == 4
    key = "lasso-dct, noise_std=0.01"
    lasso_20 = [float(r["mse"]) for r in rows if r["method"] == "lasso-dct" and r["m"] == "20" and r["noise_std"] == "0.01"]
    assert data[key][0].tolist() == [20, 100]
    assert abs(data[key][1][0] - np.mean(lasso_20)) < 1e-12 and data[key][3][0] == 2
    for args, kind in [([], "curve m"), (["--x", "noise_std"], "curve noise_std"), (["--kind", "grid"], "grid")]:
        fig = tmp_path / f"{kind.replace(' ', '_')}.png"
        p = run_main("plot", out, "--out", fig, *args)
        assert p.returncode == 0 and kind in p.stdout, p.stderr
        assert fig.stat().st_size > 5_000
    table = (tmp_path / "curve_m.md").read_text()  # the plotted numbers, beside the figure
    assert "| Lasso (DCT), noise_std=0.01 |" in table and f"{np.mean(lasso_20):.3g} +- " in table
    secs = table.split("| seconds per image, at m = | 20 | 100 |")[1].splitlines()  # the second table
    dcgan_20 = [float(r["seconds"]) for r in rows if r["method"] == "dcgan" and r["m"] == "20" and r["noise_std"] == "1.0"]
    assert f"| DCGAN, noise_std=1.0 | {np.mean(dcgan_20):.2g} | " in "\n".join(secs)
    p = run_main("plot", out / "results.csv", "--out", tmp_path / "csv.png", "--methods", "dcgan", "--logy")
    assert p.returncode == 0, p.stderr


def test_sweep_under_torchrun_splits_cells(tiny_ckpt, celeba_root, tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", tiny_ckpt, celeba_root)
    out = tmp_path / "sw"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "invgan", "sweep", "--recipe", str(recipe), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "shard 0/2" not in p.stdout  # --quiet
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and res["cells_done"] == 4 and len(res["rows"]) == 8


def test_sweep_skips_a_cell_another_process_is_running(tiny_ckpt, celeba_root, tmp_path):
    from invgan.sweep import cell_lock

    recipe = write_recipe(tmp_path / "r.toml", tiny_ckpt, celeba_root)
    out = tmp_path / "sw"
    busy = "method=dcgan__measurements=100"
    with cell_lock(out, busy) as mine:  # as if a second `invgan sweep` were running this cell
        assert mine
        p = run_cli("sweep", "--recipe", recipe, "--out", out)
        assert p.returncode == 0, p.stderr
        assert f"skipped, as another process is running them: {busy}\n" in p.stdout
        res = json.loads((out / "results.json").read_text())
        assert res["cells_missing"] == [busy] and not (out / "partial" / busy).exists()
    p = run_cli("sweep", "--recipe", recipe, "--out", out, "--quiet")  # the holder is gone: the cell runs
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "results.json").read_text())["complete"]


def test_sweep_user_errors(tiny_ckpt, celeba_root, tmp_path):
    good = write_recipe(tmp_path / "r.toml", tiny_ckpt, celeba_root)
    (tmp_path / "bad_key.toml").write_text('[sweep]\nmethods = ["dcgan"]\n[grid]\nmeasurementz = [1]\n')
    (tmp_path / "bad_method.toml").write_text('[sweep]\nmethods = ["magic"]\n')
    (tmp_path / "bad_toml.toml").write_text('[sweep\n')
    (tmp_path / "bad_m.toml").write_text('[sweep]\nmethods = ["lasso-dct"]\n[grid]\nmeasurements = [0]\n')
    for name, needle in [("bad_key", "unknown grid key 'measurementz'"), ("bad_method", "unknown method 'magic'"),
                         ("bad_toml", "not valid TOML"), ("missing", "does not exist")]:
        assert_user_error(run_main("sweep", "--recipe", tmp_path / f"{name}.toml", "--out", tmp_path / name), needle)
    assert_user_error(run_main("sweep", "--recipe", good, "--shard", "2/2", "--out", tmp_path / "o"), "--shard must be")
    assert_user_error(run_main("sweep", "--recipe", good, "--methods", "dcgan-reg", "--out", tmp_path / "o"),
                      "'dcgan-reg' is not in the recipe")
    # a folder holding another recipe's sweep is not mixed with this one
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "sweep.json").write_text(json.dumps({"hash": "other", "recipe": {"name": "x"}}))
    assert_user_error(run_main("sweep", "--recipe", good, "--out", tmp_path / "o2"), "different recipe")
    assert_user_error(run_main("plot", tmp_path / "nothing", "--out", tmp_path / "f.png"), "do not exist")
    assert_user_error(run_main("plot", tmp_path, "--out", tmp_path / "f.png"), "holds no results.json")


def test_sweep_overrides_replace_recipe_settings():
    from invgan.sweep import cell_config, cells, read_sweep_recipe

    path = REPO / "recipes" / "cs_paper.toml"
    plain = read_sweep_recipe(path)
    assert plain["settings"]["lasso_tol"] == 1e-4 and plain["settings"]["budget"] == "auto"
    r = read_sweep_recipe(path, {"lasso_tol": 1e-6, "budget": "paper", "num_images": 8, "images": None})
    assert r["settings"]["lasso_tol"] == 1e-6 and r["settings"]["budget"] == "paper"
    assert r["settings"]["num_images"] == 8 and "images" not in r["settings"]  # None: not overridden
    cfg = cell_config(r, cells(r)[0])
    assert (cfg.lasso_tol, cfg.budget, cfg.num_images) == (1e-6, "paper", 8)
    from invgan.sweep import recipe_hash
    assert recipe_hash(r) != recipe_hash(plain)  # a folder made without the override refuses it


@pytest.mark.parametrize("name", ["cs_paper", "cs_beyond", "cs_noise", "cs_genspan", "superres", "inpaint_paper"])
def test_shipped_recipes_are_valid(name):
    from invgan.sweep import cells, read_sweep_recipe

    r = read_sweep_recipe(REPO / "recipes" / f"{name}.toml")
    assert len(cells(r)) >= 4
    if name == "cs_paper":
        assert r["grid"]["measurements"] == [20, 50, 100, 200, 500, 1000, 2500, 5000, 7500, 10000]
        assert set(r["methods"]) == {"dcgan", "dcgan-reg", "lasso-dct", "lasso-wavelet"}
    if name == "cs_beyond":  # the paper's grid, its four methods and Sparse-Gen, all on the lbfgs budget
        assert r["grid"]["measurements"] == [20, 50, 100, 200, 500, 1000, 2500, 5000, 7500, 10000]
        assert set(r["methods"]) == {"dcgan", "dcgan-reg", "lasso-dct", "lasso-wavelet", "sparse-gen"}
        assert r["settings"]["budget"] == "lbfgs"
    if name == "cs_noise":
        assert r["settings"]["measurements"] == 2500 and r["settings"]["iters"] == 5000


def test_log_axis_labels_skip_crowded_ticks():
    from invgan.plots import tick_labels_shown

    paper_m = [20, 50, 100, 200, 500, 1000, 2500, 5000, 7500, 10000]
    assert tick_labels_shown(paper_m) == set(paper_m) - {7500}
    assert tick_labels_shown([100, 5000, 7500]) == {100, 7500}  # the last value is always labelled
    noise = [0.01, 1, 10, 20, 50, 100]
    assert tick_labels_shown(noise) == set(noise)


def test_curves_table_marks_cells_not_run():
    from invgan.plots import curves, curves_table

    rows = [{"method": "dcgan", "m": m, "mse": v} for m, v in [(20, 0.1), (20, 0.3), (500, 0.02), (500, 0.02)]]
    rows += [{"method": "lasso-dct", "m": 20, "mse": 0.5}, {"method": "lasso-dct", "m": 20, "mse": 0.5}]
    lines = curves_table(curves(rows, "m"), "m").splitlines()
    assert lines[0] == "| mse, mean +- 95% interval, at m = | 20 | 500 |"
    ci = 1.96 * np.std([0.1, 0.3], ddof=1) / np.sqrt(2)
    assert lines[2] == f"| DCGAN | 0.2 +- {ci:.2g} | 0.02 +- 0 |"
    assert lines[3] == "| Lasso (DCT) | 0.5 +- 0 | - |"


def test_inpaint_sweep_grid_and_table(tiny_ckpt, celeba_root, tmp_path):
    recipe = tmp_path / "ip.toml"
    recipe.write_text(f"""
[sweep]
experiment = "inpaint"
methods = ["yeh", "biharmonic"]
num_images = 2
images = "{celeba_root}"
[settings]
generator = "{tiny_ckpt}"
iters = 3
blends = ["poisson", "none"]
[grid]
mask = ["center", "random"]
""")
    out = tmp_path / "sw"
    p = run_main("sweep", "--recipe", recipe, "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and len(res["rows"]) == 2 * 2 * 3  # images x masks x (yeh+poisson, yeh+none, biharmonic)

    from invgan.plots import grid_rows

    labels = [label for label, _ in grid_rows(out, res["summaries"])]
    assert labels[0] == "original"
    assert [l for l in labels if l.startswith("input")] == ["input, center", "input, random"]  # once per mask
    assert all(r["cell"].endswith("mask=" + r["mask"]) for r in res["rows"])  # the grid value, not a description
    assert {r["mask_description"] for r in res["rows"] if r["mask"] == "center"} == {"center 32x32"}
    hole = [float(r["psnr_hole"]) for r in res["rows"] if r["method"] == "yeh+poisson" and r["cell"] == "method=yeh__mask=random"]
    assert f"Yeh + Poisson, random\n{np.mean(hole):.1f} dB in the hole" in labels
    assert sum(l.startswith("biharmonic, ") for l in labels) == 2 and len(labels) == 1 + 2 * 4

    p = run_main("plot", out, "--out", tmp_path / "grid.png")  # auto: an inpainting sweep gives a grid
    assert p.returncode == 0 and "(grid)" in p.stdout, p.stderr
    assert (tmp_path / "grid.png").stat().st_size > 5_000
    table = (tmp_path / "grid.md").read_text().splitlines()
    assert table[0] == "| mask | method | psnr_hole | ssim_hole | psnr | ssim | mse |"
    assert [l.split(" | ")[:2] for l in table[2:]] == [
        [f"| {mask}", name] for mask in ("center", "random") for name in ("Yeh + Poisson", "Yeh, plain composite", "biharmonic")]
    assert table[5].split(" | ")[2].startswith(f"{np.mean(hole):.4g} +- ")


def test_paired_difference_pairs_images_by_id():
    from invgan import InvganError
    from invgan.plots import paired_difference

    rows = [{"method": "a", "m": 20, "id": i, "mse": v} for i, v in [("x", 0.5), ("y", 0.3), ("z", 0.9)]]
    rows += [{"method": "b", "m": 20, "id": i, "mse": v} for i, v in [("z", 0.8), ("x", 0.2), ("y", 0.35)]]
    rows += [{"method": "a", "m": 50, "id": "x", "mse": 0.1}]  # b not run at m = 50: no pair
    (d,) = paired_difference(rows, "a", "b")
    diffs = [0.3, -0.05, 0.1]
    assert d["m"] == 20 and d["n"] == 3 and d["b_better"] == 2
    assert abs(d["mean"] - np.mean(diffs)) < 1e-12
    assert abs(d["ci95"] - 1.96 * np.std(diffs, ddof=1) / np.sqrt(3)) < 1e-12
    with pytest.raises(InvganError, match="no images with both"):
        paired_difference(rows, "a", "c")


def test_paired_diff_script_compares_one_method_across_two_runs(tmp_path):
    def write(path, rows):
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, ["id", "method", "m", "mse"])
            w.writeheader()
            w.writerows({"id": i, "method": meth, "m": 768, "mse": v} for meth, i, v in rows)

    write(tmp_path / "fast.csv", [("dcgan", "x", 0.5), ("dcgan", "y", 0.3), ("dcgan", "z", 0.9), ("lasso-dct", "x", 9)])
    write(tmp_path / "paper.csv", [("dcgan", "z", 0.8), ("dcgan", "x", 0.2), ("dcgan", "y", 0.35), ("dcgan", "w", 5)])
    out = subprocess.run([sys.executable, "scripts/paired_diff.py", tmp_path / "fast.csv", "dcgan", "--against",
                          tmp_path / "paper.csv"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    row = out.stdout.strip().splitlines()[-1].split(" | ")
    diffs = [0.3, -0.05, 0.1]
    mean, ci = np.mean(diffs), 1.96 * np.std(diffs, ddof=1) / np.sqrt(3)
    base = np.mean([0.8, 0.2, 0.35])  # B's mean on the paired images only ("w" has no pair)
    assert row[1:] == ["3", f"{base:.5g}", f"{mean:+.2g} +- {ci:.2g}", f"{(mean + ci) / base:+.2%}", "2 |"]


def test_cell_order_grid_runs_every_method_at_a_point_first(tiny_ckpt, celeba_root, tmp_path):
    from invgan.sweepfiles import cells

    recipe = {"methods": ["a", "b"], "grid": {"measurements": [20, 100]}}
    assert [(c["method"], c["measurements"]) for c in cells(recipe)] == [("a", 20), ("a", 100), ("b", 20), ("b", 100)]
    assert [(c["method"], c["measurements"]) for c in cells(recipe, "grid")] == [
        ("a", 20), ("b", 20), ("a", 100), ("b", 100)]
    # the order decides which cells a shard takes: 0/2 in grid order is every dcgan cell
    r = write_recipe(tmp_path / "r.toml", tiny_ckpt, celeba_root)
    out = tmp_path / "sw"
    p = run_main("sweep", "--recipe", r, "--out", out, "--shard", "0/2", "--order", "grid", "--quiet")
    assert p.returncode == 0, p.stderr
    assert sorted(cell_mtimes(out)) == ["method=dcgan__measurements=100.json", "method=dcgan__measurements=20.json"]
    p = run_main("sweep", "--recipe", r, "--out", out, "--shard", "0/2", "--quiet")  # methods order: + lasso-dct at 20
    assert p.returncode == 0, p.stderr
    assert "3 of 4 cells done" in p.stdout and len(cell_mtimes(out)) == 3
    assert_user_error(run_main("sweep", "--recipe", r, "--out", out, "--order", "random"), "invalid choice")


def test_against_best_picks_the_best_baseline_per_m_and_judges_it():
    from invgan import InvganError
    from invgan.plots import against_best

    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(40)]
    rows = []

    def add(method, m, values):
        rows.extend({"method": method, "m": m, "id": i, "mse": float(v)} for i, v in zip(ids, values))

    base = rng.uniform(0.5, 1.5, 40)
    add("p", 20, base)                 # p is best at m = 20
    add("q", 20, base + 0.5)
    add("new", 20, base + 0.01)        # a little worse than p on every image, inside its interval
    add("p", 50, base + 1.0)
    add("q", 50, base)                 # q is best at m = 50
    add("new", 50, base - 0.05)        # below q
    add("p", 100, base)
    add("new", 100, base + 5.0)        # q not run at 100; far worse than p
    table = against_best(rows, "new", ["p", "q"])
    assert [(d["m"], d["best"]) for d in table] == [(20, "p"), (50, "q"), (100, "p")]
    t20, t50, t100 = table
    assert t20["verdict"] == "overlap" and t20["at_least_as_good"]          # +0.01 inside both intervals
    assert abs(t20["diff"] - 0.01) < 1e-12 and t20["diff_ci95"] < 1e-12 and t20["better"] == 0
    assert t50["verdict"] == "below" and t50["better"] == 40 and abs(t50["diff"] + 0.05) < 1e-12
    assert t100["verdict"] == "worse" and not t100["at_least_as_good"] and t100["missing"] == ["q"]
    assert abs(t100["best_mean"] - base.mean()) < 1e-12
    assert abs(t100["best_ci95"] - 1.96 * base.std(ddof=1) / np.sqrt(40)) < 1e-12
    with pytest.raises(InvganError, match="both the method and a baseline"):
        against_best(rows, "p", ["p", "q"])
    with pytest.raises(InvganError, match="no m at which"):
        against_best(rows, "new", ["r"])


def test_sweep_jobs_share_the_cells(tiny_ckpt, celeba_root, tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", tiny_ckpt, celeba_root)
    one, two = tmp_path / "one", tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    p = run_cli("sweep", "--recipe", recipe, "--out", one, "--quiet", env=env)
    assert p.returncode == 0, p.stderr
    p = run_cli("sweep", "--recipe", recipe, "--out", two, "--jobs", "2", env=env)
    assert p.returncode == 0, p.stderr
    assert "2 workers of 1 thread(s)" in p.stdout and "4 of 4 cells done" in p.stdout
    res = json.loads((two / "results.json").read_text())
    assert res["complete"] and len(res["rows"]) == 8
    cells_two = [json.loads(f.read_text()) for f in (two / "cells").glob("*.json")]
    # every cell ran in one of the two workers, each of one thread
    assert {c["process"]["threads"] for c in cells_two} == {1}
    assert len({c["process"]["pid"] for c in cells_two}) <= 2
    # and names the CPU that timed it (invgan.runtime.cpu_facts) and the library of its products
    from invgan.runtime import onednn_products

    assert all(c["process"]["simd"] in ("avx512", "avx2", "other") and "cpu_family" in c["process"]
               and c["process"]["onednn_products"] is onednn_products("cpu") for c in cells_two)
    assert all(c["process"]["peak_rss_mb"] > 50 for c in cells_two)  # (torch alone takes more)
    # the same results as one process of two threads: the Lasso's to rounding, CSGM's to float noise
    ref = {(r["cell"], r["method"], r["id"]): r for r in json.loads((one / "results.json").read_text())["rows"]}
    got = {(r["cell"], r["method"], r["id"]): r for r in res["rows"]}
    assert got.keys() == ref.keys()
    for k, r in got.items():
        tol = 1e-6 if r["method"].startswith("lasso") else 1e-3
        assert abs(r["mse"] - ref[k]["mse"]) <= tol * max(1.0, ref[k]["mse"]), (k, r["mse"], ref[k]["mse"])
    # a rerun has nothing left to do and starts no worker
    p = run_cli("sweep", "--recipe", recipe, "--out", two, "--jobs", "2")
    assert p.returncode == 0 and "4 already done" in p.stdout


FAILING_PLUGIN = """
import os
import time
from pathlib import Path
import invgan


class Fails(invgan.Method):
    name = "fails-at-1000"

    def reconstruct(self, y, physics, state=None, progress=False):
        if physics.m == 1000:  # once the other worker has finished the other cell (so the test is
            done = Path(os.environ["WAIT_FOR"])  # deterministic), die as if killed mid-cell
            for _ in range(600):
                if done.exists():
                    break
                time.sleep(0.2)
            os._exit(9)
        return invgan.Reconstruction(physics.A_adjoint(y).clamp(-1, 1), {})


invgan.register_method("fails-at-1000", lambda **_: Fails(), tasks=("cs",), description="test")
"""


def test_sweep_jobs_report_a_failing_worker(tiny_ckpt, tmp_path):
    (tmp_path / "failing_plugin.py").write_text(FAILING_PLUGIN)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "INVGAN_PLUGINS": "failing_plugin"}
    recipe = tmp_path / "r.toml"
    recipe.write_text('[sweep]\nexperiment = "cs"\nmethods = ["fails-at-1000"]\nnum_images = 2\n'
                      f'[settings]\ninput = "gen-span"\ngenerator = "{tiny_ckpt}"\n'
                      '[grid]\nmeasurements = [1000, 4000]\n')
    out = tmp_path / "o"
    env["WAIT_FOR"] = str(out / "cells" / "method=fails-at-1000__measurements=4000.json")
    p = run_cli("sweep", "--recipe", recipe, "--out", out, "--jobs", "2", env=env)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "1 of 2 sweep workers failed (exit code 9)" in p.stderr and "rerun the same command to resume" in p.stderr
    assert "Traceback" not in p.stderr
    # the other worker's cell is kept; the failed one is still to do
    assert [f.name for f in (out / "cells").glob("*.json")] == ["method=fails-at-1000__measurements=4000.json"]
    assert_user_error(run_main("sweep", "--recipe", recipe, "--jobs", "0", "--out", tmp_path / "o0"), "--jobs")


SLEEPING_PLUGIN = """
import time
import invgan


class Sleeps(invgan.Method):
    name = "sleeps"

    def reconstruct(self, y, physics, state=None, progress=False):
        time.sleep(600)


invgan.register_method("sleeps", lambda **_: Sleeps(), tasks=("cs",), description="test")
"""


def test_sweep_jobs_stop_their_workers_when_killed(tiny_ckpt, tmp_path):
    import signal
    import time

    from invgan.sweep import cell_lock

    (tmp_path / "sleeping_plugin.py").write_text(SLEEPING_PLUGIN)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               INVGAN_PLUGINS="sleeping_plugin")
    recipe = tmp_path / "r.toml"
    recipe.write_text('[sweep]\nexperiment = "cs"\nmethods = ["sleeps"]\nnum_images = 2\n'
                      f'[settings]\ninput = "gen-span"\ngenerator = "{tiny_ckpt}"\n'
                      '[grid]\nmeasurements = [1000, 4000]\n')
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "invgan", "sweep", "--recipe", str(recipe), "--out", str(out),
                          "--jobs", "2", "--quiet"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    names = ["method=sleeps__measurements=1000", "method=sleeps__measurements=4000"]
    deadline = time.time() + 120
    while not all((out / "locks" / f"{n}.lock").exists() for n in names):
        assert time.time() < deadline and p.poll() is None, "the workers did not start"
        time.sleep(0.2)
    while True:  # until both workers are inside their cells (each sleeps for 10 minutes)
        held = []
        for n in names:
            with cell_lock(out, n) as mine:
                held.append(not mine)
        if all(held):
            break
        assert time.time() < deadline and p.poll() is None, "the workers did not take both cells"
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    for n in names:  # no worker survives its parent: every cell lock is free again
        with cell_lock(out, n) as mine:
            assert mine
    assert not list((out / "cells").glob("*.json"))
