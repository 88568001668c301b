"""One solve serves every method that needs it: Sparse-Gen's DCGAN+Reg start and the dcgan-reg
method (``invgan.resume.SolutionCache``), in one run and across the cells of a sweep folder."""

import json

import pytest
import torch

from conftest import run_main


@pytest.fixture
def count_solves(monkeypatch):
    """Counts CSGM solves (calls of ``invgan.csgm.csgm_reconstruct``)."""
    import invgan.csgm

    calls = []
    real = invgan.csgm.csgm_reconstruct

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(invgan.csgm, "csgm_reconstruct", counted)
    return calls


def _cs(ckpt, out, methods):
    p = run_main("cs", "--input", "gen-span", "--generator", ckpt, "--num-images", 2, "-m", 300, "--iters", 15,
                 "--restarts", 2, "--methods", methods, "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "metrics.json").read_text())
    return {(r["method"], r["id"]): r for r in res["rows"]}, res


def test_one_run_computes_the_dcgan_reg_start_once_with_the_same_results(tiny32_ckpt, tmp_path, count_solves):
    both, res = _cs(tiny32_ckpt, tmp_path / "both", "dcgan-reg,sparse-gen,sparse-gen-dct")
    assert len(count_solves) == 1  # dcgan-reg solved; both Sparse-Gens took its z
    s = res["config"]["method_settings"]
    assert "reused_seconds" not in s["dcgan-reg"]
    for name in ("sparse-gen", "sparse-gen-dct"):
        assert s[name]["reused_seconds"] > 0
        # a method's time is what it costs alone: the reused start's seconds are in it
        sec = next(r["seconds"] for k, r in both.items() if k[0] == name)
        assert sec * 2 >= s[name]["reused_seconds"]
    assert res["reused_seconds"] == pytest.approx(s["sparse-gen"]["reused_seconds"] + s["sparse-gen-dct"]["reused_seconds"])
    alone, _ = _cs(tiny32_ckpt, tmp_path / "alone", "sparse-gen")  # computes its own start
    assert len(count_solves) == 2
    for key, row in alone.items():  # paired, image by image: identical
        assert both[key]["mse"] == row["mse"]
    ref, _ = _cs(tiny32_ckpt, tmp_path / "ref", "dcgan-reg")
    for key, row in ref.items():
        assert both[key]["mse"] == row["mse"]


def test_cache_key_tells_problems_apart_and_survives_a_bad_file(tiny32_ckpt, tmp_path, count_solves):
    from invgan.checkpoint import load_models
    from invgan.generators import as_generator
    from invgan.methods import CSGM
    from invgan.physics import GaussianCS
    from invgan.resume import SolutionCache

    def load_generator(path):
        cfg, net, _, _ = load_models(path)
        return as_generator(net)

    G = load_generator(tiny32_ckpt)
    p = GaussianCS(100, (3, 32, 32), seed=0)
    y = p(G.module(G.sample(2, torch.Generator().manual_seed(0))).detach(), torch.Generator().manual_seed(1))
    cache = SolutionCache(tmp_path / "c")
    m = CSGM(G, z_reg=0.001, restarts=2, iters=5)
    m.use_cache(cache)
    first = m(y, p)
    assert len(count_solves) == 1 and len(list((tmp_path / "c").glob("*.pt"))) == 1
    again = m(y, p)  # same problem: from the cache, identical
    assert len(count_solves) == 1 and torch.equal(first.x, again.x) and again.details["reused_seconds"] > 0
    # a second process sharing the folder finds it on disk
    other = CSGM(G, z_reg=0.001, restarts=2, iters=5)
    other.use_cache(SolutionCache(tmp_path / "c"))
    assert torch.equal(other(y, p).x, first.x) and len(count_solves) == 1
    # anything the solve reads or is set to makes a different key: computed, not reused
    variants = [(CSGM(G, z_reg=0.0, restarts=2, iters=5), y, p),            # setting
                (CSGM(G, z_reg=0.001, restarts=2, iters=5, seed=1), y, p),  # seed
                (m, y + 0.5, p),                                            # measurements
                (m, y, GaussianCS(100, (3, 32, 32), seed=3))]               # operator
    for k, (meth, yy, pp) in enumerate(variants):
        meth.use_cache(cache)
        meth(yy, pp)
        assert len(count_solves) == 2 + k
    G2 = load_generator(tiny32_ckpt)
    with torch.no_grad():
        next(G2.module.parameters()).add_(1e-3)                             # generator weights
    m2 = CSGM(G2, z_reg=0.001, restarts=2, iters=5)
    m2.use_cache(cache)
    m2(y, p)
    assert len(count_solves) == 6
    # an unreadable file counts as absent: recomputed and rewritten, no error
    for f in (tmp_path / "c").glob("*.pt"):
        f.write_bytes(b"not a checkpoint")
    fresh = CSGM(G, z_reg=0.001, restarts=2, iters=5)
    fresh.use_cache(SolutionCache(tmp_path / "c"))
    assert torch.equal(fresh(y, p).x, first.x) and len(count_solves) == 7


def test_sweep_computes_each_start_once_and_reuses_it_on_rerun(tiny32_ckpt, celeba_root, tmp_path, count_solves):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
[sweep]
experiment = "cs"
methods = ["dcgan-reg", "sparse-gen"]
num_images = 2
images = "{celeba_root}"
[settings]
generator = "{tiny32_ckpt}"
image_size = 32
iters = 10
restarts = 2
[grid]
measurements = [300]
""")
    out = tmp_path / "sw"
    p = run_main("sweep", "--recipe", recipe, "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    assert len(count_solves) == 1 and len(list((out / "solutions").glob("*.pt"))) == 1
    rows = {(r["method"], r["id"]): r for r in json.loads((out / "results.json").read_text())["rows"]}
    # the dcgan-reg cell lost: its rerun takes the kept solve, with the same rows
    cell = next((out / "cells").glob("method=dcgan-reg*.json"))
    cell.unlink()
    p = run_main("sweep", "--recipe", recipe, "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    assert len(count_solves) == 1
    again = {(r["method"], r["id"]): r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert {k: r["mse"] for k, r in again.items()} == {k: r["mse"] for k, r in rows.items()}


def test_two_workers_needing_the_same_solve_at_once_compute_it_once(tiny32_ckpt, tmp_path, count_solves):
    """Two workers sharing a cache folder (a sweep's --jobs) start the same solve together: one
    computes it under the key's lock, the other waits and takes it (without the lock both would
    compute, since both look it up before either has put it)."""
    import threading

    from invgan.checkpoint import load_models
    from invgan.generators import as_generator
    from invgan.methods import CSGM
    from invgan.physics import GaussianCS
    from invgan.resume import SolutionCache

    G = as_generator(load_models(tiny32_ckpt)[1])
    p = GaussianCS(100, (3, 32, 32), seed=0)
    y = p(G.module(G.sample(2, torch.Generator().manual_seed(0))).detach(), torch.Generator().manual_seed(1))
    start, out = threading.Barrier(2), [None, None]

    def worker(i):
        m = CSGM(G, z_reg=0.001, restarts=2, iters=30)
        m.use_cache(SolutionCache(tmp_path / "c"))  # each worker its own cache object, one folder
        start.wait()
        out[i] = m(y, p)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(count_solves) == 1
    assert sorted("reused_seconds" in r.details for r in out) == [False, True]
    assert torch.equal(out[0].x, out[1].x)
