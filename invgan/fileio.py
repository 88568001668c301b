"""Atomic file output: write to a temporary file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    An interrupted write leaves ``path`` untouched (the old file or nothing).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def npz_key(name: str) -> str:
    """The array name a method's images get in an .npz file ("yeh+poisson" -> "yeh_poisson")."""
    return name.replace("+", "_")


def write_images_npz(path, images: dict, ids=None) -> None:
    """Save named image batches (float (N, 3, H, W) in [-1, 1]) as uint8 (N, H, W, 3) arrays in one .npz.

    Array names come from ``npz_key``; ``ids`` (N strings), if given, are stored as "ids".
    """
    import numpy as np

    from invgan.data import to_uint8

    arrays = {npz_key(name): to_uint8(imgs) for name, imgs in images.items()}
    if ids is not None:
        arrays["ids"] = np.array(list(ids))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")  # paths as text


def save_figure(fig, path, **kwargs) -> None:
    """Save a matplotlib figure atomically (format taken from ``path``'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
