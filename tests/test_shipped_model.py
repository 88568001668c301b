"""The shipped CelebA 64x64 model: real properties, measured on real held-out faces."""
import torch

from invgan.checkpoint import DEFAULT_DISCRIMINATOR, DEFAULT_GENERATOR, load_models
from invgan.csgm import csgm_reconstruct
from invgan.data import load_images
from invgan.models import sample_latent
from invgan.physics import Identity


def test_files_small_and_self_describing():
    for f in (DEFAULT_GENERATOR, DEFAULT_DISCRIMINATOR):
        assert f.stat().st_size < 25 * 2**20
    cfg, G, D, meta = load_models(None, need_discriminator=True)
    assert (cfg.nz, cfg.ngf, cfg.ndf, cfg.image_size) == (100, 64, 64, 64)
    assert meta["train_config"]["epochs"] == 150 and meta["data"]["num_images"] == 20075


def test_representation_error_of_val_faces(celeba_root):
    cfg, G, _, _ = load_models(None)
    x = load_images(celeba_root, "val", limit=4, progress=False).tensor()
    r = csgm_reconstruct(x, Identity(x.shape[1:]), G, restarts=2, iters=300, lr=0.1, seed=0)
    mse = (r.x - x).pow(2).flatten(1).mean(1)
    assert mse.mean() < 0.03, mse  # model card: 0.015 on 64 val faces with 4 restarts x 1000 its


def test_discriminator_is_trained(celeba_root):
    cfg, G, D, _ = load_models(None, need_discriminator=True)
    x = load_images(celeba_root, "val", limit=32, progress=False).tensor()
    with torch.no_grad():
        real = D(x)
        noise = D(torch.rand_like(x) * 2 - 1)
    assert real.mean() > noise.mean() + 1.0  # a random D would not separate faces from noise
