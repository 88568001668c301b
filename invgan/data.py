"""Reading images: CelebA in its official layout, or a user's folder / glob of images.

Every source is decoded once into a uint8 array of shape (N, size, size, 3) and cached on
disk (keyed by the file list and the preprocessing), so training epochs never re-decode JPEGs.
Models see float tensors of shape (N, 3, size, size) in [-1, 1] (``to_tensor``).

CelebA preprocessing (the DCGAN / CSGM standard): centre box (35, 55, 143, 163) of the
178x218 aligned image, i.e. 108x108, resized to 64x64 with an antialiased bilinear filter.
A plain folder: centre crop to a square, then the same resize.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import io
import json
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from invgan.errors import InvganError
from invgan.fileio import atomic_path, to_uint8  # noqa: F401 (to_uint8: the inverse of to_tensor)

CELEBA_ENV = "INVGAN_CELEBA"
CACHE_ENV = "INVGAN_CACHE"
PARTITIONS = {"train": 0, "val": 1, "test": 2}
CELEBA_SIZE = (178, 218)
CELEBA_BOX = (35, 55, 143, 163)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
PREPROCESS_VERSION = 1


@dataclass
class ImageSet:
    """Decoded images. ``images``: uint8 (N, size, size, 3); ``ids``: file names, same order."""

    images: np.ndarray
    ids: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    partition: str = "all"

    def __len__(self) -> int:
        return len(self.ids)

    def tensor(self, indices=None) -> torch.Tensor:
        """Float tensor (N, 3, size, size) in [-1, 1]."""
        imgs = self.images if indices is None else self.images[indices]
        return to_tensor(imgs)


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = np.array(images)  # a read-only (memory-mapped) cache: torch would warn on every run
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


# ----------------------------------------------------------------------------- locating data
def default_celeba_root() -> Path | None:
    """The CelebA folder: $INVGAN_CELEBA, else ../shared/data/celeba (beside the checkout)."""
    env = os.environ.get(CELEBA_ENV)
    if env:
        return Path(env)
    for cand in (Path.cwd() / ".." / "shared" / "data" / "celeba",
                 Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba"):
        if is_celeba(cand):
            return cand.resolve()
    return None


def default_cache_dir() -> Path:
    """Where decoded images are cached: $INVGAN_CACHE, else ~/.cache/invgan."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "invgan"


def is_celeba(path: Path) -> bool:
    """True if ``path`` is a folder in CelebA's official layout (images and partition file)."""
    path = Path(path)
    return path.is_dir() and (path / "list_eval_partition.txt").is_file() and (
        (path / "img_align_celeba").is_dir() or (path / "img_align_celeba.zip").is_file())


def read_partition_file(root: Path) -> dict[str, int]:
    """``{"000001.jpg": 0, ...}`` from list_eval_partition.txt (the source of truth)."""
    parts = {}
    path = Path(root) / "list_eval_partition.txt"
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise InvganError(f"{path} is not a text file: restore CelebA's list_eval_partition.txt") from None
    except OSError as exc:
        raise InvganError(f"{path} cannot be read ({exc.strerror})") from None
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise InvganError(f"{root}/list_eval_partition.txt line {lineno}: expected "
                              f"'NNNNNN.jpg S' with S in 0/1/2, got {line.strip()!r}")
        parts[fields[0]] = int(fields[1])
    return parts


def celeba_names(root: Path, partition: str = "all") -> list[str]:
    """File names of a CelebA partition, sorted by id."""
    if partition != "all" and partition not in PARTITIONS:
        raise InvganError(f"unknown partition {partition!r}: use train, val, test or all")
    parts = read_partition_file(root)
    want = None if partition == "all" else PARTITIONS[partition]
    return sorted(n for n, p in parts.items() if want is None or p == want)


def resolve_image_files(spec: str) -> list[Path]:
    """Files of a plain folder (recursively) or a glob pattern, sorted."""
    if any(ch in spec for ch in "*?["):
        files = [Path(p) for p in globlib.glob(spec, recursive=True)]
    else:
        path = Path(spec)
        if not path.exists():
            raise InvganError(f"image path {spec!r} does not exist")
        if path.is_file():
            files = [path]
        else:
            files = [p for p in path.rglob("*") if p.is_file()]
    files = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvganError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found at {spec!r}")
    return files


# ----------------------------------------------------------------------------- decoding
def _decode(args) -> tuple[np.ndarray | None, str]:
    """Decode one image (path or bytes); returns (uint8 HxWx3 or None, error message)."""
    src, size, celeba = args
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im.load()
            im = im.convert("RGB")
            if celeba:
                if im.size != CELEBA_SIZE:
                    return None, f"not a {CELEBA_SIZE[0]}x{CELEBA_SIZE[1]} aligned CelebA image ({im.size[0]}x{im.size[1]})"
                im = im.crop(CELEBA_BOX)
            else:
                w, h = im.size
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                im = im.crop((left, top, left + s, top + s))
            im = im.resize((size, size), Image.BILINEAR, reducing_gap=None)
            return np.asarray(im, dtype=np.uint8), ""
    except Exception as exc:  # PIL raises many types for corrupt / truncated files
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def _decode_all(jobs, names, progress: bool, workers: int):
    from tqdm import tqdm

    images, ids, skipped = [], [], []
    chunk = max(1, min(256, len(jobs) // (4 * max(workers, 1)) or 1))
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_decode, jobs, chunksize=chunk)
            results = list(tqdm(results, total=len(jobs), desc="decoding", unit="img",
                                disable=not progress))
    else:
        results = [_decode(j) for j in tqdm(jobs, desc="decoding", unit="img", disable=not progress)]
    for name, (img, err) in zip(names, results):
        if img is None:
            skipped.append((name, err))
        else:
            images.append(img)
            ids.append(name)
    return images, ids, skipped


def _cache_key(descriptor: dict) -> str:
    return hashlib.sha256(json.dumps(descriptor, sort_keys=True).encode()).hexdigest()[:24]


def load_images(spec: str | os.PathLike | None = None, partition: str = "all", size: int = 64,
                cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                limit: int | None = None, progress: bool = True, workers: int | None = None) -> ImageSet:
    """Load and preprocess images, through the on-disk cache.

    Parameters
    ----------
    spec : a CelebA folder (official layout), a plain folder, a glob pattern, or None for the
        configured CelebA location ($INVGAN_CELEBA, default ../shared/data/celeba).
    partition : train / val / test / all (CelebA only; the partition file decides).
    size : output side in pixels (64 for the DCGAN models).
    limit : keep only the first ``limit`` usable images (lowest ids) of the selection: files that
        cannot be decoded are skipped and the next ones taken instead.

    Returns an ``ImageSet`` with uint8 images (N, size, size, 3). Corrupt or truncated files
    are skipped and listed in ``ImageSet.skipped``; raises ``InvganError`` if none is usable.
    """
    if spec is None:
        root = default_celeba_root()
        if root is None:
            raise InvganError(f"no CelebA folder found: set {CELEBA_ENV} to a folder holding "
                              "img_align_celeba/ and list_eval_partition.txt")
        spec = root
    spec = str(spec)
    if limit is not None and limit < 1:
        raise InvganError(f"limit must be >= 1, got {limit}")
    if spec.endswith(".npy"):
        return load_array(spec, size, partition, limit)
    path = Path(spec)
    celeba = is_celeba(path)
    if celeba:
        names = celeba_names(path, partition)
        if not names:
            raise InvganError(f"CelebA folder {spec!r} lists no images in partition {partition!r}")
        zpath = path / "img_align_celeba.zip"
        use_zip = not (path / "img_align_celeba").is_dir()
        if use_zip:
            stamp = [str(zpath.resolve()), zpath.stat().st_size, zpath.stat().st_mtime_ns]
        else:
            stamp = []
            for n in names[:limit] if limit else names:
                f = path / "img_align_celeba" / n
                st = f.stat() if f.exists() else None
                stamp.append([n, st.st_size if st else -1, st.st_mtime_ns if st else -1])
        descriptor = {"kind": "celeba", "root": str(path.resolve()), "names": names[:limit] if limit else names,
                      "stamp": stamp}
    else:
        if not path.exists() and not any(ch in spec for ch in "*?["):
            raise InvganError(f"image path {spec!r} does not exist")
        if partition not in ("all",):
            raise InvganError(f"partition {partition!r} needs a CelebA folder (with "
                              f"list_eval_partition.txt); {spec!r} is a plain folder or glob")
        if path.is_dir() and not any(path.iterdir()):
            raise InvganError(f"image folder {spec!r} is empty")
        files = resolve_image_files(spec)
        names = [str(f) for f in files]
        stamp = [[n, f.stat().st_size, f.stat().st_mtime_ns] for n, f in zip(names[:limit] if limit else names, files)]
        descriptor = {"kind": "files", "stamp": stamp}
    descriptor.update(size=size, version=PREPROCESS_VERSION, limit=limit)

    cache_file = None
    if use_cache:
        cache_file = Path(cache_dir or default_cache_dir()) / f"images-{_cache_key(descriptor)}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    skipped = [tuple(s) for s in z["skipped"].tolist()]
                    return ImageSet(z["images"], z["ids"].tolist(), skipped, spec, partition)
            except Exception:
                pass  # unreadable cache: decode again and overwrite it

    workers = workers or min(os.cpu_count() or 1, 8)
    zf = zipfile.ZipFile(zpath) if celeba and use_zip else None

    def decode(batch):
        if zf is not None:
            members = _zip_members(zf)
            present = [n for n in batch if n in members]
            out = _decode_all([(zf.read(members[n]), size, True) for n in present], present, progress, workers)
            return out[0], out[1], out[2] + [(n, "listed in list_eval_partition.txt but missing")
                                             for n in batch if n not in members]
        if celeba:
            out = _decode_all([(str(path / "img_align_celeba" / n), size, True) for n in batch], batch, progress, workers)
            return out[0], out[1], [(n, "listed in list_eval_partition.txt but missing" if "No such file" in e else e)
                                    for n, e in out[2]]
        return _decode_all([(n, size, False) for n in batch], batch, progress, workers)

    try:
        # ``limit`` counts usable images: files that fail to decode are replaced by the next ones
        todo = list(names)
        images, ids, skipped = [], [], []
        while todo and (not limit or len(images) < limit):
            take = len(todo) if not limit else limit - len(images)
            batch, todo = todo[:take], todo[take:]
            im, i_, sk = decode(batch)
            images, ids, skipped = images + im, ids + i_, skipped + sk
    except zipfile.BadZipFile as exc:
        raise InvganError(f"{zpath} is not a readable zip file: {exc}") from None
    finally:
        if zf is not None:
            zf.close()

    if not images:
        detail = f" (first problem: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise InvganError(f"no usable images at {spec!r}{detail}")
    arr = np.stack(images)
    if cache_file is not None:
        try:
            with atomic_path(cache_file) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, images=arr, ids=np.array(ids),
                             skipped=np.array(skipped, dtype=str).reshape(-1, 2))
        except OSError:
            pass  # a read-only cache location must not stop the run
    return ImageSet(arr, ids, skipped, spec, partition)


def _zip_members(zf) -> dict:
    """Image name -> member name of a CelebA zip."""
    if not hasattr(zf, "_invgan_members"):
        zf._invgan_members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")}
    return zf._invgan_members


def load_array(path: str, size: int, partition: str = "all", limit: int | None = None) -> ImageSet:
    """A pre-decoded uint8 array (N, size, size, 3) saved with numpy.save (e.g. by `invgan data`)."""
    if partition != "all":
        raise InvganError(f"partition {partition!r} needs a CelebA folder, not the array {path!r}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvganError(f"cannot read image array {path!r}: {exc}") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (size, size, 3) or len(arr) == 0:
        raise InvganError(f"{path!r} must hold uint8 images of shape (N, {size}, {size}, 3); "
                          f"it holds {arr.dtype} {arr.shape}")
    arr = np.array(arr[:limit] if limit else arr)  # a writable in-memory copy
    return ImageSet(arr, [f"{path}#{i}" for i in range(len(arr))], [], path, partition)


def describe_celeba(root: Path) -> dict[str, int]:
    """Images per partition listed in a CelebA folder."""
    parts = read_partition_file(root)
    counts = {name: 0 for name in PARTITIONS}
    inv = {v: k for k, v in PARTITIONS.items()}
    for p in parts.values():
        counts[inv[p]] += 1
    return counts
