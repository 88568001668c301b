"""Self-describing checkpoints.

One file (``torch.save`` of plain containers and tensors) holds the model config needed to
rebuild G and D, their weights, metadata (preprocessing, data, recipe) and, for training
checkpoints, the optimiser / step / RNG state. Loading uses ``torch.load(weights_only=True)``,
which never unpickles arbitrary objects. Writes are atomic.

The shipped default model is two files in ``invgan/weights`` (generator and discriminator
kept apart so that each stays small); ``load_models(None)`` loads them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from invgan.errors import InvganError
from invgan.fileio import atomic_path
from invgan.models import Discriminator, Generator, ModelConfig

FORMAT = "invgan-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_GENERATOR = WEIGHTS_DIR / "dcgan_celeba64_G.pt"
DEFAULT_DISCRIMINATOR = WEIGHTS_DIR / "dcgan_celeba64_D.pt"


def _unwrap(module):
    # DDP and torch.compile wrap the module; checkpoints always hold the plain one's keys.
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


def save_checkpoint(path, model_config: ModelConfig, generator=None, discriminator=None,
                    meta: dict | None = None, train_state: dict | None = None) -> None:
    """Write a checkpoint atomically. ``meta`` and ``train_state`` hold plain values / tensors."""
    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_config.to_dict(),
        "meta": meta or {},
    }
    if generator is not None:
        obj["generator"] = {k: v.detach().cpu() for k, v in _unwrap(generator).state_dict().items()}
    if discriminator is not None:
        obj["discriminator"] = {k: v.detach().cpu() for k, v in _unwrap(discriminator).state_dict().items()}
    if train_state is not None:
        obj["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load_failure(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a few words: torch's own text suggests loading with
    ``weights_only=False``, which invgan never does (it would run code from the file)."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        why = " ".join(text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].split())
        if why.startswith("Unsupported global"):  # a pickled Python object, not only tensors
            name = why.split("GLOBAL ", 1)[1].split()[0] if "GLOBAL " in why else "an object"
            return f"it holds a Python object ({name}), and invgan loads tensors and plain containers only"
        return f"not a PyTorch checkpoint, or damaged: {why.split('. ')[0].rstrip('.')}"
    if "zip archive" in text or "central directory" in text:
        return "damaged or incomplete: its zip archive cannot be read"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:200]


def load_checkpoint(path) -> dict:
    """Read a checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise InvganError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvganError(f"{str(path)!r} is not a readable invgan checkpoint ({_load_failure(exc)}); "
                          "give one written by `invgan train` or invgan.checkpoint.save_checkpoint") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InvganError(f"{str(path)!r} is not an invgan checkpoint (no '{FORMAT}' header)")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise InvganError(f"{str(path)!r} was written by a newer invgan (format "
                          f"{obj['format_version']}); upgrade invgan")
    return obj


def _load_state(module, state, what, path):
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InvganError(f"{str(path)!r}: the {what} weights hold NaN or infinite values ({bad[0]}); "
                          "the checkpoint is damaged or the training diverged: use an earlier one")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InvganError(f"{what} weights in {str(path)!r} do not match the model config they "
                          f"came with ({first[1].strip() if len(first) > 1 else first[0]})") from None


def models_from_checkpoint(ckpt: dict, path="checkpoint", need_generator=True,
                           need_discriminator=False) -> tuple[ModelConfig, Generator | None, Discriminator | None]:
    """Rebuild (config, G, D) from a loaded checkpoint dict; G/D are None when absent."""
    try:
        cfg = ModelConfig.from_dict(dict(ckpt["model"]))
    except (KeyError, TypeError) as exc:
        raise InvganError(f"{str(path)!r} has no usable model config ({exc})") from None
    G = D = None
    if "generator" in ckpt:
        G = Generator(cfg)
        _load_state(G, ckpt["generator"], "generator", path)
    elif need_generator:
        raise InvganError(f"{str(path)!r} holds no generator weights")
    if "discriminator" in ckpt:
        D = Discriminator(cfg)
        _load_state(D, ckpt["discriminator"], "discriminator", path)
    elif need_discriminator:
        raise InvganError(f"{str(path)!r} holds no discriminator weights; pass discriminator_path, a checkpoint with D")
    return cfg, G, D


def default_model_available() -> bool:
    """True if the shipped CelebA generator is installed."""
    return DEFAULT_GENERATOR.is_file()


def load_models(generator_path=None, discriminator_path=None, device="cpu",
                need_discriminator=False):
    """Load G (and D) in eval mode, frozen, on ``device``.

    ``generator_path`` None means the shipped CelebA 64x64 model. ``discriminator_path`` None
    means: the same file as the generator if it holds one, else the shipped discriminator when
    the shipped generator is used.

    Returns (ModelConfig, G, D or None, meta dict).
    """
    if generator_path is None:
        if not default_model_available():
            raise InvganError("no generator given and no shipped default model is installed: "
                              "pass generator_path, a checkpoint made by `invgan train`")
        generator_path = DEFAULT_GENERATOR
        if discriminator_path is None and DEFAULT_DISCRIMINATOR.is_file():
            discriminator_path = DEFAULT_DISCRIMINATOR
    ckpt = load_checkpoint(generator_path)
    cfg, G, D = models_from_checkpoint(ckpt, generator_path, need_generator=True)
    if discriminator_path is not None and os.path.abspath(discriminator_path) != os.path.abspath(generator_path):
        dckpt = load_checkpoint(discriminator_path)
        dcfg, _, D = models_from_checkpoint(dckpt, discriminator_path, need_generator=False,
                                            need_discriminator=True)
        if (dcfg.image_size, dcfg.channels) != (cfg.image_size, cfg.channels):
            raise InvganError(f"discriminator {str(discriminator_path)!r} is for "
                              f"{dcfg.image_size}px images, the generator for {cfg.image_size}px")
    if need_discriminator and D is None:
        raise InvganError(f"{str(generator_path)!r} holds no discriminator weights; pass discriminator_path, a checkpoint with D")
    for net in (G, D):
        if net is not None:
            net.to(device).eval().requires_grad_(False)
    return cfg, G, D, dict(ckpt.get("meta", {}))
