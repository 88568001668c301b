"""The library as a researcher uses it: any generator, any operator, one method contract, the
registry, deepinv interop, grey images of other sizes through the whole experiment."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import invgan
from invgan import InvganError

REPO = Path(__file__).resolve().parents[1]


class MLPGenerator(nn.Module):
    """A user's generator: z (N, 6) -> (N, 1, 16, 16), with batch-norm (train/eval matters)."""

    def __init__(self, k=6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(k, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 256), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, 1, 16, 16)


class RowSums(invgan.Physics):
    """A user's operator: sums of random pixel subsets (a 0/1 matrix), with its adjoint."""

    def __init__(self, m, img_shape=(1, 16, 16), noise_std=0.0, seed=0):
        self.img_shape, self.m, self.noise_std = img_shape, m, noise_std
        n = int(np.prod(img_shape))
        self.S = (torch.rand(m, n, generator=torch.Generator().manual_seed(seed)) < 0.1).float()

    def A(self, x):
        return x.flatten(1) @ self.S.T

    def A_adjoint(self, y):
        return (y @ self.S).view(-1, *self.img_shape)


def user_setup(m=80, noise_std=0.0):
    torch.manual_seed(0)
    module = MLPGenerator().train()  # left in training mode on purpose
    G = invgan.LatentGenerator(module, latent_dim=6)
    with torch.no_grad():
        x = invgan.frozen(module)(G.sample(3, torch.Generator().manual_seed(1)))
    physics = RowSums(m, noise_std=noise_std)
    return module, G, x, physics, physics(x, torch.Generator().manual_seed(2))


def test_any_generator_and_operator_with_every_cs_method():
    module, G, x, physics, y = user_setup()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert G.image_shape == (1, 16, 16)
    errors = {}
    for method in (invgan.CSGM(G, restarts=3, iters=200, lr=0.05), invgan.Lasso("dct", alpha=1e-4),
                   invgan.Lasso("wavelet", alpha=1e-4), invgan.LeastSquares(),
                   invgan.SparseGen(G, "dct", start=invgan.CSGM(G, restarts=3, iters=200, lr=0.05))):
        r = method(y, physics)
        assert isinstance(r, invgan.Reconstruction) and r.x.shape == x.shape and torch.isfinite(r.x).all()
        errors[method.name] = float(invgan.mse_per_image(r.x, x).mean())
    # x is in G's range: CSGM recovers it far better than the generic baselines
    assert errors["csgm"] < 0.1 * min(v for k, v in errors.items() if k not in ("csgm", "sparse-gen-dct")), errors
    # Sparse-Gen from that CSGM start, through the user's operator (no explicit matrix: FISTA)
    assert errors["sparse-gen-dct"] <= errors["csgm"] * 1.05 + 1e-6, errors
    # the user's module is untouched: mode, gradients, values
    assert module.training and all(p.grad is None for p in module.parameters())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_generator_wrapping_and_priors():
    module = MLPGenerator()
    with pytest.raises(InvganError, match="latent dimension"):
        invgan.as_generator(module)
    module.latent_dim = 6
    assert invgan.as_generator(module).latent_dim == 6
    dcgan = invgan.Generator(invgan.ModelConfig(nz=12, ngf=8, image_size=16, channels=1, latent_prior="uniform"))
    g = invgan.as_generator(dcgan)
    assert (g.latent_dim, g.prior, g.image_shape) == (12, "uniform", (1, 16, 16))
    # a user's sampler, and z kept in a uniform prior's support while optimising
    z = invgan.LatentGenerator(module, 6, prior=lambda n, gen: torch.full((n, 6), 0.5)).sample(4)
    assert torch.equal(z, torch.full((4, 6), 0.5))
    with pytest.raises(InvganError, match="expected"):
        invgan.LatentGenerator(module, 6, prior=lambda n, gen: torch.zeros(n, 5)).sample(2)
    with pytest.raises(InvganError, match="prior"):
        invgan.LatentGenerator(module, 6, prior="cauchy")
    y = invgan.Identity((1, 16, 16))(torch.zeros(2, 1, 16, 16))
    r = invgan.csgm_reconstruct(y, invgan.Identity((1, 16, 16)), g, restarts=2, iters=20, lr=0.5)
    assert r.z.abs().max() <= 1.0


def test_physics_objects_move_and_check_their_inputs():
    p = invgan.GaussianCS(20, (1, 8, 8), noise_std=0.0)
    assert p.to(dtype=torch.float64).matrix.dtype == torch.float64
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    assert p(x).dtype == torch.float64
    assert torch.allclose(p.data_fidelity(p.A(x), x), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose((p.A(x) * p.A(x)).sum(), (x * p.A_adjoint(p.A(x))).sum())  # adjoint
    for bad in [lambda: invgan.GaussianCS(0, (1, 8, 8)), lambda: invgan.GaussianCS(5, (8, 8)),
                lambda: invgan.GaussianCS(5, (1, 8, 8), noise_std=float("nan")),
                lambda: invgan.SuperResolution(3, (1, 8, 8))]:
        with pytest.raises(InvganError):
            bad()


def test_methods_refuse_non_finite_measurements():
    _, G, x, physics, y = user_setup()
    y[1, 3] = float("nan")
    for method in (invgan.CSGM(G, iters=2), invgan.Lasso("dct"), invgan.LeastSquares()):
        with pytest.raises(InvganError, match=r"image\(s\) \[1\]"):
            method(y, physics)


def test_a_method_that_diverges_says_so():
    _, G, x, physics, y = user_setup()

    class Diverging(invgan.Method):
        name = "diverging"

        def reconstruct(self, y, physics, state=None, progress=False):
            out = physics.A_adjoint(y)
            out[2] = float("inf")
            return invgan.Reconstruction(out)

    with pytest.raises(InvganError, match=r"diverging: the reconstruction of image\(s\) \[2\] became non-finite"):
        Diverging()(y, physics)


def test_least_squares_is_the_pseudo_inverse():
    p = invgan.GaussianCS(30, (1, 8, 8), noise_std=0.0, seed=1).to(dtype=torch.float64)
    y = torch.randn(2, 30, dtype=torch.float64) * 0.1
    r = invgan.LeastSquares(tol=1e-12, clip=False)(y, p)
    ref = y @ torch.linalg.pinv(p.matrix).T
    assert torch.allclose(r.x.flatten(1), ref, atol=1e-9)


def test_lasso_on_other_sizes_agrees_with_cvxpy():
    from invgan.lasso import lasso_cvxpy, lasso_fista

    p = invgan.GaussianCS(60, (1, 12, 20), noise_std=0.0, seed=0)
    x = torch.rand(2, 1, 12, 20, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = p(x)
    fast = lasso_fista(y, p, "dct", alpha=1e-3, tol=1e-8, max_iter=20000)
    ref = lasso_cvxpy(y, p, "dct", alpha=1e-3)
    assert torch.all(fast.objective <= ref.objective * (1 + 1e-4))


def test_lasso_leaves_the_denormal_setting_as_it_was():
    from invgan.lasso import _flush_denormal_on

    _, _, x, physics, y = user_setup()
    torch.set_flush_denormal(False)
    invgan.Lasso("dct")(y, physics)
    assert not _flush_denormal_on()


def test_registry_round_trip_and_errors():
    class Zero(invgan.Method):
        """Returns A^T y."""
        name = "adjoint-test"

        def reconstruct(self, y, physics, state=None, progress=False):
            return invgan.Reconstruction(physics.A_adjoint(y), {"what": "adjoint"})

    invgan.register_method("adjoint-test", lambda **_: Zero(), tasks=("cs",), replace=True)
    try:
        assert "adjoint-test" in invgan.available_methods("cs")
        assert "adjoint-test" not in invgan.available_methods("inpaint")
        _, _, x, physics, y = user_setup()
        assert invgan.make_method("adjoint-test", "cs")(y, physics).details == {"what": "adjoint"}
        with pytest.raises(InvganError, match="already registered"):
            invgan.register_method("adjoint-test", lambda **_: Zero())
        with pytest.raises(InvganError, match="unknown method 'nope'.*adjoint-test"):
            invgan.make_method("nope", "cs")
        with pytest.raises(InvganError, match="needs a generator"):
            invgan.make_method("dcgan", "cs")
    finally:
        from invgan.methods import METHODS
        METHODS.pop("adjoint-test", None)


def test_deepinv_interop():
    dinv = pytest.importorskip("deepinv")
    torch.manual_seed(0)
    _, G, x, _, _ = user_setup()
    dphys = dinv.physics.CompressedSensing(m=60, img_size=(1, 16, 16), noise_model=dinv.physics.GaussianNoise(0.01))
    y = dphys(x)
    physics = invgan.from_deepinv(dphys, (1, 16, 16))
    assert physics.m == 60 and physics.noise_std == pytest.approx(0.01) and physics.measurement_shape() == (60,)
    r = invgan.CSGM(G, restarts=3, iters=200, lr=0.05)(y, physics)
    lasso = invgan.Lasso("dct", alpha=1e-4)(y, physics)
    assert invgan.mse_per_image(r.x, x).mean() < 0.1 * invgan.mse_per_image(lasso.x, x).mean()
    model = invgan.to_deepinv(invgan.Lasso("dct", alpha=1e-4))
    assert isinstance(model, dinv.models.Reconstructor)
    assert torch.equal(model(y, dphys), lasso.x)   # deepinv physics in, invgan method inside


def test_grey_32px_generator_through_cs_and_inpaint_clis(tmp_path):
    """A 1-channel 32x32 DCGAN: images, measurements, every method, metrics and grids follow it."""
    from invgan.checkpoint import save_checkpoint

    cfg = invgan.ModelConfig(image_size=32, channels=1, nz=10, ngf=8, ndf=8)
    torch.manual_seed(0)
    G, D = invgan.Generator(cfg), invgan.Discriminator(cfg)
    save_checkpoint(tmp_path / "grey.pt", cfg, G, D)
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image
    from skimage import data as skdata
    for i, arr in enumerate([skdata.astronaut(), skdata.chelsea()]):
        Image.fromarray(arr[:200, :200]).save(images / f"{i}.png")
    run = lambda *a: subprocess.run([sys.executable, "-m", "invgan", *map(str, a), "--quiet"], capture_output=True,
                                    text=True, cwd=REPO)
    p = run("cs", "--generator", tmp_path / "grey.pt", "--images", images, "--num-images", 2, "--iters", 5,
            "--measurements", 100, "--methods", "dcgan,lasso-dct,lasso-wavelet,least-squares", "--out", tmp_path / "cs")
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "cs" / "metrics.json").read_text())
    assert m["config"]["image_shape"] == [1, 32, 32] and len(m["rows"]) == 8
    assert np.load(tmp_path / "cs" / "images.npz")["lasso-dct"].shape == (2, 32, 32, 1)
    assert (tmp_path / "cs" / "grid.png").stat().st_size > 1000
    p = run("inpaint", "--generator", tmp_path / "grey.pt", "--images", images, "--num-images", 2, "--iters", 5,
            "--methods", "yeh,biharmonic,tv,least-squares", "--out", tmp_path / "inp")
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "inp" / "metrics.json").read_text())
    assert m["config"]["mask_description"] == "center 16x16" and m["config"]["image_shape"] == [1, 32, 32]
    assert {r["method"] for r in m["rows"]} == {"yeh+poisson", "biharmonic", "tv", "least-squares"}
    assert np.load(tmp_path / "inp" / "masks.npy").shape == (2, 32, 32)


def test_example_own_generator_runs():
    p = subprocess.run([sys.executable, str(REPO / "examples" / "own_generator.py")], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    mse = {line.split()[0]: float(line.split()[3]) for line in p.stdout.splitlines()[1:]}
    assert set(mse) == {"csgm", "lasso-dct", "least-squares"}
    assert mse["csgm"] < 0.1 * min(mse["lasso-dct"], mse["least-squares"])


def test_calls_leave_global_state_alone(tmp_path):
    import matplotlib.pyplot as plt

    from invgan.fileio import image_grid_figure, save_figure

    _, G, x, physics, y = user_setup()
    rng = torch.get_rng_state()
    invgan.CSGM(G, restarts=2, iters=5)(y, physics)
    invgan.Lasso("wavelet", alpha=1e-4)(y, physics)
    assert torch.equal(rng, torch.get_rng_state())
    figs = plt.get_fignums()
    save_figure(image_grid_figure([("x", x)], 3), tmp_path / "g.png")
    assert plt.get_fignums() == figs and (tmp_path / "g.png").stat().st_size > 100


def test_experiment_runner_takes_objects_not_only_paths(tmp_path):
    """run_cs with a generator object and a tensor of images: the same harness as the CLI."""
    from invgan.cs import CSConfig, run_cs

    _, G, x, _, _ = user_setup()
    cfg = CSConfig(measurements=60, methods=("dcgan", "lasso-dct", "least-squares"), images=x, generator=G,
                   iters=50, restarts=2)
    res = run_cs(cfg, tmp_path / "run", progress=False, verbose=False, keep_images=True)
    assert res["config"]["image_shape"] == [1, 16, 16] and res["config"]["images"] == "tensor (3, 1, 16, 16)"
    assert res["config"]["generator"] == "MLPGenerator" and len(res["rows"]) == 9
    assert torch.equal(res["images"]["original"], x)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["summary"].keys() == res["summary"].keys()


def test_csgm_settings_from_m_pick_the_settings_by_the_operators_m():
    """settings_from_m: the operator's m picks the settings (later pairs over earlier ones), the run
    is the one with those settings given directly, and the solution key follows what runs."""
    _, G, x, physics, y = user_setup(m=80)
    rule = invgan.CSGM(G, restarts=5, iters=4, settings_from_m=((200, {"restarts": 1}),
                                                                (50, {"restarts": 3, "optimizer": "lbfgs", "history": 7})))
    assert [a for a, _ in rule.settings_from_m] == [50, 200]
    s = rule.settings_for(physics)
    assert (s["restarts"], s["optimizer"], s["history"], s["iters"]) == (3, "lbfgs", 7, 4)
    assert rule.settings_for(RowSums(30))["restarts"] == 5 and rule.settings_for(RowSums(30))["optimizer"] == "adam"
    assert rule.settings_for(RowSums(256))["restarts"] == 1 and rule.settings_for(RowSums(256))["optimizer"] == "lbfgs"
    assert rule.settings_for(object())["restarts"] == 5  # an operator without m: the base settings
    got = rule(y, physics)
    same = invgan.CSGM(G, restarts=3, iters=4, optimizer="lbfgs", history=7)(y, physics)
    assert torch.equal(got.x, same.x) and got.details["restarts"] == 3 and got.details["optimizer"] == "lbfgs"
    assert got.details["latent_steps_per_image"] == 3 * 4 and got.details["settings_from_m"][0][0] == 50
    assert rule.solution_key(y, physics)["restarts"] == 3 and rule.solution_key(y, physics)["optimizer"] == "lbfgs"
    below = invgan.CSGM(G, restarts=5, iters=4, settings_from_m=((81, {"restarts": 1}),))(y, physics)
    assert below.details["restarts"] == 5 and "history" not in below.details  # Adam: no curvature pairs
    # "operators" limits a pair to operators of those names (Physics.name; RowSums is "physics")
    named = invgan.CSGM(G, restarts=5, iters=4, settings_from_m=((50, {"restarts": 3, "operators": ["gaussian"]}),
                                                                 (60, {"iters": 2, "operators": ("physics",)})))
    assert named.settings_for(physics)["restarts"] == 5 and named.settings_for(physics)["iters"] == 2
    assert named.settings_from_m[0][1]["operators"] == ("gaussian",)
    got = named(y, physics)
    assert got.details["latent_steps_per_image"] == 5 * 2 and "operators" not in got.details
    assert got.details["settings_from_m"][1][1]["operators"] == ("physics",)
    for bad in (((50, {"restarts": 0}),), ((0.5, {}),), ((50,),), (7,), ((50, {"z_reg": 1.0}),),
                ((50, {"optimizer": "sgd"}),), ((50, {"operators": "gaussian"}),), ((50, {"operators": [3]}),)):
        with pytest.raises(InvganError, match="restarts|min_m|settings_from_m|optimizer"):
            invgan.CSGM(G, settings_from_m=bad)
    with pytest.raises(InvganError, match="lr decay"):
        invgan.CSGM(G, lr_decay="cosine", settings_from_m=((50, {"optimizer": "lbfgs"}),))
    for bad in (((2, 0),), ((-1, 1),), ((2,),), "x"):
        with pytest.raises(InvganError, match="prune"):
            invgan.CSGM(G, settings_from_m=((50, {"prune": bad}),))
    # a preset's pruning given by the caller wins over the budget's (auto: over its rule's too)
    own = invgan.CSGM.preset("dcgan", G, prune=((1, 1),), restarts=2, iters=3)
    assert own.settings_for(physics)["prune"] == ((1, 1),) and own.settings_for(RowSums(600))["prune"] == ((1, 1),)
    assert own(y, physics).details["latent_steps_per_image"] == 2 * 2 + 1 * 1  # (Adam: step 1 runs both)
    auto = invgan.CSGM.preset("dcgan", G)
    assert auto.settings_for(invgan.GaussianCS(600, (3, 16, 16)))["prune"] == ((30, 2),)
    # auto's L-BFGS only on the operators it was measured on: a user's operator gets the paper's budget
    assert auto.settings_for(RowSums(600))["prune"] == () and auto.settings_for(RowSums(600))["optimizer"] == "adam"


def test_measurements_and_images_of_the_wrong_shape_dtype_or_batch_are_refused_in_one_line():
    """A method given y that its operator cannot have made (shape, float dtype, batch of per-image masks,
    no images, integers), or an operator given other images, says so in one InvganError naming both
    instead of failing inside a matrix product."""
    _, G, x, physics, y = user_setup(m=80)
    assert physics.measurement_shape() == (80,)  # a user's operator: found by applying A to one zero image
    g = invgan.GaussianCS(50, (3, 16, 16))
    assert g.measurement_shape() == (50,) and invgan.Identity((3, 16, 16)).measurement_shape() == (3, 16, 16)
    assert invgan.SuperResolution(4, (3, 16, 16)).measurement_shape() == (3, 4, 4)
    mask = torch.ones(3, 1, 16, 16)
    mask[:, :, 4:8, 4:8] = 0
    holes = invgan.Inpainting(mask, (1, 16, 16))  # one mask per image, for 3 images
    lasso, csgm = invgan.Lasso("dct", alpha=1e-3), invgan.CSGM(G, restarts=1, iters=2)
    for method, yy, op, match in [
            (lasso, y[:, :79], physics, r"lasso-dct: y has shape \(3, 79\), but RowSums makes measurements of shape "
                                        r"\(B, 80\)"),
            (csgm, y[:, None], physics, r"y has shape \(3, 1, 80\)"),
            (invgan.LeastSquares(), torch.zeros(2, 49), g, r"GaussianCS makes measurements of shape \(B, 50\)"),
            (invgan.Lasso("wavelet"), torch.zeros(2, 3, 8, 8), invgan.SuperResolution(4, (3, 16, 16)),
             r"of shape \(B, 3, 4, 4\)"),
            (lasso, y[:0], physics, r"y holds no images \(shape \(0, 80\)\)"),
            (lasso, y.round().int(), physics, r"y must hold floating-point values, got torch.int32"),
            (invgan.LeastSquares(), g(torch.zeros(2, 3, 16, 16)).double(), g,
             r"y is torch.float64 but GaussianCS's tensors are torch.float32: pass y.to\(torch.float32\)"),
            (csgm, torch.zeros(2, 1, 16, 16), holes, r"Inpainting holds one mask per image for 3 images, but y holds 2"),
            (g, torch.zeros(2, 3, 8, 8), None, r"GaussianCS: x must be images of shape \(B, 3, 16, 16\), got \(2, 3, 8, 8\)"),
            (physics, torch.zeros(256), None, r"x must be images of shape \(B, 1, 16, 16\), got \(256,\)"),
            (holes, torch.zeros(2, 1, 16, 16), None, r"Inpainting: it holds one mask per image for 3 images, but x holds 2"),
            (physics, torch.zeros(3, 1, 16, 16, dtype=torch.int64), None,
             r"x must hold floating-point values in \[-1, 1\], got torch.int64")]:
        with pytest.raises(InvganError, match=match):
            method(yy, op) if op is not None else method(yy)  # a method, or an operator's forward
    assert lasso(y, physics).x.shape == x.shape and csgm(holes(x), holes).x.shape == x.shape  # right ones run
    wide = invgan.GaussianCS(50, (1, 16, 16)).to(dtype=torch.float64)  # moved to float64, it takes float64 y
    assert invgan.Lasso("dct", alpha=1e-3)(wide(x.double()), wide).x.dtype == torch.float64
    assert physics.tensor_dtype() is None  # a user's operator: its dtype is not checked unless it says
