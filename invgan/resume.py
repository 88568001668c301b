"""Mid-run state of a long solve, so that an interrupted sweep cell resumes where it stopped.

A solver given a ``SolveState`` saves its iterate every ``every`` seconds and, when started
again, continues from the saved iterate: the result is the one an uninterrupted run gives
(the state holds everything the next iteration reads). A state file is ``torch.save`` of
plain containers and tensors, written atomically and read with ``weights_only=True``. It
carries a key (the solver's settings and a hash of its inputs); a file whose key differs
is ignored, so a changed problem starts afresh. ``carried`` is the solve time that the loaded
state stands for (seconds spent up to its save), so a resumed run can report its full cost.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path

import torch

from invgan.fileio import atomic_path
from invgan.runtime import products_of


def fingerprint(*tensors: torch.Tensor) -> str:
    """Hash of the tensors' shapes, dtypes and values (to tell one problem from another)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:32]


def _to(v, device):
    """A copy of plain containers (dict, list, tuple) with every tensor detached and on ``device``."""
    if isinstance(v, torch.Tensor):
        return v.detach().to(device or "cpu").clone()
    if isinstance(v, dict):
        return {k: _to(x, device) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_to(x, device) for x in v)
    return v


class SolveState:
    """One solve's state file at ``path``; ``every``: seconds between saves."""

    def __init__(self, path, every: float = 60.0):
        self.path = Path(path)
        self.every = every
        self._t0 = self._last = time.monotonic()
        self.carried = 0.0

    def load(self, key: dict, device=None) -> dict | None:
        """The saved state (tensors moved to ``device``) if the file exists and was saved under
        ``key``; else None."""
        if not self.path.is_file():
            return None
        try:
            obj = torch.load(self.path, map_location=device or "cpu", weights_only=True)
        except Exception:  # unreadable or foreign file: start afresh, it is overwritten later
            return None
        if not isinstance(obj, dict) or obj.get("key") != key:
            return None
        self.carried = float(obj.get("seconds", 0.0))
        return obj["state"]

    def due(self) -> bool:
        """True when the last save is ``every`` seconds old (time to save again)."""
        return time.monotonic() - self._last >= self.every

    def save(self, key: dict, state: dict) -> None:
        """Write atomically; tensors are stored on the CPU."""
        with atomic_path(self.path) as tmp:
            seconds = self.carried + time.monotonic() - self._t0
            torch.save({"key": key, "seconds": seconds, "state": _to(state, "cpu")}, tmp)
        self._last = time.monotonic()

    def remove(self) -> None:
        """Delete the state file (the solve finished)."""
        self.path.unlink(missing_ok=True)


class SolutionCache:
    """Finished solves kept by key, so that a result one method computed serves another method that
    would compute it again: Sparse-Gen's DCGAN+Reg start is the ``dcgan-reg`` method's own solve,
    so in one run (``invgan cs --methods dcgan-reg,sparse-gen``) or one sweep folder it is
    computed once.

    Entries live in memory and, with ``directory``, also as one file per key there (``torch.save``
    of plain containers and tensors, written atomically, read with ``weights_only=True``), so the
    cells of a sweep, its ``--jobs`` workers and a later rerun share them. The key is a dict of the
    solver's settings and fingerprints of everything it reads (generator weights, operator,
    measurements); an unreadable file or one saved under another key counts as absent.
    """

    def __init__(self, directory=None):
        self.directory = None if directory is None else Path(directory)
        self._memory: dict[str, tuple[dict, dict]] = {}

    @staticmethod
    def _name(key: dict) -> str:
        import json

        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def get(self, key: dict, device=None) -> dict | None:
        """The value saved under ``key`` (tensors moved to ``device``), or None."""
        name = self._name(key)
        found = self._memory.get(name)
        if found is None and self.directory is not None and (self.directory / f"{name}.pt").is_file():
            try:
                obj = torch.load(self.directory / f"{name}.pt", map_location="cpu", weights_only=True)
                found = (obj["key"], obj["value"])
            except Exception:  # unreadable or foreign file: treated as absent, overwritten by the next put
                found = None
        if found is None or found[0] != key:
            return None
        self._memory[name] = found
        return _to(found[1], device)

    @contextlib.contextmanager
    def computing(self, key: dict):
        """Hold ``key``'s lock (``directory/<name>.lock``, an advisory ``flock``) while it is looked up
        and, on a miss, computed and put: a second process or worker sharing the folder that needs
        the same solve meanwhile waits here and then finds it, instead of computing it again (a
        sweep's ``--jobs`` workers running a ``sparse-gen`` cell beside its ``dcgan-reg`` cell). The
        system drops the lock when its holder ends or is killed. Without a directory: no lock."""
        if self.directory is None:
            yield
            return
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{self._name(key)}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def put(self, key: dict, value: dict) -> None:
        """Keep ``value`` (plain containers of tensors and numbers) under ``key``."""
        value = _to(value, "cpu")
        name = self._name(key)
        self._memory[name] = (key, value)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.directory / f"{name}.pt") as tmp:
                torch.save({"key": key, "value": value}, tmp)


def operator_fingerprint(physics, batch: int = 1, device="cpu") -> str | None:
    """Hash of a linear operator's action: its class, measurement count, noise level and A applied
    to fixed seeded probe images on ``device`` (so any operator, explicit matrix or not, gets one;
    ``batch`` probes for operators with one mask per image). None if A cannot be applied to them."""
    shape = tuple(getattr(physics, "img_shape", ()) or ())
    if len(shape) != 3:
        return None
    h = [type(physics).__name__, str(getattr(physics, "m", "")), str(getattr(physics, "noise_std", "")), str(shape)]
    if products_of(physics) == "onednn":
        h.append("onednn")  # (its products round differently from torch's default: GaussianCS)
    for b in dict.fromkeys((1, batch)):
        probe = torch.randn((b, *shape), generator=torch.Generator().manual_seed(12345)).to(device)
        try:
            with torch.no_grad():
                out = physics.A(probe)
        except Exception:  # an operator bound to another batch size: try the run's
            continue
        if torch.is_tensor(out):
            return hashlib.sha256("|".join(h + [fingerprint(out)]).encode()).hexdigest()[:32]
    return None

