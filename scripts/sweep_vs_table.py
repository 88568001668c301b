"""A sweep's cells against a published table of means and 95% intervals (what ``invgan plot`` writes).

Issue 15 asks that a faster sweep keep every result inside the README's table's 95% intervals. This
prints, cell by cell, the new mean, the table's mean +- interval, whether the new mean lies inside,
the cell's recorded seconds, its Lasso solver and largest certified relative gap, then each method's
and all cells' seconds and the CPUs the cells recorded. Exit status 1 if a cell lies outside its
interval or a Lasso cell is not certified at its tolerance; 2 on bad input.

    python scripts/sweep_vs_table.py runs/sweeps/cs_paper --table docs/cs_paper.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invgan.plots import METHOD_LABELS  # noqa: E402
from invgan.runtime import cpu_label  # noqa: E402


def read_table(path: Path, metric: str = "mse") -> dict:
    """{(method, m): (mean, interval)} from a Markdown table whose first row holds the m's."""
    methods = {label: name for name, label in METHOD_LABELS.items()}
    lines = [s for s in path.read_text().splitlines() if s.startswith("|")]
    if len(lines) < 3 or metric not in lines[0]:
        raise ValueError(f"{path}: no {metric} table (a header row of m's, then one row per method)")
    ms = [int(v) for v in lines[0].split("|")[2:-1]]
    table = {}
    for line in lines[2:]:
        label, *cells = (p.strip() for p in line.split("|")[1:-1])
        for m, cell in zip(ms, cells):
            mean, _, ci = cell.partition("+-")
            table[(methods.get(label, label), m)] = (float(mean), float(ci or 0))
    return table


def compare(folder: Path, table: dict, metric: str = "mse") -> tuple[list[dict], dict]:
    rows, cpus = [], set()
    for f in sorted((folder / "cells").glob("*.json")):
        cell = json.loads(f.read_text())
        method, m = cell["cell"]["method"], cell["cell"].get("measurements", cell["cell"].get("m"))
        mean = cell["summary"][method][metric]["mean"]
        ref = table.get((method, m))
        settings = cell["config"].get("method_settings", {}).get(method, {})
        gap, tol = settings.get("max_rel_gap"), settings.get("tol")
        rows.append({"method": method, "m": m, "mean": mean, "table": ref, "seconds": cell["seconds"],
                     "inside": None if ref is None else abs(mean - ref[0]) <= ref[1],
                     "solver": settings.get("solver"), "gap": gap,
                     "certified": None if gap is None else gap <= tol})
        proc = cell.get("process", {})
        if "simd" in proc:
            cpus.add(cpu_label(proc))
    rows.sort(key=lambda r: (r["method"], r["m"]))
    return rows, {"cpus": sorted(cpus)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", type=Path, help="a sweep folder (with cells/)")
    ap.add_argument("--table", type=Path, default=Path("docs/cs_paper.md"))
    ap.add_argument("--metric", default="mse")
    a = ap.parse_args(argv)
    if not (a.sweep / "cells").is_dir():
        print(f"sweep_vs_table: {a.sweep} has no cells/ folder: give a sweep's --out folder", file=sys.stderr)
        return 2
    try:
        table = read_table(a.table, a.metric)
    except (OSError, ValueError) as e:
        print(f"sweep_vs_table: {e}", file=sys.stderr)
        return 2
    rows, facts = compare(a.sweep, table, a.metric)
    print(f"| method | m | {a.metric} | table | inside | seconds | solver | largest gap |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {}
    for r in rows:
        ref = "-" if r["table"] is None else f"{r['table'][0]:.4g} +- {r['table'][1]:.2g}"
        inside = "-" if r["inside"] is None else "yes" if r["inside"] else "**no**"
        gap = "" if r["gap"] is None else f"{r['gap']:.2e}" + ("" if r["certified"] else " (**not certified**)")
        print(f"| {r['method']} | {r['m']} | {r['mean']:.5f} | {ref} | {inside} | {r['seconds']:.1f} | "
              f"{r['solver'] or ''} | {gap} |")
        totals[r["method"]] = totals.get(r["method"], 0.0) + r["seconds"]
    print()
    print("cell time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in totals.items())
          + f"; all {len(rows)} cells {sum(totals.values()) / 60:.1f} min")
    print("CPUs: " + (", ".join(facts["cpus"]) or "not recorded (cells from before invgan.runtime.cpu_facts)"))
    bad = [r for r in rows if r["inside"] is False or r["certified"] is False]
    print(f"{len(bad)} of {len(rows)} cells outside their interval or not certified")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
