"""The layout of a sweep folder, shared by the sweep runner and the plots (which only read files).

A recipe's cells, in a fixed order, and the file name of each: OUT/cells/<cell_name>.json / .npz.
"""

from __future__ import annotations

import itertools
import re


ORDERS = ("methods", "grid")


def cells(recipe: dict, order: str = "methods") -> list[dict]:
    """All cells in a fixed order. ``order`` "methods": methods outermost (in the recipe's order),
    then the grid; "grid": grid points outermost (in the recipe's order, e.g. m ascending), then the
    methods, so every method at the first grid points is done before any at the later ones."""
    keys = list(recipe["grid"])
    points = list(itertools.product(*(recipe["grid"][k] for k in keys)))
    if order == "methods":
        return [{"method": method, **dict(zip(keys, v))} for method in recipe["methods"] for v in points]
    if order == "grid":
        return [{"method": method, **dict(zip(keys, v))} for v in points for method in recipe["methods"]]
    raise ValueError(f"unknown cell order {order!r}: use {' or '.join(ORDERS)}")


def cell_name(cell: dict) -> str:
    """A cell's file-name stem: "method=dcgan__measurements=500" (other characters as "-")."""
    text = "__".join(f"{k}={v}" for k, v in cell.items())
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", text)
