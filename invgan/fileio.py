"""Writing results: atomic files (a temporary file in the same folder, then a rename), image
arrays, CSV rows, figures and image grids. Images are float (N, C, H, W) in [-1, 1], C = 1 or 3."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder, name: str) -> None:
    """Delete the temporary files that interrupted writes of ``folder/name`` left behind (their
    writing process is gone; the process id is part of the temporary file's name)."""
    for tmp in Path(folder).glob(f".{glob_escape(name)}.*.tmp"):
        m = re.fullmatch(rf"\.{re.escape(name)}\.(\d+)\..*\.tmp", tmp.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                tmp.unlink()
            except OSError:
                pass


def remove_stale_staging(folder) -> None:
    """Delete the staging folders (``.staging.PID``) that killed runs left in ``folder``."""
    import shutil

    for d in Path(folder).glob(".staging.*"):
        pid = d.name.rsplit(".", 1)[-1]
        if d.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def glob_escape(text: str) -> str:
    """``text`` with glob wildcards escaped."""
    import glob

    return glob.escape(text)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    An interrupted write leaves ``path`` untouched (the old file or nothing); the temporary file
    it leaves (named after the writing process) is removed by the next write of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def to_uint8(x):
    """float (N, C, H, W) in [-1, 1] -> uint8 numpy (N, H, W, C)."""
    import torch

    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def write_images_npz(path, images: dict, ids=None) -> None:
    """Save named image batches (float (N, C, H, W) in [-1, 1]) as uint8 (N, H, W, C) arrays in one .npz.

    Array names come from ``npz_key``; ``ids`` (N strings), if given, are stored as "ids".
    """
    import numpy as np

    arrays = {npz_key(name): to_uint8(imgs) for name, imgs in images.items()}
    if ids is not None:
        arrays["ids"] = np.array(list(ids))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON atomically (paths and other objects as text)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")  # paths as text


def save_figure(fig, path, **kwargs) -> None:
    """Save a matplotlib figure atomically (format taken from ``path``'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)


def write_rows_csv(rows: list[dict], path, fields) -> None:
    """Write dict rows as CSV with the columns ``fields`` (others ignored), atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def save_grid(images, path, nrow: int = 8) -> None:
    """Save images (N, C, H, W) in [-1, 1] as one PNG grid (torchvision's layout), atomically."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(images.float().cpu(), tmp, nrow=nrow, normalize=True, value_range=(-1, 1),
                   padding=2, format="png")


def image_grid_figure(rows: list, ncols: int):
    """A matplotlib figure with one labelled row per (label, images (N, C, H, W) in [-1, 1]);
    C = 1 (shown in grey) or 3. Shows the first ``ncols`` images of each row."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, rows[0][1].shape[0]))
    label_w = 0.3 + 0.075 * max(len(line) for label, _ in rows for line in label.splitlines())  # inches for the row labels
    width = 1.2 * ncols + label_w
    fig = Figure(figsize=(width, 1.25 * len(rows)))  # no pyplot: the caller's backend and figures are left alone
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            img = ((imgs[c].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
            if img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(left=label_w / width, right=0.99, top=0.99, bottom=0.01, wspace=0.04, hspace=0.04)
    return fig


def check_output_dir(path) -> None:
    """Raise ``InvganError`` unless ``path`` is, or can be made as, a writable folder.

    Nothing is created: an existing folder is probed with a temporary file that is removed at
    once; for a missing one, its nearest existing parent is checked the same way."""
    from invgan.errors import InvganError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InvganError(f"output folder {str(p)!r} is a file: give a folder")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InvganError(f"output folder {str(p)!r} cannot be made: {str(probe)!r} is a file")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".invgan-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InvganError(f"output folder {str(p)!r} is not writable ({exc.strerror}): choose another") from None


def check_output_file(path, formats=None) -> None:
    """Raise ``InvganError`` unless ``path`` can be written as a file of one of ``formats``
    (suffixes without the dot); nothing is created."""
    from invgan.errors import InvganError

    p = Path(path)
    if formats is not None and p.suffix.lower().lstrip(".") not in formats:
        raise InvganError(f"unknown {'figure' if 'svg' in formats else 'image'} format {p.suffix or '(none)'!r} "
                          f"for {str(p)!r}: use {', '.join('.' + f for f in formats)}")
    if p.is_dir():
        raise InvganError(f"output file {str(p)!r} is a folder: give a file name")
    check_output_dir(p.parent)
