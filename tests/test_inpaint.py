import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from invgan import InvganError
from invgan.blend import composite, laplacian, poisson_blend
from invgan.classical_inpaint import biharmonic_inpaint, tv_inpaint, tv_problem
from invgan.masks import blob_mask, center_mask, half_mask, make_masks, random_mask, read_mask
from invgan.models import ModelConfig, build_models, sample_latent
from invgan.physics import Inpainting
from invgan.yeh import importance_weights, perceptual_loss, yeh_inpaint, yeh_objective


def tiny_gd(seed=0):
    cfg = ModelConfig(nz=8, ngf=8, ndf=8)
    torch.manual_seed(seed)
    G, D = build_models(cfg)
    return cfg, G.eval().requires_grad_(False), D.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- masks
def test_mask_kinds_shapes_and_fractions():
    c = center_mask(64)
    assert c.shape == (1, 1, 64, 64) and c.sum() == 64 * 64 - 32 * 32
    assert c[0, 0, 16:48, 16:48].sum() == 0 and c[0, 0, 15, 16] == 1 and c[0, 0, 48, 47] == 1
    assert center_mask(64, 20)[0, 0].eq(0).sum() == 400
    for side, region in [("left", (slice(None), slice(0, 32))), ("right", (slice(None), slice(32, None))),
                         ("top", (slice(0, 32), slice(None))), ("bottom", (slice(32, None), slice(None)))]:
        h = half_mask(64, side)[0, 0]
        assert h[region].sum() == 0 and h.sum() == 64 * 32
    r = random_mask(3, 64, 0.8, seed=1)
    assert r.shape == (3, 1, 64, 64) and (r.flatten(1).mean(1) == 1 - round(0.8 * 4096) / 4096).all()
    assert not torch.equal(r[0], r[1])                        # one mask per image
    assert torch.equal(r, random_mask(3, 64, 0.8, seed=1))    # seeded
    assert not torch.equal(r, random_mask(3, 64, 0.8, seed=2))
    b = blob_mask(2, 64, 0.3, seed=0)
    assert ((1 - b).flatten(1).mean(1) - 0.3).abs().max() < 1e-3
    # blobs are connected regions, not scattered pixels: most missing pixels have a missing neighbour
    miss = (1 - b[0, 0]).numpy()
    nb = np.zeros_like(miss)
    nb[1:] += miss[:-1]; nb[:-1] += miss[1:]; nb[:, 1:] += miss[:, :-1]; nb[:, :-1] += miss[:, 1:]
    assert (nb[miss > 0] >= 3).mean() > 0.8
    assert torch.equal(make_masks("blob", 2, 64, seed=5), make_masks("blob", 2, 64, seed=5))


def test_mask_file_and_errors(tmp_path):
    a = np.full((64, 64), 255, np.uint8)
    a[10:20, 5:40] = 0
    Image.fromarray(a).save(tmp_path / "m.png")
    m = make_masks("file", 3, 64, path=tmp_path / "m.png")
    assert m.shape == (3, 1, 64, 64) and m[0, 0].eq(0).sum() == 350 and m[0, 0, 10, 5] == 0
    np.save(tmp_path / "m.npy", (a > 0).astype(np.uint8))
    assert torch.equal(read_mask(tmp_path / "m.npy", 64), m[:1])
    Image.fromarray(a[:32, :32]).save(tmp_path / "small.png")
    with pytest.raises(InvganError, match=r"32x32 \(HxW\), the images are 64x64"):
        make_masks("file", 1, 64, path=tmp_path / "small.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(InvganError, match="no known pixels"):
        make_masks("file", 1, 64, path=tmp_path / "black.png")
    with pytest.raises(InvganError, match="at least a quarter"):
        make_masks("blob", 1, 64, fraction=0.1)
    with pytest.raises(InvganError, match="does not exist"):
        make_masks("file", 1, 64, path=tmp_path / "nope.png")
    with pytest.raises(InvganError, match="needs a mask file"):
        make_masks("file", 1, 64)


# ----------------------------------------------------------------------------- loss
def test_importance_weights_match_definition():
    mask = (torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0)) > 0.3).float()
    w = importance_weights(mask, 5)
    m = mask[0, 0].numpy()
    for i in range(12):
        for j in range(12):
            box = 1 - m[max(0, i - 2):i + 3, max(0, j - 2):j + 3]
            expect = m[i, j] * box.sum() / 25  # outside the image counts as known
            assert abs(w[0, 0, i, j].item() - expect) < 1e-6
    c = importance_weights(center_mask(64), 7)[0, 0]
    assert c[0, 0] == 0 and c[16:48, 16:48].sum() == 0                 # far away and inside the hole
    assert abs(c[15, 30].item() - 3 * 7 / 49) < 1e-6                  # next to the hole's top edge
    with pytest.raises(InvganError, match="odd"):
        importance_weights(center_mask(64), 4)


def test_prior_forms():
    _, _, D = tiny_gd()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    p = torch.sigmoid(D(x)).double()
    assert torch.allclose(perceptual_loss(D, x, "paper").double(), torch.log(1 - p), atol=1e-5)
    assert torch.allclose(perceptual_loss(D, x, "generator").double(), -torch.log(p), atol=1e-5)


def test_each_image_independent_of_batch_even_with_train_mode_d():
    cfg, G, D = tiny_gd(1)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    masks = make_masks("random", 3, 64, fraction=0.5, seed=0)
    phys = Inpainting(masks)
    y = phys.A(x)
    D.train()  # yeh_inpaint must switch batch-norm to running statistics itself
    both = yeh_inpaint(y, phys, G, D, lam=0.5, restarts=2, iters=25, lr=0.05, seed=3)
    assert D.training  # the caller's module is left as it was (invgan used a frozen eval copy)
    D.eval()  # the reference below: one image alone, batch-norm on running statistics
    z = sample_latent(2 * 3, cfg, torch.Generator().manual_seed(3)).reshape(2, 3, -1)[:, 1].clone().requires_grad_(True)
    w = importance_weights(masks[1:2], 7)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(25):
        opt.zero_grad()
        yeh_objective(y[1:2], w, D, G(z), 0.5).sum().backward()
        opt.step()
    with torch.no_grad():
        obj = yeh_objective(y[1:2], w, D, G(z), 0.5)
    assert torch.allclose(both.all_objectives[:, 1], obj, rtol=1e-4, atol=1e-4)
    assert torch.allclose(both.x[1], G(z[obj.argmin()][None])[0], atol=1e-4)


def test_discriminator_weights_change_the_result():
    from invgan.checkpoint import load_models

    cfg, G, D, _ = load_models(None, need_discriminator=True)  # the shipped G and D
    D_other = type(D)(cfg).eval().requires_grad_(False)  # same architecture, untrained weights
    x = G(sample_latent(2, cfg, torch.Generator().manual_seed(9)))
    phys = Inpainting(make_masks("center", 2, 64))
    y = phys.A(x)
    run = lambda d, lam: yeh_inpaint(y, phys, G, d, lam=lam, iters=20, seed=0)
    a, b = run(D, 0.003), run(D_other, 0.003)  # the paper's lambda: a small but real effect
    assert torch.equal(a.x, run(D, 0.003).x)    # deterministic, so any difference is D's
    assert (a.x - b.x).abs().max() > 1e-4
    assert (run(D, 1.0).x - run(D_other, 1.0).x).abs().max() > 1e-2
    assert torch.equal(run(D, 0.0).x, run(D_other, 0.0).x)  # no prior: D unused
    with pytest.raises(InvganError, match="needs a discriminator"):
        run(None, 0.003)


# ----------------------------------------------------------------------------- blending
@pytest.mark.parametrize("kind", ["center", "random", "half", "blob"])
def test_poisson_keeps_known_pixels_and_matches_laplacian_in_hole(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1  # float64: exact checks
    gen = F.avg_pool2d(torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1, 3, 1, 1)
    mask = make_masks(kind, 2, 64, seed=1)
    y = Inpainting(mask).A(x)
    out = poisson_blend(gen, y, mask)
    known = mask.expand_as(x).bool()
    assert torch.equal(out[known], x[known])                            # exactly, not approximately
    lap_out, lap_gen = laplacian(out.double().numpy()), laplacian(gen.double().numpy())
    hole = ~known.numpy()
    assert np.abs(lap_out[hole] - lap_gen[hole]).max() < 1e-8
    # generating the true image gives it back; composite copies pixels
    assert torch.allclose(poisson_blend(x, y, mask), x, atol=1e-9)
    c = composite(gen, y, mask)
    assert torch.equal(c[known], x[known]) and torch.equal(c[~known], gen[~known])


# ----------------------------------------------------------------------------- baselines
def test_baselines_keep_known_pixels_and_fill_smooth_images():
    ramp = torch.linspace(-0.8, 0.8, 64)
    x = (ramp[None, :] * 0.5 + ramp[:, None] * 0.3).expand(1, 3, 64, 64).clone()
    x[:, 1] *= -1
    mask = make_masks("center", 1, 64, hole=16)
    phys = Inpainting(mask)
    y = phys.A(x)
    known = mask.expand_as(x).bool()
    for f in (biharmonic_inpaint, tv_inpaint):
        out = f(y, phys)
        assert torch.equal(out[known], x[known]), f.__name__
    assert (biharmonic_inpaint(y, phys) - x).abs().max() < 1e-6  # biharmonic reproduces planes
    # TV on a piecewise-constant image: a hole inside a flat region is filled flat
    pc = torch.full((1, 3, 64, 64), -0.5)
    pc[..., :, 48:] = 0.7
    out = tv_inpaint(phys.A(pc), phys)
    assert (out - pc).abs().max() < 1e-3  # solver tolerance


def test_tv_problem_equals_full_cvxpy_tv():
    import cvxpy as cp

    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (3, 12, 12))
    known = rng.uniform(size=(12, 12)) > 0.5
    prob, v = tv_problem(img, known)
    prob.solve()
    sol = img.copy()
    sol[:, ~known] = v.value.T
    xs = [cp.Variable((12, 12)) for _ in range(3)]
    k = known.astype(float)
    full = cp.Problem(cp.Minimize(cp.tv(*xs)), [cp.multiply(k, xs[c]) == k * img[c] for c in range(3)])
    full.solve()
    ours = cp.tv(*[cp.Constant(s) for s in sol]).value
    assert abs(ours - full.value) < 1e-5 * max(1.0, full.value)


def test_latent_stays_in_uniform_prior_support():
    cfg = ModelConfig(nz=8, ngf=8, ndf=8, latent_prior="uniform")
    torch.manual_seed(0)
    G, D = build_models(cfg)
    G.eval().requires_grad_(False)
    D.eval().requires_grad_(False)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    phys = Inpainting(make_masks("center", 2, 64))
    r = yeh_inpaint(phys.A(x), phys, G, D, lam=0.003, iters=30, lr=0.5, seed=0)
    assert r.z.abs().max() <= 1.0 and (r.z.abs() == 1.0).any()  # clipped, and the clip was needed


def test_lbfgs_budget_reaches_a_lower_loss_in_fewer_passes():
    """The opt-in "lbfgs" budget's claim in counts: per-latent L-BFGS after 30 passes is below Adam
    (the paper's lr 0.01) after 100 steps on every image."""
    from invgan.checkpoint import load_models
    from invgan.methods import YehInpainting
    from invgan.yeh import BUDGETS

    cfg, G, D, _ = load_models(None, need_discriminator=True)  # the shipped G and D
    x = G(sample_latent(4, cfg, torch.Generator().manual_seed(9))).detach()
    phys = Inpainting(make_masks("center", 4, 64))
    y = phys.A(x)
    adam = yeh_inpaint(y, phys, G, D, iters=100, seed=0).objective
    lb = yeh_inpaint(y, phys, G, D, iters=30, lr=0.1, optimizer="lbfgs", history=60, seed=0)
    assert (lb.objective < adam).all()
    # the named budget runs exactly that optimiser, with its settings
    assert BUDGETS["lbfgs"] == {"optimizer": "lbfgs", "iters": 300, "lr": 0.1, "history": 60}
    m = YehInpainting.preset("lbfgs", G, D, iters=30, seed=0, blend="none")
    rec = m(y, phys)
    assert torch.equal(rec.generated, lb.x) and rec.details["budget"] == "lbfgs"
    assert rec.details["optimizer"] == "lbfgs" and rec.details["history"] == 60 and rec.details["lr"] == 0.1
    with pytest.raises(InvganError, match="unknown budget"):
        YehInpainting.preset("fast", G, D)
