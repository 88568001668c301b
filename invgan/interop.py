"""deepinv interoperability (optional extra: ``pip install invgan[deepinv]``).

- ``from_deepinv(physics, img_shape)``: a deepinv ``Physics`` as an invgan operator, usable by
  every invgan method (``A``, ``A_adjoint`` and the noisy forward call are deepinv's own).
- ``to_deepinv(method)``: an invgan method as a deepinv reconstructor ``model(y, physics) -> x``
  (a ``deepinv.models.Reconstructor`` when deepinv is installed, else a plain ``nn.Module``),
  accepting deepinv or invgan physics.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from invgan.errors import InvganError
from invgan.physics import Physics


class DeepinvPhysics(Physics):
    """A deepinv ``Physics`` seen as an invgan operator (see ``from_deepinv``)."""

    name = "deepinv"

    def __init__(self, physics, img_shape, noise_std: float | None = None):
        self.physics = physics
        self.img_shape = tuple(int(s) for s in img_shape)
        if len(self.img_shape) != 3:
            raise InvganError(f"img_shape must be (C, H, W), got {img_shape!r}")
        with torch.no_grad():
            probe = physics.A(torch.zeros(1, *self.img_shape, device=_device_of(physics)))
        self.m = math.prod(probe.shape[1:])
        self._y_shape = tuple(probe.shape[1:])
        if noise_std is None:
            sigma = getattr(getattr(physics, "noise_model", None), "sigma", 0.0)
            sigma = torch.as_tensor(sigma, dtype=torch.float64)
            noise_std = float(sigma.flatten()[0]) if sigma.numel() and bool((sigma == sigma.flatten()[0]).all()) else 0.0
        self.noise_std = float(noise_std)

    def A(self, x):
        return self.physics.A(x)

    def A_adjoint(self, y):
        return self.physics.A_adjoint(y)

    def measurement_shape(self):
        return self._y_shape

    def __call__(self, x, generator=None):
        """deepinv's own noisy forward model."""
        self.check_images(x)
        return self.physics(x)

    def to(self, device=None, dtype=None):
        self.physics = self.physics.to(device=device, dtype=dtype) if dtype else self.physics.to(device)
        return self


def _device_of(physics):
    for t in list(getattr(physics, "parameters", lambda: [])()) + list(getattr(physics, "buffers", lambda: [])()):
        return t.device
    return torch.device("cpu")


def from_deepinv(physics, img_shape, noise_std: float | None = None) -> Physics:
    """Wrap a deepinv ``Physics`` (anything with ``A`` and ``A_adjoint``) for invgan methods.

    ``img_shape``: (C, H, W) of the images it measures; ``noise_std``: the Gaussian noise level
    to report (default: the physics' ``noise_model.sigma`` if it has one).
    """
    if isinstance(physics, Physics):
        return physics
    if not (callable(getattr(physics, "A", None)) and callable(getattr(physics, "A_adjoint", None))):
        raise InvganError(f"{type(physics).__name__} is not a deepinv physics (it needs A and A_adjoint)")
    return DeepinvPhysics(physics, img_shape, noise_std)


def _reconstructor_base():
    try:
        from deepinv.models import Reconstructor

        return Reconstructor
    except ImportError:
        return nn.Module


class _Wrapped(_reconstructor_base()):
    def __init__(self, method, img_shape=None):
        super().__init__()
        self.method, self.img_shape = method, img_shape

    def forward(self, y, physics, **kwargs):
        if not isinstance(physics, Physics):
            shape = self.img_shape or tuple(physics.A_adjoint(y[:1]).shape[1:])
            physics = from_deepinv(physics, shape)
        return self.method(y, physics).x


def to_deepinv(method, img_shape=None) -> nn.Module:
    """An invgan method (``method(y, physics) -> Reconstruction``) as a deepinv reconstructor:
    ``model(y, physics) -> x`` (B, C, H, W). ``img_shape`` defaults to that of A^T y."""
    if not callable(method):
        raise InvganError(f"to_deepinv needs an invgan method, got {type(method).__name__}")
    return _Wrapped(method, img_shape)
