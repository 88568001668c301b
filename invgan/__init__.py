"""invgan: imaging inverse problems with pretrained generative models.

Modules, one idea each:
  data        CelebA / image-folder reading, preprocessing and the decoded-image cache
  models      DCGAN generator and discriminator (64x64 RGB)
  checkpoint  self-describing checkpoints (weights + config), safe loading
  train       GAN training loop (`invgan train`), resume, DDP
  physics     measurement operators: Gaussian CS, super-resolution, inpainting, identity
  latent      latent-space optimisation shared by CSGM and inpainting
  csgm        the compressed-sensing objective of Bora et al. 2017
  bases       orthonormal DCT and Haar-wavelet transforms
  lasso       Lasso in a transform basis: batched FISTA solver and cvxpy reference
  metrics     per-pixel MSE, PSNR, SSIM and summaries
"""

__version__ = "0.1.0"


class InvganError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
