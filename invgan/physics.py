"""Measurement operators: ``y = physics(x)`` (with noise), ``physics.A(x)`` (noiseless).

Images x are float tensors (B, C, H, W) in [-1, 1]; every operator works on a batch and
applies the same A to each image. ``physics.m`` is the number of measurements per image and
``measurement_loss(y, x_hat)`` the per-image data term used by CSGM: the *mean* over the m
measurements of the squared residual, shape (B,).

Convention (identical to csgm, Bora et al. 2017): Gaussian A has i.i.d. N(0, 1) entries and the
noise has std ``noise_std`` (0.01 in the paper) per measurement; the CSGM objective is
mean_m((y - A G(z))^2) + lambda ||z||^2. This equals ||y' - A'G(z)||^2 + lambda ||z||^2 with
A' = A / sqrt(m) ~ N(0, 1/m) and noise std noise_std / sqrt(m).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invgan import InvganError


class Physics:
    """Base class: subclasses define ``A`` (and ``A_adjoint`` where cheap) and ``m``."""

    m: int
    noise_std: float = 0.0
    name = "physics"
    #: the same operator for every image of a batch (so any subset of a batch may be applied)
    shared = True

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy measurements y = A(x) + noise_std * e, e ~ N(0, I) drawn on the CPU (reproducible)."""
        y = self.A(x)
        if self.noise_std > 0:
            e = torch.randn(y.shape, generator=generator, dtype=torch.float32)
            y = y + self.noise_std * e.to(y.device, y.dtype)
        return y

    def measurement_loss(self, y: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Mean squared residual over the measurements, per image: (B,)."""
        return (y - self.A(x_hat)).pow(2).flatten(1).mean(1)

    def to(self, device):
        return self


class GaussianCS(Physics):
    """Compressed sensing: y = A vec(x) + e, A (m, n) i.i.d. N(0, 1), n = C*H*W (12,288 at 64x64).

    ``A`` is drawn from ``seed`` on the CPU, so the same seed gives the same matrix on any device.
    y has shape (B, m).
    """

    name = "gaussian"

    def __init__(self, m: int, img_shape=(3, 64, 64), noise_std: float = 0.01, seed: int = 0,
                 device="cpu"):
        n = img_shape[0] * img_shape[1] * img_shape[2]
        if not 1 <= m <= n:
            raise InvganError(f"number of measurements must be between 1 and {n} "
                              f"(the pixels of a {img_shape[1]}x{img_shape[2]} image), got {m}")
        self.m, self.n, self.img_shape, self.noise_std, self.seed = m, n, tuple(img_shape), noise_std, seed
        self.matrix = torch.randn(m, n, generator=torch.Generator().manual_seed(seed)).to(device)

    def A(self, x):
        return x.reshape(x.shape[0], -1) @ self.matrix.T

    def A_adjoint(self, y):
        return (y @ self.matrix).reshape(y.shape[0], *self.img_shape)

    def to(self, device):
        self.matrix = self.matrix.to(device)
        return self


class SuperResolution(Physics):
    """Block averaging by ``factor`` (4 in the paper): (B, C, H, W) -> (B, C, H/f, W/f)."""

    name = "superres"

    def __init__(self, factor: int = 4, img_shape=(3, 64, 64), noise_std: float = 0.01):
        if factor < 1 or img_shape[1] % factor or img_shape[2] % factor:
            raise InvganError(f"super-resolution factor {factor} must divide the image size {img_shape[1]}")
        self.factor, self.img_shape, self.noise_std = factor, tuple(img_shape), noise_std
        self.m = img_shape[0] * (img_shape[1] // factor) * (img_shape[2] // factor)

    def A(self, x):
        return F.avg_pool2d(x, self.factor)

    def A_adjoint(self, y):
        return F.interpolate(y, scale_factor=self.factor, mode="nearest") / self.factor ** 2


class Inpainting(Physics):
    """Pixel mask: y = mask * x with 1 = observed. y keeps x's shape (B, C, H, W).

    ``mask``: (H, W), (1 or C, H, W) shared by every image, or (B, 1 or C, H, W), one per image
    (then x must hold exactly those B images). ``m`` is the number of observed values per image
    (the mean over images for per-image masks); the data term averages over each image's own.
    """

    name = "inpaint"

    def __init__(self, mask: torch.Tensor, img_shape=(3, 64, 64), noise_std: float = 0.0):
        mask = torch.as_tensor(mask, dtype=torch.float32)
        while mask.dim() < 4:
            mask = mask[None]
        if mask.dim() != 4 or mask.shape[-2:] != tuple(img_shape[1:]) or mask.shape[1] not in (1, img_shape[0]):
            raise InvganError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(img_shape)}")
        if not ((mask == 0) | (mask == 1)).all():
            raise InvganError("mask values must be 0 (missing) or 1 (observed)")
        self.mask = mask  # (1 or B, 1 or C, H, W)
        self.known = mask.expand(mask.shape[0], img_shape[0], *img_shape[1:]).flatten(1).sum(1)
        if (self.known == 0).any():
            raise InvganError("the mask has no observed pixels")
        self.m = int(round(self.known.mean().item()))
        self.img_shape, self.noise_std = tuple(img_shape), noise_std

    @property
    def shared(self):
        return self.mask.shape[0] == 1

    def A(self, x):
        return x * self.mask

    def A_adjoint(self, y):
        return y * self.mask

    def measurement_loss(self, y, x_hat):
        return ((y - x_hat) * self.mask).pow(2).flatten(1).sum(1) / self.known

    def to(self, device):
        self.mask, self.known = self.mask.to(device), self.known.to(device)
        return self


class Identity(Physics):
    """y = x ("project"): recovering x measures the generator's representation error."""

    name = "project"

    def __init__(self, img_shape=(3, 64, 64), noise_std: float = 0.0):
        self.img_shape, self.noise_std = tuple(img_shape), noise_std
        self.m = img_shape[0] * img_shape[1] * img_shape[2]

    def A(self, x):
        return x

    def A_adjoint(self, y):
        return y


MEASUREMENTS = ("gaussian", "superres", "inpaint", "project")


def make_physics(kind: str, m: int | None = None, img_shape=(3, 64, 64), noise_std: float = 0.01,
                 seed: int = 0, factor: int = 4, device="cpu") -> Physics:
    """Build an operator by name (the CLI's --measurement)."""
    if kind == "gaussian":
        if m is None:
            raise InvganError("gaussian measurements need a number of measurements m")
        return GaussianCS(m, img_shape, noise_std, seed, device)
    if kind == "superres":
        return SuperResolution(factor, img_shape, noise_std)
    if kind == "inpaint":
        from invgan.masks import center_mask

        return Inpainting(center_mask(img_shape[1]), img_shape, noise_std).to(device)
    if kind == "project":
        return Identity(img_shape, noise_std)
    raise InvganError(f"unknown measurement {kind!r}: use one of {', '.join(MEASUREMENTS)}")
