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

import hashlib
import time
from pathlib import Path

import torch

from invgan.fileio import atomic_path


def fingerprint(*tensors: torch.Tensor) -> str:
    """Hash of the tensors' shapes, dtypes and values (to tell one problem from another)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:32]


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
        def cpu(v):
            if isinstance(v, torch.Tensor):
                return v.detach().cpu().clone()
            if isinstance(v, dict):
                return {k: cpu(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [cpu(x) for x in v]
            return v

        with atomic_path(self.path) as tmp:
            seconds = self.carried + time.monotonic() - self._t0
            torch.save({"key": key, "seconds": seconds, "state": cpu(state)}, tmp)
        self._last = time.monotonic()

    def remove(self) -> None:
        """Delete the state file (the solve finished)."""
        self.path.unlink(missing_ok=True)
