"""The one exception invgan raises for a caller's mistake."""


class InvganError(ValueError):
    """Bad input or settings: the message names the argument and says what to do.

    A ``ValueError``, so code that catches ``ValueError`` catches it; the CLI prints its message
    on one line and exits with code 2.
    """


def check_int(name: str, v, low: int = 1) -> int:
    """``v`` if it is an integer >= ``low``; else ``InvganError`` naming ``name``."""
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise InvganError(f"{name} must be an integer >= {low}, got {v!r}")
    return v


def check_number(name: str, v, low: float = 0, strict: bool = False):
    """``v`` if it is a finite number >= ``low`` (> ``low`` with ``strict``); else ``InvganError``."""
    import math

    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < low or (strict and v == low):
        raise InvganError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {v!r}")
    return v
