"""Measurement operators ("physics", as in deepinv): small objects with ``A``, ``A_adjoint``, a
noisy forward call and the data-fidelity loss in one place.

Images x are float tensors (B, C, H, W) in [-1, 1]; every operator works on a batch and applies
the same A to each image (``Inpainting`` may hold one mask per image). ``physics.img_shape`` is
(C, H, W), ``physics.m`` the number of measurements per image. ``physics(x)`` gives noisy
measurements y; ``physics.A(x)`` the noiseless ones; ``physics.data_fidelity(y, x_hat)`` the
per-image data term that CSGM minimises: the *mean* over the m measurements of the squared
residual, shape (B,). ``physics.to(device, dtype)`` moves its tensors.

Convention (identical to csgm, Bora et al. 2017): Gaussian A has i.i.d. N(0, 1) entries and the
noise has std ``noise_std`` (0.01 in the paper) per measurement; the CSGM objective is
mean_m((y - A G(z))^2) + lambda ||z||^2. This equals ||y' - A'G(z)||^2 + lambda ||z||^2 with
A' = A / sqrt(m) ~ N(0, 1/m) and noise std noise_std / sqrt(m).

Subclass ``Physics`` for your own operator: set ``img_shape`` and ``m``, define ``A`` and
``A_adjoint`` (and ``to`` if it holds tensors); every method and sweep then accepts it. Methods
check y against ``measurement_shape()`` (by default ``A`` applied to one zero image: override it where
``A`` cannot take one) and against ``tensor_dtype()`` (default None: not checked) before they run.
``register_physics`` gives it a name for ``invgan cs --physics`` and sweep recipes.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch
import torch.nn.functional as F

from invgan.errors import InvganError, check_number
from invgan.runtime import OneDNNRight, onednn_products, right_product


def _shape(img_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in img_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise InvganError(f"img_shape must be (channels, height, width) of positive sizes, got {img_shape!r}")
    return shape


class Physics:
    """Base class: subclasses define ``A`` and ``A_adjoint`` and set ``img_shape`` and ``m``.

    Attributes
    ----------
    img_shape : tuple (C, H, W)
        The images' shape.
    m : int
        Measurements per image.
    noise_std : float
        Std of the Gaussian noise that ``__call__`` adds (0: none).
    shared : bool
        The same operator for every image of a batch (then any subset of a batch may be applied).
    """

    img_shape: tuple
    m: int
    noise_std: float = 0.0
    name = "physics"
    shared = True
    #: the number of images the operator is made for where it holds one operator per image
    #: (``Inpainting``'s per-image masks); None: any batch
    per_image_batch: int | None = None

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Noiseless measurements of x (B, C, H, W)."""
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint: measurements y -> images (B, C, H, W)."""
        raise NotImplementedError

    def measurement_shape(self) -> tuple | None:
        """The shape of one image's measurements (y is (B, *this)), or None where it cannot be told.
        The built-in operators know it; the default applies ``A`` to one zero image."""
        try:
            dev = next((v.device for v in vars(self).values() if torch.is_tensor(v)), torch.device("cpu"))
            with torch.no_grad():
                return tuple(self.A(torch.zeros(1, *self.img_shape, device=dev)).shape[1:])
        except Exception:  # an operator that cannot take one zero image: no check
            return None

    def tensor_dtype(self) -> torch.dtype | None:
        """The float dtype the operator's tensors hold, which y and x must have; None: not known (a
        user's operator unless it says)."""
        return None

    def check_measurements(self, y: torch.Tensor, who: str) -> None:
        """Raise ``InvganError`` (prefixed with ``who``, the method) unless y is measurements this
        operator can have made: ``measurement_shape``, ``tensor_dtype`` and ``per_image_batch``."""
        name = type(self).__name__
        shape = self.measurement_shape()
        if shape is not None and tuple(y.shape[1:]) != shape:
            raise InvganError(f"{who}: y has shape {tuple(y.shape)}, but {name} makes measurements of shape "
                              f"(B, {', '.join(map(str, shape))}): pass y = physics(x)")
        dt = self.tensor_dtype()
        if dt is not None and y.dtype != dt:
            raise InvganError(f"{who}: y is {y.dtype} but {name}'s tensors are {dt}: pass y.to({dt}), or "
                              f"physics.to(dtype={y.dtype}) with a generator of that dtype")
        b = self.per_image_batch
        if b is not None and y.shape[0] != b:
            raise InvganError(f"{who}: {name} holds one mask per image for {b} images, but y holds {y.shape[0]}: "
                              f"pass y for those {b} images")

    def check_images(self, x) -> None:
        """Raise ``InvganError`` unless x is a batch of images of this operator's ``img_shape``."""
        shape = tuple(getattr(self, "img_shape", ()) or ())
        if not torch.is_tensor(x) or (shape and (x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != shape)):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise InvganError(f"{type(self).__name__}: x must be images of shape (B, {', '.join(map(str, shape))}), "
                              f"got {got}")
        if not x.is_floating_point():
            raise InvganError(f"{type(self).__name__}: x must hold floating-point values in [-1, 1], got {x.dtype}")
        b = self.per_image_batch
        if b is not None and x.shape[0] != b:
            raise InvganError(f"{type(self).__name__}: it holds one mask per image for {b} images, "
                              f"but x holds {x.shape[0]}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy measurements y = A(x) + noise_std * e, e ~ N(0, I) drawn on the CPU from
        ``generator`` (so the same seed gives the same noise on any device)."""
        self.check_images(x)
        y = self.A(x)
        if self.noise_std > 0:
            e = torch.randn(y.shape, generator=generator, dtype=torch.float32)
            y = y + self.noise_std * e.to(y.device, y.dtype)
        return y

    def data_fidelity(self, y: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Mean squared residual over the measurements, per image: (B,)."""
        return (y - self.A(x_hat)).pow(2).flatten(1).mean(1)

    def to(self, device=None, dtype=None) -> "Physics":
        """Move the operator's tensors (in place) and return it."""
        for k, v in vars(self).items():
            if torch.is_tensor(v):
                setattr(self, k, v.to(device=device, dtype=dtype if v.is_floating_point() else None))
        return self

    def __repr__(self):
        return f"{type(self).__name__}(m={self.m}, img_shape={self.img_shape}, noise_std={self.noise_std})"


class GaussianCS(Physics):
    """Compressed sensing: y = A vec(x) + e, A (m, n) i.i.d. N(0, 1), n = C*H*W (12,288 at 3x64x64).

    ``A`` is drawn from ``seed`` on the CPU, so the same seed gives the same matrix on any device.
    y has shape (B, m).
    """

    name = "gaussian"

    def __init__(self, m: int, img_shape, noise_std: float = 0.01, seed: int = 0, device="cpu"):
        self.img_shape = _shape(img_shape)
        n = math.prod(self.img_shape)
        if not isinstance(m, numbers.Integral) or isinstance(m, bool) or not 1 <= m <= n:
            raise InvganError(f"number of measurements m must be an integer between 1 and {n} "
                              f"(the values of a {'x'.join(map(str, self.img_shape))} image), got {m!r}")
        self.m, self.n, self.noise_std, self.seed = int(m), n, float(check_number("noise_std", noise_std)), seed
        self.matrix = torch.randn(m, n, generator=torch.Generator().manual_seed(seed)).to(device)

    def measurement_shape(self):
        return (self.m,)

    def tensor_dtype(self):
        return self.matrix.dtype

    #: From this m on, float32 products on the CPU go to oneDNN where ``invgan.runtime.onednn_products``
    #: says so (an AMD CPU with AVX-512, or INVGAN_ONEDNN=1): there A's two products are at least a tenth
    #: of a CSGM pass (0.049 of 0.468 GFLOP at m = 1000, 0.49 of 0.91 at m = 10000) and run 2.2 to 2.5
    #: times faster. Below it they stay with torch's default, bit for bit as before.
    ONEDNN_FROM_M = 1000

    def _onednn(self, x):
        """(A^T's oneDNN form, A's) for x @ A^T and y @ A, or None where the products stay with torch's
        default. The forms are made on first use, once per matrix (``to`` makes a new one)."""
        if not (x.device.type == "cpu" and x.dtype == torch.float32 and self.products() == "onednn"):
            return None
        forms = getattr(self, "_onednn_forms", None)
        if forms is None or forms[0] is not self.matrix:
            forms = self._onednn_forms = (self.matrix, OneDNNRight(self.matrix.T), OneDNNRight(self.matrix))
        return forms[1:]

    def products(self) -> str:
        """"onednn" or "torch": which library this operator's float32 products on the CPU go to."""
        use = (self.m >= self.ONEDNN_FROM_M and self.matrix.dtype == torch.float32
               and onednn_products(self.matrix.device))
        return "onednn" if use else "torch"

    def __getstate__(self):  # (copies and pickles leave the oneDNN forms out: they are made again)
        return {k: v for k, v in self.__dict__.items() if k != "_onednn_forms"}

    def A(self, x):
        x = x.reshape(x.shape[0], -1)
        forms = self._onednn(x)
        if forms is not None:
            return right_product(x, *forms)
        return x @ self.matrix.T

    def A_adjoint(self, y):
        forms = self._onednn(y)
        if forms is not None:
            return right_product(y, forms[1], forms[0]).reshape(y.shape[0], *self.img_shape)
        return (y @ self.matrix).reshape(y.shape[0], *self.img_shape)


class SuperResolution(Physics):
    """Block averaging by ``factor`` (4 in the paper): (B, C, H, W) -> (B, C, H/f, W/f)."""

    name = "superres"

    def __init__(self, factor: int, img_shape, noise_std: float = 0.01):
        self.img_shape = _shape(img_shape)
        C, H, W = self.img_shape
        if not isinstance(factor, int) or factor < 1 or H % factor or W % factor:
            raise InvganError(f"super-resolution factor {factor!r} must be a positive integer dividing the "
                              f"image size {H}x{W}")
        self.factor, self.noise_std = factor, float(check_number("noise_std", noise_std))
        self.m = C * (H // factor) * (W // factor)

    def measurement_shape(self):
        C, H, W = self.img_shape
        return (C, H // self.factor, W // self.factor)

    def A(self, x):
        return F.avg_pool2d(x, self.factor)

    def A_adjoint(self, y):
        return F.interpolate(y, scale_factor=self.factor, mode="nearest") / self.factor ** 2


class Inpainting(Physics):
    """Pixel mask: y = mask * x with 1 = observed. y keeps x's shape (B, C, H, W).

    ``mask``: (H, W), (1 or C, H, W) shared by every image, or (B, 1 or C, H, W), one per image
    (then x must hold exactly those B images). ``img_shape`` (C, H, W) defaults to 3 channels of
    the mask's size. ``m`` is the number of observed values per image (the mean over images for
    per-image masks); the data term averages over each image's own.
    """

    name = "inpaint"

    def __init__(self, mask: torch.Tensor, img_shape=None, noise_std: float = 0.0):
        mask = torch.as_tensor(mask, dtype=torch.float32)
        while mask.dim() < 4:
            mask = mask[None]
        img_shape = _shape(img_shape if img_shape is not None else (3, *mask.shape[-2:]))
        if mask.dim() != 4 or mask.shape[-2:] != tuple(img_shape[1:]) or mask.shape[1] not in (1, img_shape[0]):
            raise InvganError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(img_shape)}")
        if not ((mask == 0) | (mask == 1)).all():
            raise InvganError("mask values must be 0 (missing) or 1 (observed)")
        self.mask = mask  # (1 or B, 1 or C, H, W)
        self.known = mask.expand(mask.shape[0], img_shape[0], *img_shape[1:]).flatten(1).sum(1)
        if (self.known == 0).any():
            raise InvganError("the mask has no observed pixels")
        self.m = int(round(self.known.mean().item()))
        self.img_shape, self.noise_std = img_shape, float(check_number("noise_std", noise_std))

    @property
    def shared(self):
        return self.mask.shape[0] == 1

    @property
    def per_image_batch(self):
        return None if self.shared else self.mask.shape[0]

    def tensor_dtype(self):
        return self.mask.dtype

    def measurement_shape(self):
        return tuple(self.img_shape)

    def A(self, x):
        return x * self.mask

    def A_adjoint(self, y):
        return y * self.mask

    def data_fidelity(self, y, x_hat):
        return ((y - x_hat) * self.mask).pow(2).flatten(1).sum(1) / self.known


class Identity(Physics):
    """y = x: recovering x from it measures a generator's representation error."""

    name = "identity"

    def __init__(self, img_shape, noise_std: float = 0.0):
        self.img_shape, self.noise_std = _shape(img_shape), float(check_number("noise_std", noise_std))
        self.m = math.prod(self.img_shape)

    def measurement_shape(self):
        return tuple(self.img_shape)

    def A(self, x):
        return x

    def A_adjoint(self, y):
        return y


# ----------------------------------------------------------------------------- registry
#: name -> builder(m=, img_shape=, noise_std=, seed=, factor=, device=) -> Physics
PHYSICS: dict[str, Callable[..., Physics]] = {}


def register_physics(name: str, build: Callable[..., Physics], replace: bool = False) -> None:
    """Make an operator available by name (``invgan cs --physics NAME``, sweep recipes).

    ``build`` is called with keyword arguments ``m`` (the requested number of measurements, may
    be None), ``img_shape`` (C, H, W), ``noise_std``, ``seed``, ``factor`` and ``device``; it may
    ignore those it does not need (accept ``**kwargs``).
    """
    if not name or not isinstance(name, str):
        raise InvganError(f"a physics name must be a non-empty string, got {name!r}")
    if name in PHYSICS and not replace:
        raise InvganError(f"physics {name!r} is already registered (pass replace=True to override it)")
    PHYSICS[name] = build


def _gaussian(m=None, img_shape=None, noise_std=0.01, seed=0, device="cpu", **_):
    if m is None:
        raise InvganError("gaussian measurements need a number of measurements m")
    return GaussianCS(m, img_shape, noise_std, seed, device)


def _inpaint(img_shape=None, noise_std=0.0, device="cpu", **_):
    from invgan.masks import center_mask

    return Inpainting(center_mask(img_shape[1:]), img_shape, noise_std).to(device)


register_physics("gaussian", _gaussian)
register_physics("superres", lambda img_shape=None, noise_std=0.01, factor=4, **_:
                 SuperResolution(factor, img_shape, noise_std))
register_physics("inpaint", _inpaint)
register_physics("identity", lambda img_shape=None, noise_std=0.0, **_: Identity(img_shape, noise_std))


def available_physics() -> list[str]:
    """The registered operator names (built-in ones and those of loaded plugins)."""
    from invgan.plugins import load_plugins

    load_plugins()
    return list(PHYSICS)


def make_physics(kind: str, img_shape, m: int | None = None, noise_std: float = 0.01,
                 seed: int = 0, factor: int = 4, device="cpu") -> Physics:
    """Build a registered operator by name: "gaussian", "superres", "inpaint" (centre hole),
    "identity", or a user's (``register_physics``)."""
    names = available_physics()
    if kind not in PHYSICS:
        raise InvganError(f"unknown physics {kind!r}: use one of {', '.join(names)}")
    physics = PHYSICS[kind](m=m, img_shape=_shape(img_shape), noise_std=noise_std, seed=seed, factor=factor,
                            device=device)
    if not isinstance(physics, Physics):
        raise InvganError(f"physics {kind!r} built a {type(physics).__name__}, not an invgan.physics.Physics")
    return physics.to(device)
