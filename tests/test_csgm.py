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
    z_true = sample_latent(1, cfg, torch.Generator().manual_seed(11))
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
    # the lbfgs budget as `--budget lbfgs` runs it: the same starting latents, 0.3 of the generator
    # passes, an objective at least as low as Adam's 500 steps, and the same near-exact recovery
    from invgan.csgm import BUDGET_SETTINGS

    b = {k: v for k, v in BUDGET_SETTINGS["lbfgs"].items()}
    q = csgm_reconstruct(y, p, G, restarts=3, seed=0, **b)
    assert q.latent_steps == 3 * b["iters"] == 0.3 * r.latent_steps
    assert (q.objective <= r.objective * 1.0001 + 1e-7).all(), (q.objective, r.objective)
    assert ((q.x - x).pow(2).flatten(1).mean(1) < 1e-3).all()


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


def test_lbfgs_restart_pruning_keeps_the_survivors_paths():
    """L-BFGS with pruning: the restarts kept are the best after 3 and then 7 passes, and each
    survivor ends where it ends without pruning (rows are independent); the work is counted."""
    from invgan.latent import lbfgs_latents, lbfgs_prune_work

    cfg, G = tiny_generator(2)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    p = GaussianCS(60, (3, 64, 64), noise_std=0.01, seed=1)
    y = p(x, torch.Generator().manual_seed(1))
    R, passes, schedule = 6, 12, ((3, 3), (7, 1))
    z0 = sample_latent(R * 3, cfg, torch.Generator().manual_seed(5))

    def f(z):
        return csgm_objective(y, p, G(z), z, 0.001)

    after = {k: f(lbfgs_latents(f, z0, k, 1.0, 60)).detach().view(R, 3) for k in (3, 7)}
    keep3 = after[3].argsort(dim=0, stable=True)[:3]
    want = keep3.gather(0, after[7].gather(0, keep3).argmin(0)[None])[0]
    z_full = lbfgs_latents(f, z0, passes, 1.0, 60)
    pruned = csgm_reconstruct(y, p, G, z_reg=0.001, restarts=R, iters=passes, lr=1.0, seed=5, optimizer="lbfgs",
                              history=60, prune=schedule)
    assert torch.equal(pruned.restart, want)
    rows = want * 3 + torch.arange(3)
    assert torch.allclose(pruned.z, z_full[rows], atol=1e-5)
    assert pruned.latent_steps == lbfgs_prune_work(R, passes, schedule) == 3 * 6 + 4 * 3 + 5 * 1
    dropped = pruned.all_objectives.gather(0, keep3.sort(0).values)  # (the kept three at pass 3 ran on)
    assert torch.isfinite(pruned.all_objectives).all() and dropped.shape == (3, 3)
    assert (pruned.objective <= pruned.all_objectives.min(0).values + 1e-6).all()


def test_replay_with_no_schedule_is_the_full_runs_choice():
    from invgan.csgm import replay_pruning

    g = torch.Generator().manual_seed(0)
    losses, final = torch.rand(20, 4 * 5, generator=g), torch.rand(4 * 5, generator=g)
    assert torch.equal(replay_pruning(losses, final, 4, 5, ()), final.view(4, 5).argmin(0))
    # keep=1 at step 0 keeps the restart with the lowest initial objective
    assert torch.equal(replay_pruning(losses, final, 4, 5, ((0, 1),)), losses[0].view(4, 5).argmin(0))



def test_lbfgs_latents_independent_of_batch_and_ahead_of_adam():
    """Per-latent L-BFGS: a row's path does not depend on the other rows, and on a small planted
    problem (y = A G(z*), noiseless) 40 generator passes reach a lower objective than Adam (the
    paper's lr 0.1) reaches in 120 from the same latents."""
    from invgan.latent import lbfgs_latents

    cfg, G = tiny_generator(3)
    with torch.no_grad():
        x = G(sample_latent(3, cfg, torch.Generator().manual_seed(9)))
    p = GaussianCS(80, (3, 64, 64), noise_std=0.0, seed=4)
    y = p(x)
    z0 = sample_latent(3, cfg, torch.Generator().manual_seed(6))
    z_all = lbfgs_latents(lambda z: csgm_objective(y, p, G(z), z), z0, 40)
    alone = lbfgs_latents(lambda z: csgm_objective(y[1:2], p, G(z), z), z0[1:2], 40)
    assert torch.allclose(z_all[1], alone[0], atol=1e-6)
    with torch.no_grad():
        start = csgm_objective(y, p, G(z0), z0)
    lb = csgm_reconstruct(y, p, G, restarts=1, iters=40, seed=6, optimizer="lbfgs")
    adam = csgm_reconstruct(y, p, G, restarts=1, iters=120, seed=6)
    assert (lb.objective < 1e-6 * start).all(), (start, lb.objective)
    assert (lb.objective < adam.objective).all(), (lb.objective, adam.objective)
