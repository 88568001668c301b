"""Where computations run."""

from __future__ import annotations

import torch

from invgan.errors import InvganError


def pick_device(name: str | None = None) -> torch.device:
    """``name`` "cpu", "cuda" or "cuda:N"; None or "auto": CUDA when available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise InvganError(f"device {name!r} asked for, but CUDA is not available here")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise InvganError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
