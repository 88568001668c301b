"""Sparse-Gen: G(z) + a sparse deviation (invgan.sparse_gen, methods.SparseGen)."""

import json
import math

import pytest
import torch

from conftest import run_main
from invgan.bases import make_basis
from invgan.csgm import csgm_reconstruct
from invgan.lasso import lasso_homotopy
from invgan.methods import CSGM, Lasso, SparseGen, available_methods, make_method
from invgan.models import ModelConfig, build_models, sample_latent
from invgan.physics import GaussianCS
from invgan.sparse_gen import RULE_C, RULE_P, deviation_alpha, deviation_kappa, lasso_per_image, sparse_gen_reconstruct

SHAPE = (3, 32, 32)


def tiny_generator(seed=0):
    cfg = ModelConfig(nz=8, ngf=8, ndf=8, image_size=32)
    torch.manual_seed(seed)
    G, _ = build_models(cfg)
    return cfg, G.eval().requires_grad_(False)


class DenseGenerator(torch.nn.Module):
    """tanh(W z / 2), W (n, k) Gaussian: images with no sparse representation in any basis."""

    def __init__(self, k=8, seed=0):
        super().__init__()
        w = torch.randn(math.prod(SHAPE), k, generator=torch.Generator().manual_seed(seed)) / math.sqrt(k)
        self.register_buffer("w", w)

    def forward(self, z):
        return torch.tanh(0.5 * z @ self.w.T).view(-1, *SHAPE)


def planted(num_images=2, m=700, k=20, seed=0):
    """x = G(z*) + Psi nu*, G a ``DenseGenerator``, nu* with k Haar coefficients of size 0.3 to 0.6
    per image; noiseless y."""
    from invgan.generators import LatentGenerator

    G = LatentGenerator(DenseGenerator(), latent_dim=8)
    gen = torch.Generator().manual_seed(seed)
    z = G.sample(num_images, gen)
    nu = torch.zeros(num_images, *SHAPE)
    flat = nu.view(num_images, -1)
    for b in range(num_images):
        idx = torch.randperm(flat.shape[1], generator=gen)[:k]
        sign = torch.randint(0, 2, (k,), generator=gen) * 2 - 1
        flat[b, idx] = sign * (0.3 + 0.3 * torch.rand(k, generator=gen))
    with torch.no_grad():
        x = (G.module(z) + make_basis("wavelet", SHAPE).synthesis(nu)).clamp(-1, 1)
    p = GaussianCS(m, SHAPE, noise_std=0.0, seed=1)
    return G, x, p, p(x)


def mse(a, b):
    return (a - b).pow(2).flatten(1).mean(1)


def test_planted_deviation_recovered_far_better_than_csgm_and_lasso():
    G, x, p, y = planted()
    start = csgm_reconstruct(y, p, G, restarts=3, iters=150, seed=0, optimizer="lbfgs", history=20)
    r = sparse_gen_reconstruct(y, p, G, start.z, "wavelet", rounds=2, z_passes=30)
    lasso = Lasso("wavelet")(y, p)
    e, e_csgm, e_lasso = mse(r.x, x), mse(start.x, x), mse(lasso.x, x)
    # the margin: at least 10x below latent-only CSGM's error and below Lasso's, on every image
    assert (e < 0.1 * e_csgm).all() and (e < 0.1 * e_lasso).all(), (e, e_csgm, e_lasso)
    # and it never ends above its own latent-only start; every step is kept only where it lowers it
    assert (r.objective <= r.start_objective).all()
    assert all(b <= a * (1 + 1e-6) for a, b in zip(r.history, r.history[1:])), r.history
    assert r.latent_steps == 2 * 30 and (r.lasso_gap < 1e-6).all()


def test_objective_never_above_the_latent_only_start_even_when_the_deviation_cannot_help():
    # x = G(z*) with noise, few measurements: nothing for the deviation to find
    cfg, G = tiny_generator(1)
    z = sample_latent(3, cfg, torch.Generator().manual_seed(5))
    with torch.no_grad():
        x = G(z)
    p = GaussianCS(40, SHAPE, noise_std=0.01, seed=2)
    y = p(x, torch.Generator().manual_seed(3))
    start = csgm_reconstruct(y, p, G, restarts=2, iters=60, seed=0, optimizer="lbfgs")
    for kappa in (None, 1.0, 0.05):  # None: the rule
        r = sparse_gen_reconstruct(y, p, G, start.z, "dct", kappa=kappa, rounds=1, z_passes=10)
        assert (r.objective <= r.start_objective).all()
        if kappa is None:  # at m = 40 of 3072 the rule keeps the deviation at 0: the start is the answer
            assert (r.w == 0).all() and torch.equal(r.z, start.z) and r.latent_steps == 0
            assert torch.allclose(r.x, start.x, atol=1e-6)
        from invgan.sparse_gen import joint_objective
        v = make_basis("dct", SHAPE).synthesis(r.w)
        again = joint_objective(y, p, r.generated, r.z, v, r.w, 0.0, r.alpha)
        assert torch.allclose(again, r.objective, rtol=1e-4), (again, r.objective)


def test_deviation_rule_is_the_universal_threshold_of_the_residual_floored_at_the_noise():
    m, n = 400, 3072
    r = 0.5 * torch.randn(4, m, generator=torch.Generator().manual_seed(0))
    a = deviation_alpha(r, n, noise_std=0.01, kappa=1.0)
    sigma = r.double().pow(2).mean(1).sqrt()
    assert torch.allclose(a, math.sqrt(2 * math.log(n) / m) * sigma)
    assert torch.allclose(deviation_alpha(r, n, 0.01, kappa=0.3), 0.3 * a)
    # rms(r) is taken over the operator's m measurements (an operator whose y holds zeros elsewhere)
    padded = torch.cat([r, torch.zeros(4, 100)], 1)
    assert torch.allclose(deviation_alpha(padded, n, 0.01, kappa=1.0, m=m), a)
    # a residual below the noise level: the noise sets the threshold
    assert torch.allclose(deviation_alpha(1e-6 * r, n, noise_std=0.01, kappa=1.0),
                          torch.full((4,), math.sqrt(2 * math.log(n) / m) * 0.01, dtype=torch.float64))
    # with kappa 1 the threshold is above the largest correlation of pure noise of that size (whp),
    # so the deviation stays 0 where the generator already explains the measurements to the noise
    p = GaussianCS(m, SHAPE, noise_std=0.0, seed=0)
    w, v, gap = lasso_per_image(r, p, "wavelet", a)
    assert (w == 0).all() and (v == 0).all()


def test_deviation_kappa_falls_with_m_from_above_one_to_zero():
    n = 12288
    ms = [20, 100, 500, 1000, 2500, 5000, 7500, 10000, n]
    k = [deviation_kappa(m, n) for m in ms]
    assert all(a > b for a, b in zip(k, k[1:])) and k[-1] == 0
    assert deviation_kappa(500, n) > 1 > deviation_kappa(1000, n)  # no deviation below ~n/25 unless it stands out
    assert deviation_kappa(2500, n) == pytest.approx(RULE_C * (n / 2500 - 1) ** RULE_P)
    # the rule as the method applies it: kappa(m) times the universal threshold of the residual
    r = torch.randn(2, 2500, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(deviation_alpha(r, n, 0.0), deviation_alpha(r, n, 0.0, kappa=deviation_kappa(2500, n)))


def test_per_image_alpha_equals_separate_solves():
    torch.manual_seed(0)
    p = GaussianCS(120, SHAPE, noise_std=0.0, seed=4)
    y = p(torch.rand(2, *SHAPE) * 2 - 1)
    alpha = torch.tensor([0.05, 0.4], dtype=torch.float64)
    w, v, gap = lasso_per_image(y, p, "dct", alpha)
    for b in range(2):
        one = lasso_homotopy(y[b:b + 1], p, "dct", alpha=float(alpha[b]), clip=False)
        assert torch.allclose(w[b], one.w[0], atol=1e-5), (w[b] - one.w[0]).abs().max()
        assert torch.allclose(v[b], one.x[0], atol=1e-5)
    assert (gap < 1e-8).all()


def test_sparse_gen_is_a_registered_method_with_its_settings_recorded(tiny32_ckpt, tmp_path):
    assert {"sparse-gen", "sparse-gen-dct"} <= set(available_methods("cs"))
    p = run_main("cs", "--input", "gen-span", "--generator", tiny32_ckpt, "--num-images", 2, "-m", 300,
                 "--iters", 20, "--restarts", 2, "--methods", "dcgan-reg,sparse-gen,sparse-gen-dct", "--out", tmp_path,
                 "--quiet")
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "metrics.json").read_text())
    s = res["config"]["method_settings"]
    for name, basis in (("sparse-gen", "wavelet"), ("sparse-gen-dct", "dct")):
        assert s[name]["basis"] == basis and s[name]["start"] == "dcgan-reg" and s[name]["kappa"] is None
        assert s[name]["kappa_used"] == pytest.approx(deviation_kappa(300, 3 * 32 * 32))
        assert s[name]["objective_mean"] <= s[name]["objective_start_mean"]
        assert s[name]["latent_steps_per_image"] == 2 * 20 + 2 * 30


def test_bad_settings_are_clear_errors():
    from invgan.errors import InvganError

    _, G = tiny_generator()
    with pytest.raises(InvganError, match="basis"):
        SparseGen(G, "fourier")
    with pytest.raises(InvganError, match="kappa"):
        SparseGen(G, kappa=-1.0)
    with pytest.raises(InvganError, match="start"):
        SparseGen(G, start=Lasso("dct"))
    with pytest.raises(InvganError, match="generator"):
        make_method("sparse-gen", "cs", generator=None)
    m = SparseGen(G, start=CSGM(G, restarts=1, iters=5))
    assert m.name == "sparse-gen" and m.settings["start_budget"] == "custom"


def test_fista_warm_start_reaches_the_same_solution_in_fewer_iterations():
    from invgan.lasso import lasso_fista

    gen = torch.Generator().manual_seed(0)
    w_true = torch.zeros(2, math.prod(SHAPE))
    w_true[:, torch.randperm(w_true.shape[1], generator=gen)[:60]] = torch.randn(2, 60, generator=gen)
    p = GaussianCS(400, SHAPE, noise_std=0.01, seed=5)
    y = p(make_basis("wavelet", SHAPE).synthesis(w_true.view(2, *SHAPE)), gen)
    cold = lasso_fista(y, p, "wavelet", alpha=0.01, tol=1e-6, clip=False)
    y2 = y + 0.05 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))  # a nearby problem
    ref = lasso_fista(y2, p, "wavelet", alpha=0.01, tol=1e-6, clip=False)
    warm = lasso_fista(y2, p, "wavelet", alpha=0.01, tol=1e-6, clip=False, w0=cold.w)
    assert (warm.gap < 1e-6).all() and (ref.gap < 1e-6).all()
    assert torch.allclose(warm.objective, ref.objective, rtol=1e-5)
    assert warm.iterations < ref.iterations, (warm.iterations, ref.iterations)
