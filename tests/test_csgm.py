import torch

from invgan.checkpoint import load_models
from invgan.csgm import csgm_objective, csgm_reconstruct
from invgan.lasso import lasso_fista
from invgan.models import ModelConfig, build_models, sample_latent
from invgan.physics import GaussianCS


def tiny_generator(seed=0):
    cfg = ModelConfig(nz=8, ngf=8, ndf=8)
    torch.manual_seed(seed)
    G, _ = build_models(cfg)
    return cfg, G.eval().requires_grad_(False)


def test_each_image_independent_of_batch():
    cfg, G = tiny_generator()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    p = GaussianCS(100, (3, 64, 64), noise_std=0.01, seed=0)
    y = p(x, torch.Generator().manual_seed(1))
    both = csgm_reconstruct(y, p, G, restarts=2, iters=30, seed=4)
    # image 1 alone with the latents it had in the batch: same result
    z_all = sample_latent(2 * 3, cfg, torch.Generator().manual_seed(4)).reshape(2, 3, -1)
    z = z_all[:, 1].clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        csgm_objective(y[1:2], p, G(z), z).sum().backward()
        opt.step()
    with torch.no_grad():
        obj = csgm_objective(y[1:2], p, G(z), z)
    assert torch.allclose(both.all_objectives[:, 1], obj, rtol=1e-4, atol=1e-6)
    assert torch.allclose(both.x[1], G(z[obj.argmin()][None])[0], atol=1e-5)


def test_keeps_lowest_objective_restart():
    cfg, G = tiny_generator(1)
    p = GaussianCS(50, (3, 64, 64), noise_std=0.0, seed=2)
    y = p(torch.rand(2, 3, 64, 64))
    r = csgm_reconstruct(y, p, G, restarts=4, iters=5, seed=0)
    assert torch.equal(r.objective, r.all_objectives.min(0).values)
    assert torch.allclose(csgm_objective(y, p, r.x, r.z), r.objective, rtol=1e-5)


def test_gen_span_recovered_almost_exactly_and_better_than_lasso():
    cfg, G, _, _ = load_models(None)  # the shipped CelebA generator
    z_true = sample_latent(2, cfg, torch.Generator().manual_seed(11))
    with torch.no_grad():
        x = G(z_true)
    p = GaussianCS(500, (3, 64, 64), noise_std=0.0, seed=3)
    y = p(x)
    r = csgm_reconstruct(y, p, G, restarts=3, iters=500, lr=0.1, seed=0)  # paper settings
    err = (r.x - x).pow(2).flatten(1).mean(1)
    lasso = lasso_fista(y, p, "dct", max_iter=300)
    lerr = (lasso.x - x).pow(2).flatten(1).mean(1)
    assert (err < 1e-3).all(), err  # in [-1, 1] units: PSNR > 36 dB
    assert (err < lerr).all(), (err, lerr)


def test_restart_pruning_equals_replay_of_the_full_run():
    """Pruned run == the full run restricted to the survivors (latents are independent)."""
    from invgan.csgm import prune_schedule_work, replay_pruning

    cfg, G = tiny_generator(2)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    p = GaussianCS(60, (3, 64, 64), noise_std=0.01, seed=1)
    y = p(x, torch.Generator().manual_seed(1))
    R, iters, schedule = 6, 12, ((3, 3), (7, 1))
    # the full run, recorded latent by latent
    z = sample_latent(R * 3, cfg, torch.Generator().manual_seed(5)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    losses = []
    for _ in range(iters):
        opt.zero_grad()
        obj = csgm_objective(y, p, G(z), z, 0.001)
        losses.append(obj.detach().clone())
        obj.sum().backward()
        opt.step()
    with torch.no_grad():
        x_full = G(z)
        final = csgm_objective(y, p, x_full, z, 0.001)
    want = replay_pruning(torch.stack(losses), final, R, 3, schedule)
    pruned = csgm_reconstruct(y, p, G, z_reg=0.001, restarts=R, iters=iters, seed=5, prune=schedule)
    assert torch.equal(pruned.restart, want)
    rows = want * 3 + torch.arange(3)
    assert torch.allclose(pruned.x, x_full[rows], atol=1e-5)
    assert torch.allclose(pruned.objective, final[rows], rtol=1e-4, atol=1e-7)
    assert pruned.latent_steps == prune_schedule_work(R, iters, schedule) == 4 * 6 + 4 * 3 + 4 * 1  # steps 0-3 all six, 4-7 three, 8-11 one
    full = csgm_reconstruct(y, p, G, z_reg=0.001, restarts=R, iters=iters, seed=5)
    assert full.latent_steps == R * iters
    assert torch.equal(full.restart, final.view(R, 3).argmin(0))


def test_replay_with_no_schedule_is_the_full_runs_choice():
    from invgan.csgm import replay_pruning

    g = torch.Generator().manual_seed(0)
    losses, final = torch.rand(20, 4 * 5, generator=g), torch.rand(4 * 5, generator=g)
    assert torch.equal(replay_pruning(losses, final, 4, 5, ()), final.view(4, 5).argmin(0))
    # keep=1 at step 0 keeps the restart with the lowest initial objective
    assert torch.equal(replay_pruning(losses, final, 4, 5, ((0, 1),)), losses[0].view(4, 5).argmin(0))

