"""invgan: imaging inverse problems with pretrained generative models.

The five calls a researcher needs (docs/api.md)::

    import invgan
    G = invgan.LatentGenerator(my_module, latent_dim=64)           # any generator + its latent space
    physics = invgan.GaussianCS(m=200, img_shape=(1, 28, 28))       # or any Physics subclass
    y = physics(x, torch.Generator().manual_seed(0))                # noisy measurements
    x_hat = invgan.CSGM(G, restarts=2, iters=300)(y, physics).x     # any method: method(y, physics)
    x_las = invgan.Lasso("dct")(y, physics).x

Packages by concern (docs/architecture.md): generators and models, physics, methods (csgm,
lasso, yeh, classical inpainting, least squares; the registry), metrics, data; then the
experiments (cs, inpaint), sweeps, plots and the command line on top.
"""

from invgan.errors import InvganError

__version__ = "0.2.0"

#: public name -> defining module (imported on first use, so `import invgan` stays light)
_PUBLIC = {
    "LatentGenerator": "invgan.generators", "as_generator": "invgan.generators", "frozen": "invgan.generators",
    "Physics": "invgan.physics", "GaussianCS": "invgan.physics", "SuperResolution": "invgan.physics",
    "Inpainting": "invgan.physics", "Identity": "invgan.physics", "make_physics": "invgan.physics",
    "register_physics": "invgan.physics", "available_physics": "invgan.physics",
    "Method": "invgan.methods", "Reconstruction": "invgan.methods", "CSGM": "invgan.methods",
    "Lasso": "invgan.methods", "SparseGen": "invgan.methods", "sparse_gen_reconstruct": "invgan.sparse_gen",
    "LeastSquares": "invgan.methods", "YehInpainting": "invgan.methods",
    "Biharmonic": "invgan.methods", "TVInpainting": "invgan.methods", "register_method": "invgan.methods",
    "available_methods": "invgan.methods", "make_method": "invgan.methods",
    "csgm_reconstruct": "invgan.csgm", "lasso_fista": "invgan.lasso", "lasso_homotopy": "invgan.lasso",
    "yeh_inpaint": "invgan.yeh",
    "optimize_latent": "invgan.latent", "DCTBasis": "invgan.bases", "HaarBasis": "invgan.bases",
    "make_masks": "invgan.masks", "blend": "invgan.blend",
    "mse_per_image": "invgan.metrics", "psnr_from_mse": "invgan.metrics", "ssim_per_image": "invgan.metrics",
    "summarize": "invgan.metrics", "load_images": "invgan.data", "load_models": "invgan.checkpoint",
    "ModelConfig": "invgan.models", "Generator": "invgan.models", "Discriminator": "invgan.models",
    "from_deepinv": "invgan.interop", "to_deepinv": "invgan.interop", "keep_freed_memory": "invgan.runtime",
}

__all__ = ["InvganError", "__version__", *_PUBLIC]


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'invgan' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
