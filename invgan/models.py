"""DCGAN generator and discriminator (Radford et al. 2015) for square RGB images.

At 64x64 with the defaults (nz=100, ngf=ndf=64) these are the standard DCGAN networks:
G: z (B, nz) -> 512x4x4 -> 256x8x8 -> 128x16x16 -> 64x32x32 -> 3x64x64, tanh output in [-1, 1];
D: 3x64x64 -> 64 -> 128 -> 256 -> 512 (4x4) -> one logit per image, (B,).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from invgan.errors import InvganError

LATENT_PRIORS = ("normal", "uniform")
D_NORMS = ("batch", "layer", "none")


@dataclass
class ModelConfig:
    """Everything needed to rebuild G and D."""

    arch: str = "dcgan"
    image_size: int = 64
    channels: int = 3
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    d_norm: str = "batch"  # "none" or "layer" for a WGAN-GP critic
    latent_prior: str = "normal"  # z ~ N(0, I) or U[-1, 1]^nz

    def __post_init__(self):
        if self.arch != "dcgan":
            raise InvganError(f"unknown architecture {self.arch!r} (only 'dcgan')")
        if self.image_size < 8 or 2 ** round(math.log2(self.image_size)) != self.image_size:
            raise InvganError(f"image_size must be a power of two >= 8, got {self.image_size}")
        if self.d_norm not in D_NORMS:
            raise InvganError(f"d_norm must be one of {D_NORMS}, got {self.d_norm!r}")
        if self.latent_prior not in LATENT_PRIORS:
            raise InvganError(f"latent_prior must be one of {LATENT_PRIORS}, got {self.latent_prior!r}")
        for name in ("nz", "ngf", "ndf", "channels"):
            if getattr(self, name) < 1:
                raise InvganError(f"{name} must be >= 1")

    @property
    def n_up(self) -> int:
        return int(math.log2(self.image_size)) - 2

    def to_dict(self) -> dict:
        """The fields as a plain dict (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise InvganError(f"model config has unknown fields {sorted(unknown)}")
        return cls(**d)


def sample_latent(n: int, cfg: ModelConfig, generator: torch.Generator | None = None,
                  device=None) -> torch.Tensor:
    """Draw z of shape (n, nz) from the training prior."""
    if cfg.latent_prior == "normal":
        return torch.randn(n, cfg.nz, generator=generator, device=device)
    return torch.rand(n, cfg.nz, generator=generator, device=device) * 2 - 1


def init_weights(m: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02); batch-norm gamma N(1, 0.02), beta 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (B, nz) -> image (B, channels, S, S) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.ngf * 2 ** (cfg.n_up - 1)
        layers = [nn.ConvTranspose2d(cfg.nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(cfg.n_up - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2),
                       nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """image (B, channels, S, S) in [-1, 1] -> logit (B,). D(x) = sigmoid(logit)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.ndf
        layers = [nn.Conv2d(cfg.channels, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        size = cfg.image_size // 2
        for _ in range(cfg.n_up - 1):
            layers.append(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=cfg.d_norm == "none"))
            size //= 2
            if cfg.d_norm == "batch":
                layers.append(nn.BatchNorm2d(ch * 2))
            elif cfg.d_norm == "layer":
                layers.append(nn.GroupNorm(1, ch * 2))  # LayerNorm over (C, H, W)
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(x.shape[0])


def build_models(cfg: ModelConfig) -> tuple[Generator, Discriminator]:
    """A freshly initialised (G, D) pair for ``cfg``."""
    return Generator(cfg), Discriminator(cfg)
