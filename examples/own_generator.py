"""Your own generator and your own operator with invgan's methods, in one file.

A tiny generator (latent 8 -> 1x28x28 grey images, random weights standing in for a trained
model) and a custom operator (2x2 blur-and-subsample, then a random half of those pixels) are
defined here; CSGM, the Lasso (DCT basis, any image size) and the least-squares baseline recover
images that the generator can make, and the per-pixel errors are printed. Runs in seconds on a CPU:

    python examples/own_generator.py
"""

import torch
from torch import nn

import invgan


class TinyGenerator(nn.Module):
    """z (N, 8) -> images (N, 1, 28, 28) in [-1, 1]."""

    def __init__(self, latent_dim=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 28 * 28), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, 1, 28, 28)


class BlurSubsample(invgan.Physics):
    """y = S avgpool2(x): 2x2 block means (14x14), then a fixed random subset of ``m`` of them."""

    def __init__(self, m, img_shape=(1, 28, 28), noise_std=0.0, seed=0):
        self.img_shape, self.m, self.noise_std = img_shape, m, noise_std
        C, H, W = img_shape
        self.keep = torch.randperm(C * (H // 2) * (W // 2), generator=torch.Generator().manual_seed(seed))[:m]

    def A(self, x):
        return nn.functional.avg_pool2d(x, 2).flatten(1)[:, self.keep]

    def A_adjoint(self, y):
        C, H, W = self.img_shape
        full = torch.zeros(y.shape[0], C * (H // 2) * (W // 2), dtype=y.dtype, device=y.device)
        full[:, self.keep] = y
        return nn.functional.interpolate(full.view(-1, C, H // 2, W // 2), scale_factor=2, mode="nearest") / 4


def main():
    torch.manual_seed(0)
    G = invgan.LatentGenerator(TinyGenerator().eval(), latent_dim=8, prior="normal")
    with torch.no_grad():
        x = G(G.sample(4, torch.Generator().manual_seed(1)))      # 4 images the generator can make
    physics = BlurSubsample(m=120, noise_std=0.01)
    y = physics(x, torch.Generator().manual_seed(2))               # (4, 120) noisy measurements
    methods = {
        "csgm": invgan.CSGM(G, restarts=4, iters=300, lr=0.05),
        "lasso-dct": invgan.Lasso("dct", alpha=1e-5),
        "least-squares": invgan.LeastSquares(),
    }
    print(f"{type(G.module).__name__}: latent {G.latent_dim}, images {G.image_shape}; "
          f"{type(physics).__name__}: m = {physics.m} of {x[0].numel()} values")
    for name, method in methods.items():
        x_hat = method(y, physics).x
        mse = invgan.mse_per_image(x_hat, x)
        print(f"{name:14s} per-pixel MSE {mse.mean():.5f}  (images: {', '.join(f'{v:.4f}' for v in mse)})")


if __name__ == "__main__":
    main()
