"""Figures from results: the papers' error curves and image grids (behind `invgan plot`).

``RESULTS`` is a sweep folder (its results.json), a results.json / metrics.json, or a results.csv.

- error against the number of measurements m (Bora et al., Fig. 1): mean reconstruction error
  per pixel over the images, 95% interval bars (1.96 std / sqrt(N)), log-x, one line per method;
- error against the noise std (log-x), when the noise varies instead;
- image grids (super-resolution, inpainting, or ``kind="grid"``): originals, then one row per
  cell and method, from the reconstructions a sweep keeps in cells/*.npz.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from invgan.errors import InvganError
from invgan.metrics import summarize

X_LABELS = {"m": "number of measurements m", "noise_std": "noise std per measurement"}
Y_LABELS = {"mse": "reconstruction error (per pixel)", "psnr": "PSNR (dB)", "ssim": "SSIM",
            "mse_hole": "error in the hole (per pixel)", "psnr_hole": "PSNR in the hole (dB)",
            "ssim_hole": "SSIM in the hole"}


def load_results(path) -> tuple[list[dict], dict, Path | None]:
    """(rows, meta, sweep folder or None) from any of the accepted RESULTS forms."""
    p = Path(path)
    folder = None
    if p.is_dir():
        folder = p
        p = p / "results.json"
        if not p.is_file():
            raise InvganError(f"{str(path)!r} holds no results.json (run `invgan sweep` there first)")
    if not p.is_file():
        raise InvganError(f"results {str(path)!r} do not exist")
    if p.suffix == ".csv":
        with open(p, newline="") as fh:
            rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(fh)]
        meta = {}
    else:
        try:
            meta = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvganError(f"{str(path)!r} is not a results JSON ({exc})") from None
        rows = meta.get("rows") if isinstance(meta, dict) else None
        if rows is None:
            raise InvganError(f"{str(path)!r} has no 'rows': give a sweep folder, results.json or results.csv")
        if folder is None and (p.parent / "cells").is_dir():
            folder = p.parent
    if not rows:
        raise InvganError(f"{str(path)!r} holds no result rows yet")
    return rows, meta, folder


def _number(text):
    for cast in (int, float):
        try:
            return cast(text)
        except (TypeError, ValueError):
            pass
    return text


SERIES_KEYS = ("m", "noise_std", "physics", "measurement", "input", "mask")  # measurement: results before 0.2


def curves(rows: list[dict], x: str, metric: str = "mse", methods=None) -> dict:
    """{label: (xs, means, ci95s, ns)} with x ascending, one series per method (and per value of
    any other setting that varies, e.g. the noise on an error-vs-m plot, so nothing is pooled)."""
    for r in rows:
        if metric not in r or x not in r:
            raise InvganError(f"the results have no column {metric if metric not in r else x!r}")
    others = [k for k in SERIES_KEYS if k != x and len({str(r.get(k)) for r in rows}) > 1]
    groups = defaultdict(list)
    for r in rows:
        if methods and r["method"] not in methods:
            continue
        label = r["method"] + "".join(f", {k}={r.get(k)}" for k in others)
        groups[label, float(r[x])].append(float(r[metric]))
    out = {}
    for label in dict.fromkeys(lab for lab, _ in groups):
        xs = sorted(v for (lab, v) in groups if lab == label)
        stats = [summarize(groups[(label, v)]) for v in xs]
        out[label] = (np.array(xs), np.array([s["mean"] for s in stats]),
                      np.array([s["ci95"] for s in stats]), np.array([s["n"] for s in stats]))
    if not out:
        raise InvganError(f"no rows for the methods {', '.join(methods)}")
    return out


def paired_difference(rows: list[dict], a: str, b: str, x: str = "m", metric: str = "mse") -> list[dict]:
    """Method ``a`` minus method ``b``, image by image, at every x both were run at.

    Both methods see the same images, so the 95% interval of the mean paired difference is much
    tighter than the two methods' own intervals: it tells whether b is better, not just whether
    the curves overlap. Returns [{x, n, mean, ci95, b_better, b_mean}] (b_better: images where b
    has the lower ``metric``; read the sign the other way for PSNR / SSIM; b_mean: b's mean over the
    paired images)."""
    values = defaultdict(dict)  # (x, method) -> {image id: value}
    for r in rows:
        if r["method"] in (a, b):
            values[float(r[x]), r["method"]][str(r["id"])] = float(r[metric])
    out = []
    for xv in sorted({xv for xv, _ in values}):
        va, vb = values.get((xv, a), {}), values.get((xv, b), {})
        ids = sorted(set(va) & set(vb))
        if not ids:
            continue
        d = np.array([va[i] - vb[i] for i in ids])
        stats = summarize(d)
        out.append({x: xv, "n": len(ids), "mean": stats["mean"], "ci95": stats["ci95"], "b_better": int((d > 0).sum()),
                    "b_mean": float(np.mean([vb[i] for i in ids]))})
    if not out:
        raise InvganError(f"no images with both {a!r} and {b!r} at the same {x}")
    return out


def against_best(rows: list[dict], method: str, baselines, x: str = "m", metric: str = "mse") -> list[dict]:
    """``method`` against the best of ``baselines`` (lowest mean ``metric``) at every x, image by image.

    At each x where ``method`` and at least one baseline were run, the best baseline is the one
    with the lowest mean over its images (every baseline is counted, so a baseline missing at
    that x is reported in ``missing``). Returns one dict per x: ``best`` (its name), ``best_mean``
    / ``best_ci95`` and ``mean`` / ``ci95`` (the two methods' own means and 95% intervals),
    ``diff`` / ``diff_ci95`` / ``n`` / ``better`` (``method`` minus best, paired by image id: the
    mean, its paired 95% interval, the images paired, those where ``method`` is lower), and
    ``verdict``: "below" (its mean is below the best's), "overlap" (not below, but the two 95%
    intervals overlap) or "worse"; ``at_least_as_good`` is True for the first two. Lower is
    better (an error metric). Issue 18's criterion for "at least as good as the best baseline".
    """
    baselines = list(baselines)
    if method in baselines:
        raise InvganError(f"{method!r} is both the method and a baseline")
    per = defaultdict(dict)  # (x, method) -> {image id: value}
    for r in rows:
        if r["method"] == method or r["method"] in baselines:
            if metric not in r or x not in r:
                raise InvganError(f"the results have no column {metric if metric not in r else x!r}")
            per[float(r[x]), r["method"]][str(r["id"])] = float(r[metric])
    out = []
    for xv in sorted({xv for xv, name in per if name == method}):
        mine = per[xv, method]
        present = [b for b in baselines if (xv, b) in per]
        if not present:
            continue
        means = {b: float(np.mean(list(per[xv, b].values()))) for b in present}
        best = min(present, key=means.get)
        ids = sorted(set(mine) & set(per[xv, best]))
        if not ids:
            continue
        d = np.array([mine[i] - per[xv, best][i] for i in ids])
        sm, sb, sd = summarize(list(mine.values())), summarize(list(per[xv, best].values())), summarize(d)
        if sm["mean"] < sb["mean"]:
            verdict = "below"
        elif sm["mean"] - sm["ci95"] <= sb["mean"] + sb["ci95"]:
            verdict = "overlap"
        else:
            verdict = "worse"
        out.append({x: xv, "best": best, "best_mean": sb["mean"], "best_ci95": sb["ci95"], "mean": sm["mean"],
                    "ci95": sm["ci95"], "diff": sd["mean"], "diff_ci95": sd["ci95"], "n": len(ids),
                    "better": int((d < 0).sum()), "verdict": verdict, "at_least_as_good": verdict != "worse",
                    "missing": [b for b in baselines if b not in present]})
    if not out:
        raise InvganError(f"no {x} at which {method!r} and one of {', '.join(baselines)} were both run")
    return out


def choose_axis(rows: list[dict]) -> str:
    """The x axis of a curve: "m" or "noise_std", whichever varies in ``rows``."""
    for x in ("m", "noise_std"):
        if len({r.get(x) for r in rows}) > 1:
            return x
    raise InvganError("neither m nor the noise varies in these results: nothing to plot as a curve "
                      "(use --kind grid for images)")


METHOD_LABELS = {"dcgan": "DCGAN", "dcgan-reg": "DCGAN+Reg", "lasso-dct": "Lasso (DCT)",
                 "lasso-wavelet": "Lasso (Wavelet)", "yeh": "Yeh et al.", "yeh+poisson": "Yeh + Poisson",
                 "yeh+none": "Yeh, plain composite", "tv": "TV", "sparse-gen": "Sparse-Gen (Wavelet)",
                 "sparse-gen-dct": "Sparse-Gen (DCT)"}


def tick_labels_shown(xs, min_ratio: float = 1.8) -> set:
    """The ticks to label on a log axis, left to right, skipping any closer than ``min_ratio``
    to the last labelled one (5000, 7500, 10000 would overlap) but always labelling the last."""
    shown, last = set(), None
    for v in xs:
        if last is None or v <= 0 or last <= 0 or v / last >= min_ratio:
            shown.add(v)
            last = v
    if xs and xs[-1] not in shown:
        shown.discard(last)
        shown.add(xs[-1])
    return shown


def plot_curves(rows, out, x: str | None = None, metric: str = "mse", methods=None, logy: bool = False,
                title: str | None = None) -> dict:
    """Error-vs-x curves (mean and 95% interval per method) into the figure file ``out``; returns the curves."""
    from matplotlib.figure import Figure

    from invgan.fileio import save_figure

    x = x or choose_axis(rows)
    data = curves(rows, x, metric, methods)
    fig = Figure(figsize=(5.2, 3.6))  # no pyplot: the caller's matplotlib backend is left alone
    ax = fig.subplots()
    for method, (xs, mean, ci, n) in data.items():
        name, _, rest = method.partition(",")
        label = METHOD_LABELS.get(name, name) + (f",{rest}" if rest else "")
        ax.errorbar(xs, mean, yerr=ci, marker="o", ms=3.5, capsize=2.5, lw=1.3, label=label)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    xs_all = sorted({float(v) for xs, *_ in data.values() for v in xs})
    ax.set_xticks(xs_all)  # a tick at every measured value, labelled in plain numbers
    shown = tick_labels_shown(xs_all)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v in shown else ""))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(Y_LABELS.get(metric, metric))
    n_img = max(int(v[3].max()) for v in data.values())
    ax.set_title(title or f"{n_img} images, mean and 95% interval", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, dpi=120)
    return data


def curves_table(data: dict, x: str, metric: str = "mse", interval: bool = True, title: str | None = None) -> str:
    """The plotted numbers as a Markdown table: one row per series, one column per x value,
    "mean +- 95% interval" (``interval`` False: the mean only); "-" where a series has no value
    (a cell not run yet). ``title``: the first header cell (default "METRIC, mean +- 95% interval")."""
    xs_all = sorted({float(v) for xs, *_ in data.values() for v in xs})
    title = title or f"{metric}, mean +- 95% interval"
    head = f"| {title}, at {x} = | " + " | ".join(f"{v:g}" for v in xs_all) + " |"
    lines = [head, "|---" * (len(xs_all) + 1) + "|"]
    for label, (xs, mean, ci, _) in data.items():
        name, _, rest = label.partition(",")
        fmt = (lambda mu, c: f"{mu:.3g} +- {c:.2g}") if interval else (lambda mu, c: f"{mu:.2g}")
        found = {float(v): fmt(mu, c) for v, mu, c in zip(xs, mean, ci)}
        cells = [found.get(v, "-") for v in xs_all]
        lines.append(f"| {METHOD_LABELS.get(name, name)}{',' + rest if rest else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_rows(folder: Path, summaries=()) -> list[tuple[str, np.ndarray]]:
    """(label, uint8 images (N, H, W, 3)) for an image grid of a sweep folder: the originals once,
    then per grid point its input (the masked images, for inpainting) once and each method's
    reconstructions, labelled with the method's mean PSNR (in the hole, for inpainting)."""
    from invgan.fileio import npz_key
    from invgan.sweepfiles import cell_name, cells

    if folder is None or not (folder / "cells").is_dir():
        raise InvganError("image grids need a sweep folder (with cells/*.npz)")
    recipe = json.loads((folder / "sweep.json").read_text())["recipe"]
    stats = {(s["cell"], s["method"]): s for s in summaries}
    points = defaultdict(list)  # grid point -> its finished cells, methods in the recipe's order
    for cell in cells(recipe):
        if (folder / "cells" / f"{cell_name(cell)}.npz").is_file():
            points[tuple((k, v) for k, v in cell.items() if k != "method")].append(cell_name(cell))
    rows, original = [], None
    for point, names in points.items():
        where = ", ".join(str(v) for _, v in point)
        shown_input = False
        for name in names:
            arrs = np.load(folder / "cells" / f"{name}.npz")
            methods = {npz_key(m): m for s_cell, m in stats if s_cell == name}
            for key in arrs.files:
                if key == "original":
                    original = arrs[key] if original is None else original
                elif key == "masked":
                    if not shown_input:
                        rows.append((f"input, {where}".rstrip(", "), arrs[key]))
                        shown_input = True
                else:
                    method = methods.get(key, key)
                    label = f"{METHOD_LABELS.get(method, method)}, {where}".rstrip(", ")
                    s = stats.get((name, method), {})
                    metric = "psnr_hole" if "psnr_hole" in s else "psnr"
                    if metric in s:
                        label += f"\n{s[metric]['mean']:.1f} dB" + (" in the hole" if metric == "psnr_hole" else "")
                    rows.append((label, arrs[key]))
    if original is None:
        raise InvganError(f"{str(folder)!r} has no finished cells to show")
    return [("original", original)] + rows


def summary_table(summaries) -> str:
    """Markdown: one row per grid point x method, mean +- 95% interval of each metric."""
    metrics = [k for k in ("psnr_hole", "ssim_hole", "psnr", "ssim", "mse") if any(k in s for s in summaries)]
    skip = {"cell", "method", "seconds", "seconds_per_image", *Y_LABELS}
    keys = list(dict.fromkeys(k for s in summaries for k in s if k not in skip))
    lines = ["| " + " | ".join(keys + ["method"] + metrics) + " |", "|" + "---|" * (len(keys) + 1 + len(metrics))]
    by_point = defaultdict(list)  # grid point -> its summaries, methods in the recipe's order
    for s in summaries:
        by_point[tuple(str(s.get(k, "")) for k in keys)].append(s)
    for point, members in by_point.items():
        for s in members:
            cells_ = [*point, METHOD_LABELS.get(s["method"], s["method"])]
            cells_ += [f"{s[k]['mean']:.4g} +- {s[k]['ci95']:.2g}" if k in s else "-" for k in metrics]
            lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def plot_grid(folder: Path, out, ncols: int = 6, summaries=()) -> None:
    """Draw ``grid_rows`` (from a sweep's cells/*.npz) into one figure."""
    import torch

    from invgan.fileio import image_grid_figure, save_figure

    rows = [(label, torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1)
            for label, a in grid_rows(folder, summaries)]
    save_figure(image_grid_figure(rows, ncols), out, dpi=100)


def seconds_table(rows: list[dict], x: str, methods=None) -> str | None:
    """Seconds per image (a cell's time over its images, so the mean over a cell's rows) as a
    Markdown table like ``curves_table``'s; None if the rows carry no "seconds" column."""
    if not rows or any("seconds" not in r for r in rows):
        return None
    return curves_table(curves(rows, x, "seconds", methods), x, interval=False, title="seconds per image")


def plot(results, out, kind: str = "auto", x: str | None = None, metric: str = "mse", methods=None,
         logy: bool = False, ncols: int = 6) -> str:
    """Make the figure; returns what was drawn ("curve m", "curve noise_std" or "grid")."""
    from matplotlib.figure import Figure

    from invgan.fileio import check_output_file

    check_output_file(out, sorted(Figure().canvas.get_supported_filetypes()))
    rows, meta, folder = load_results(results)
    if kind == "auto":
        recipe = meta.get("recipe", {})
        image_task = recipe.get("experiment") == "inpaint" or recipe.get("settings", {}).get("physics", recipe.get("settings", {}).get("measurement")) == "superres"
        kind = "grid" if image_task else "curve"
    if kind == "grid":
        summaries = meta.get("summaries", [])
        plot_grid(folder, out, ncols, summaries)
        if summaries:
            from invgan.fileio import write_text

            write_text(Path(out).with_suffix(".md"), summary_table(summaries) + "\n")
        return "grid"
    if kind != "curve":
        raise InvganError(f"unknown plot kind {kind!r}: use auto, curve or grid")
    x = x or choose_axis(rows)
    data = plot_curves(rows, out, x, metric, methods, logy)
    from invgan.fileio import write_text

    secs = seconds_table(rows, x, methods)
    write_text(Path(out).with_suffix(".md"), curves_table(data, x, metric) + "\n" + (f"\n{secs}\n" if secs else ""))
    return f"curve {x}"
