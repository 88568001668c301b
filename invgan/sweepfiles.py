"""The layout of a sweep folder, shared by the sweep runner and the plots (which only read files).

A recipe's cells, in a fixed order, and the file name of each: OUT/cells/<cell_name>.json / .npz.
"""

from __future__ import annotations

import itertools
import re


def cells(recipe: dict) -> list[dict]:
    """All cells in a fixed order: methods outermost (in the recipe's order), then the grid."""
    keys = list(recipe["grid"])
    out = []
    for method in recipe["methods"]:
        for values in itertools.product(*(recipe["grid"][k] for k in keys)):
            out.append({"method": method, **dict(zip(keys, values))})
    return out


def cell_name(cell: dict) -> str:
    """A cell's file-name stem: "method=dcgan__measurements=500" (other characters as "-")."""
    text = "__".join(f"{k}={v}" for k, v in cell.items())
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", text)
