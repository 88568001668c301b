"""Interrupted solves resume from their saved state and give the uninterrupted result."""

import json

import pytest
import torch

import invgan.csgm
from invgan.csgm import csgm_reconstruct
from invgan.lasso import lasso_fista
from invgan.models import ModelConfig, build_models
from invgan.physics import GaussianCS
from invgan.resume import SolveState

SHAPE = (3, 16, 16)


class Interrupt(Exception):
    pass


@pytest.fixture
def save_every_check(monkeypatch):
    monkeypatch.setattr(SolveState, "due", lambda self: True)


class CountingCS(GaussianCS):
    """Gaussian CS that counts forward applications and can stop the run after ``stop_after``."""

    def __init__(self, *a, stop_after=None, **kw):
        super().__init__(*a, **kw)
        self.calls, self.stop_after = 0, stop_after

    def A(self, x):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise Interrupt
        return super().A(x)


def tiny_generator():
    cfg = ModelConfig(nz=8, ngf=8, ndf=8)
    torch.manual_seed(0)
    G, _ = build_models(cfg)
    return cfg, G.eval().requires_grad_(False)


@pytest.mark.parametrize("kw", [dict(restarts=2, iters=12, seed=3),
                                # killed after restarts were dropped, with a decaying step
                                dict(restarts=4, iters=12, seed=3, prune=((2, 2), (5, 1)), lr_decay="cosine"),
                                # per-latent L-BFGS: its curvature pairs and steps are saved too
                                dict(restarts=2, iters=12, seed=3, optimizer="lbfgs"),
                                # ... and killed after L-BFGS restarts were dropped
                                dict(restarts=4, iters=12, seed=3, optimizer="lbfgs", prune=((3, 2), (5, 1)))])
def test_csgm_resumes_exactly(tmp_path, save_every_check, kw):
    cfg, G = tiny_generator()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    p = CountingCS(60, (3, 64, 64), noise_std=0.01, seed=0)
    y = p(x, torch.Generator().manual_seed(1))
    ref = csgm_reconstruct(y, p, G, **kw)
    full_calls = p.calls - 1
    state = SolveState(tmp_path / "csgm.pt")
    p.calls, p.stop_after = 0, 7  # 7 iterations, then "killed"
    with pytest.raises(Interrupt):
        csgm_reconstruct(y, p, G, state=state, **kw)
    assert state.path.is_file()
    p.calls, p.stop_after = 0, None
    resumed_state = SolveState(tmp_path / "csgm.pt")
    res = csgm_reconstruct(y, p, G, state=resumed_state, **kw)
    assert p.calls == full_calls - 7  # continued from the 7th iteration
    assert resumed_state.carried > 0
    assert torch.equal(res.z, ref.z) and torch.equal(res.x, ref.x)
    assert torch.equal(res.restart, ref.restart) and res.latent_steps == ref.latent_steps
    # a state saved for other measurements is ignored: a fresh, full run
    p.calls = 0
    other = csgm_reconstruct(y + 0.5, p, G, state=SolveState(tmp_path / "csgm.pt"), **kw)
    assert p.calls == full_calls
    assert not torch.equal(other.z, ref.z)


@pytest.mark.parametrize("dense", [False, "auto"])  # operator path; B = A Psi with support Newton steps
@pytest.mark.parametrize("basis", ["dct", "wavelet"])
def test_lasso_resumes_exactly(tmp_path, save_every_check, basis, dense, monkeypatch):
    import invgan.lasso as lasso_module

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, *SHAPE, generator=g) * 2 - 1
    p = GaussianCS(120, SHAPE, noise_std=0.0, seed=0)
    y = p(x)
    kw = dict(alpha=1e-3, tol=1e-7, max_iter=1500, dense=dense)
    counter = {"calls": 0, "stop_after": None}
    soft = lasso_module._soft

    def counting_soft(v, thr):  # one call per iteration; "killed" after stop_after of them
        counter["calls"] += 1
        if counter["stop_after"] is not None and counter["calls"] > counter["stop_after"]:
            raise Interrupt
        return soft(v, thr)

    monkeypatch.setattr(lasso_module, "_soft", counting_soft)
    ref = lasso_fista(y, p, basis, **kw)
    full_calls = counter["calls"]
    assert ref.iterations > 300  # several continuation stages, then the final one
    state = SolveState(tmp_path / "lasso.pt")
    counter.update(calls=0, stop_after=int(full_calls * 0.7))
    with pytest.raises(Interrupt):
        lasso_fista(y, p, basis, state=state, **kw)
    counter.update(calls=0, stop_after=None)
    res = lasso_fista(y, p, basis, state=SolveState(tmp_path / "lasso.pt"), **kw)
    assert counter["calls"] < 0.4 * full_calls
    assert res.iterations == ref.iterations and torch.equal(res.image_iterations, ref.image_iterations)
    assert torch.equal(res.w, ref.w) and torch.equal(res.objective, ref.objective)


def test_state_file_is_checked_and_safe(tmp_path):
    path = tmp_path / "s.pt"
    s = SolveState(path)
    s.save({"a": 1}, {"t": torch.ones(2), "items": [torch.zeros(1)]})
    assert SolveState(path).load({"a": 2}) is None
    got = SolveState(path).load({"a": 1})
    assert torch.equal(got["t"], torch.ones(2)) and len(got["items"]) == 1
    path.write_bytes(b"not a state")
    assert SolveState(path).load({"a": 1}) is None  # unreadable: start afresh
    torch.save({"key": {"a": 1}, "state": {"f": Interrupt()}}, path)  # would need unpickling a class
    assert SolveState(path).load({"a": 1}) is None


def test_sweep_cell_resumes_after_interruption(tiny_ckpt, celeba_root, tmp_path, monkeypatch, save_every_check):
    from invgan.sweep import read_sweep_recipe, run_sweep

    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text(f"""
[sweep]
experiment = "cs"
methods = ["dcgan"]
num_images = 2
images = "{celeba_root}"
[settings]
generator = "{tiny_ckpt}"
iters = 10
[grid]
measurements = [50]
""")
    recipe = read_sweep_recipe(recipe_path)
    ref = run_sweep(recipe, tmp_path / "ref", progress=False)
    objective, calls = invgan.csgm.csgm_objective, []

    def stopping(*a, **kw):
        calls.append(1)
        if len(calls) > 6:
            raise Interrupt
        return objective(*a, **kw)

    out = tmp_path / "sw"
    monkeypatch.setattr(invgan.csgm, "csgm_objective", stopping)
    with pytest.raises(Interrupt):
        run_sweep(recipe, out, progress=False)
    assert list((out / "partial").glob("*/dcgan.pt")) and not list((out / "cells").glob("*.json"))
    monkeypatch.setattr(invgan.csgm, "csgm_objective", objective)
    res = run_sweep(recipe, out, progress=False)
    assert res["complete"] and not any((out / "partial").iterdir())
    assert [r["mse"] for r in res["rows"]] == [r["mse"] for r in ref["rows"]]
    cell = json.loads(next((out / "cells").glob("*.json")).read_text())
    assert cell["seconds"] > 0 and "resumed_seconds" not in cell
