import importlib.util
import json
import subprocess
import sys

from conftest import REPO


def run_bench(*args):
    return subprocess.run([sys.executable, "scripts/bench.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_update_refreshes_the_sweep_row_and_keeps_measured_rows(tmp_path):
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "results.json").write_text(json.dumps({
        "recipe": {"name": "cs_paper", "settings": {"num_images": 64}}, "complete": False, "cells_done": 3,
        "cells_missing": ["method=dcgan__measurements=20"], "cell_seconds_total": 5400.0, "devices": ["cpu"]}))
    (sweep / "cells").mkdir()  # cells name their CPU (since session 20; older cells do not)
    (sweep / "cells" / "a.json").write_text(json.dumps({"process": {"pid": 1, "cpu": "AMD EPYC", "cpu_family": 26,
                                                                    "cpu_model": 2, "simd": "avx512"}}))
    (sweep / "cells" / "b.json").write_text(json.dumps({"process": {"pid": 2}}))
    earlier = {"command": "python scripts/bench.py --out b.json",
               "machine": {"cpu": "Some CPU", "cpu_cores": 2, "torch_threads": 2, "torch": "2.x", "gpu": None},
               "csgm": {"images": 8, "restarts": 2, "iters": 200, "batched_s": 10.0, "loop_s": 31.0, "speedup": 3.1},
               "csgm_seconds": 41.0, "csgm_command": "scripts/bench_cs.py ...",
               "libs": [{"m": 500, "basis": "dct", "solver": "invgan", "seconds_per_image": 0.1, "images": 64,
                         "rel_excess_max": 3e-7, "invgan_solver": "admm", "certified_1e4": 64},
                        {"m": 500, "basis": "dct", "solver": "invgan-fista", "seconds_per_image": 0.3, "images": 64,
                         "rel_excess_max": 1e-7},
                        {"m": 500, "basis": "dct", "solver": "celer", "seconds_per_image": 0.9, "images": 4,
                         "rel_excess_max": 2e-7, "lib_tol": 1e-6},
                        {"m": 500, "basis": "dct", "solver": "skglm", "seconds_per_image": 1.2, "images": 4,
                         "rel_excess_max": 0.0, "lib_tol": 1e-7}]}
    out = tmp_path / "b.json"
    out.write_text(json.dumps(earlier))
    p = run_bench("--skip", "train,csgm,passes,lasso,budget,inpaint,main,libs", "--update", "--sweep", sweep, "--out", out)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["csgm"] == earlier["csgm"] and r["machine"] == earlier["machine"] and r["command"] == earlier["command"]
    assert "--update" in r["updated_by"] and r["sweep"]["cells_done"] == 3 and r["sweep"]["cells_total"] == 4
    md = (tmp_path / "b.md").read_text()
    assert "| CSGM, 8 images x 2 restarts x 200 its | batched: 10.0 s | per-image loop: 31.0 s | 3.10x |" in md
    assert "| sweep cs_paper (3/4 cells, 64 images, cpu) | 90 min," in md and "Machine: Some CPU (2 cores" in md
    assert "(not rerun here; AMD EPYC (family 26, model 2, avx512))" in md
    # the libraries' row: the fastest library (not invgan's own FISTA) against invgan
    assert ("| Lasso-DCT, m = 500, against the libraries (objective within 1e-6 of the best) | 0.100 s/image (admm, 64 "
            "faces in one batch, 64/64 certified at 1e-4; excess 3.0e-07) | fastest library: celer (tol 1e-06) 0.90 "
            "s/image (excess 2.0e-07; skglm 1.20) | 9.0x |") in md

    p = run_bench("--skip", "train,csgm,passes,lasso,budget,inpaint,main,libs", "--update", "--out", tmp_path / "none.json")
    assert p.returncode == 1 and p.stderr.strip().startswith("bench: --update needs an earlier result")
    p = run_bench("--skip", "gpu", "--out", out)
    assert p.returncode == 1 and p.stderr.strip() == "bench: --skip takes train,csgm,passes,lasso,budget,inpaint,main,libs, got 'gpu'"


def test_scaling_simulation_shares_cells_dynamically():
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_scaling import simulate

    # recipe order 3, 1, 1, 1 on 2 workers: shared cells end at 3 (one worker takes all three
    # short ones); striding gives worker 0 cells 0 and 2 (3 + 1) and worker 1 cells 1 and 3
    assert simulate([3.0, 1.0, 1.0, 1.0], 2) == (3.0, 4.0)
    assert simulate([1.0, 1.0, 1.0, 1.0], 4) == (1.0, 1.0)
    assert simulate([5.0, 2.0], 1) == (7.0, 7.0)


def test_csgm_floor_counts_the_passes_runs_record_and_the_flops_of_a_pass():
    """scripts/csgm_floor.py: its passes per image are what CSGM runs record (latent_steps_per_image) for
    Adam with and without restart pruning and for auto's pruned L-BFGS, and a pass's FLOPs are the
    generator's forward twice (the backward to z; no gradients to the weights) plus the operator's."""
    import torch

    import invgan

    sys.path.insert(0, str(REPO / "scripts"))
    from csgm_floor import flops_per_pass, passes_per_image

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 768), torch.nn.Tanh(), torch.nn.Unflatten(1, (3, 16, 16)))
    G = invgan.LatentGenerator(module, latent_dim=6)
    physics = invgan.GaussianCS(600, (3, 16, 16), noise_std=0.01)
    with torch.no_grad():
        y = physics(module(G.sample(2, torch.Generator().manual_seed(1))), torch.Generator().manual_seed(2))
    runs = [invgan.CSGM(G, restarts=2, iters=5), invgan.CSGM(G, restarts=4, iters=12, prune=((3, 2), (7, 1))),
            invgan.CSGM.preset("dcgan", G, iters=40)]  # auto from m = 500: 6 L-BFGS starts, the best 2 after 30
    counts = []
    for method in runs:
        s = method.settings_for(physics)
        counts.append(passes_per_image(s))
        assert method(y, physics).details["latent_steps_per_image"] == counts[-1], s
    assert counts == [10, 4 * 4 + 2 * 4 + 1 * 4, 6 * 30 + 2 * 10]
    assert runs[2].settings_for(physics)["optimizer"] == "lbfgs"
    # Linear 6 -> 768 forward: 2 * 6 * 768; its backward to z the same; y = x A^T and the loss's A x: 2 * 600 * 768
    assert flops_per_pass(G, physics, 0.0) == 2 * (2 * 6 * 768) + 2 * (2 * 600 * 768)
    assert all(p.requires_grad for p in module.parameters())  # the caller's module is left as it was


def test_csgm_floor_counts_a_yeh_pass_as_both_networks_forward_and_back_to_z(tiny_ckpt):
    """A pass of Yeh's search: G and D forward, and the backward to z through both (no weight gradients):
    twice each network's forward FLOPs (the context loss is elementwise, not counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import invgan
    from invgan.checkpoint import load_models

    sys.path.insert(0, str(REPO / "scripts"))
    from csgm_floor import yeh_flops_per_pass

    _, G, D, _ = load_models(tiny_ckpt, need_discriminator=True)
    G = invgan.as_generator(G)
    z = G.sample(4, torch.Generator().manual_seed(0))
    with torch.no_grad(), FlopCounterMode(display=False) as g_fwd:
        x = G.module(z)
    with torch.no_grad(), FlopCounterMode(display=False) as d_fwd:
        D(x)
    assert g_fwd.get_total_flops() > 0 and d_fwd.get_total_flops() > 0
    for p in [*G.module.parameters(), *D.parameters()]:  # as a user's networks may be: still no weight gradients
        p.requires_grad_(True)
    assert yeh_flops_per_pass(G, D, G.image_shape) * 4 == 2 * g_fwd.get_total_flops() + 2 * d_fwd.get_total_flops()


def test_sweep_vs_table_flags_cells_outside_the_interval_or_uncertified(tmp_path, capsys):
    table = tmp_path / "t.md"
    table.write_text("| mse, mean +- 95% interval, at m = | 20 | 500 |\n|---|---|---|\n"
                     "| DCGAN | 0.17 +- 0.02 | 0.02 +- 0.003 |\n| Lasso (DCT) | 0.33 +- 0.03 | 0.11 +- 0.01 |\n")
    cells = tmp_path / "sw" / "cells"
    cells.mkdir(parents=True)

    def cell(method, m, mean, settings=None):
        (cells / f"method={method}__measurements={m}.json").write_text(json.dumps({
            "cell": {"method": method, "measurements": m}, "summary": {method: {"mse": {"mean": mean}}},
            "seconds": 10.0, "config": {"method_settings": {method: settings or {}}},
            "process": {"cpu": "AMD EPYC", "cpu_family": 26, "cpu_model": 2, "simd": "avx512"}}))

    spec = importlib.util.spec_from_file_location("sweep_vs_table", REPO / "scripts" / "sweep_vs_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def run(*args):
        rc = script.main([str(a) for a in (args or (tmp_path / "sw", "--table", table))])
        out = capsys.readouterr()
        return subprocess.CompletedProcess([], rc, out.out, out.err)

    cell("dcgan", 20, 0.185)  # inside 0.17 +- 0.02
    cell("lasso-dct", 500, 0.1099, {"solver": "admm", "tol": 1e-4, "max_rel_gap": 9.9e-5})
    p = run()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "| dcgan | 20 | 0.18500 | 0.17 +- 0.02 | yes | 10.0 |" in p.stdout
    assert "AMD EPYC (family 26, model 2, avx512)" in p.stdout and "0 of 2 cells" in p.stdout
    cell("dcgan", 500, 0.0235)  # outside 0.02 +- 0.003
    cell("lasso-dct", 20, 0.33, {"solver": "admm", "tol": 1e-4, "max_rel_gap": 2e-4})  # inside, not certified
    p = run()
    assert p.returncode == 1 and "| dcgan | 500 | 0.02350 | 0.02 +- 0.003 | **no** |" in p.stdout
    assert "2.00e-04 (**not certified**)" in p.stdout and "2 of 4 cells" in p.stdout
    p = run(tmp_path)
    assert p.returncode == 2 and "no cells/ folder" in p.stderr and "Traceback" not in p.stderr


def test_bench_passes_checks_the_fused_copy_bit_for_bit_and_renders_its_row(tmp_path):
    """scripts/bench_passes.py times the fused frozen copy against the unfused one and reports whether they
    give the same images and gradients; bench.py's table shows the row."""
    out = tmp_path / "p.json"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_passes.py"), "--batches", "12", "--rounds", "2",
                        "--passes", "1", "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    (row,) = r["rows"]
    assert row["latents"] == 12 and row["same_images"] and row["same_gradients"]
    assert len(row["fused_s"]) == len(row["unfused_s"]) == 2 and row["speedup"] > 0
    sys.path.insert(0, str(REPO / "scripts"))
    from bench import table

    text = table({"passes": r, "machine": {"cpu": "x", "cpu_cores": 2, "torch_threads": 2, "gpu": None, "torch": "t"},
                  "command": "c"})
    assert "12 latents | faster layer forms" in text and "same images and gradients" in text
