"""Method A minus method B, image by image, at each m (mean and paired 95% interval).

    python scripts/paired_diff.py runs/sweeps/cs_paper dcgan dcgan-reg
    python scripts/paired_diff.py runs/sweeps/cs_noise dcgan lasso-dct --x noise_std
    python scripts/paired_diff.py runs/sweeps/cs_beyond sparse-gen --best dcgan,dcgan-reg,lasso-dct,lasso-wavelet

RESULTS is anything `invgan plot` reads (a sweep folder, results.json or results.csv). Positive
differences in mse mean B is better. Prints a Markdown table.

``--against RESULTS_B``: method A of RESULTS minus method B (default: A) of RESULTS_B, image by
image: the same method under two budgets or versions, e.g. the default budget against the paper's
(with B's mean and the upper 95% end as a share of it: the bar for a default is at most +2%):

    python scripts/paired_diff.py runs/sr_auto/results.csv dcgan --against runs/sr_paper/results.csv

``--best BASELINES``: A against the best of BASELINES at each m (the lowest mean; it may differ
from m to m), with both methods' means and 95% intervals, the paired difference, the seconds per
image of each, and the verdict of ``invgan.plots.against_best`` ("below": A's mean is lower;
"overlap": the two intervals overlap; "worse").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invgan import InvganError  # noqa: E402
from invgan.plots import METHOD_LABELS, against_best, curves, load_results, paired_difference  # noqa: E402


def seconds_per_image(rows, x: str) -> dict:
    """{(x, method): mean seconds per image} (a cell's time over its images; ``curves``' means)."""
    if not rows or any("seconds" not in r for r in rows):
        return {}
    return {(float(v), label): float(mu) for label, (xs, means, _, _) in curves(rows, x, "seconds").items()
            for v, mu in zip(xs, means)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("a")
    ap.add_argument("b", nargs="?")
    ap.add_argument("--best", help="comma list of baselines: compare A with the best of them at each x")
    ap.add_argument("--against", help="a second results folder or file: A here minus B (default A) there")
    ap.add_argument("--x", default="m")
    ap.add_argument("--metric", default="mse")
    args = ap.parse_args(argv)
    if args.against is None and (args.b is None) == (args.best is None):
        print("paired_diff: error: give either method B, --best BASELINES or --against RESULTS_B", file=sys.stderr)
        return 2
    if args.against is not None and args.best:
        print("paired_diff: error: --against compares one method in two results; leave out --best", file=sys.stderr)
        return 2
    try:
        rows = load_results(args.results)[0]
        if args.against is not None:
            other = args.b or args.a
            a_rows = [{**r, "method": "A"} for r in rows if r["method"] == args.a]
            b_rows = [{**r, "method": "B"} for r in load_results(args.against)[0] if r["method"] == other]
            diffs = paired_difference(a_rows + b_rows, "A", "B", args.x, args.metric)
        elif args.best:
            table = against_best(rows, args.a, args.best.split(","), args.x, args.metric)
        else:
            diffs = paired_difference(rows, args.a, args.b, args.x, args.metric)
    except InvganError as exc:
        print(f"paired_diff: error: {exc}", file=sys.stderr)
        return 2
    if args.best:
        secs = seconds_per_image(rows, args.x)
        name = METHOD_LABELS.get(args.a, args.a)
        print(f"| {args.x} | best baseline | its {args.metric} | {name} | {name} - best, paired | "
              f"{name} lower on | verdict | s/image ({name} / best) |")
        print("|---|---|---|---|---|---|---|---|")
        for d in table:
            xv = d[args.x]
            sa, sb = secs.get((xv, args.a)), secs.get((xv, d["best"]))
            s = f"{sa:.2g} / {sb:.2g}" if sa is not None and sb is not None else "-"
            miss = f" (not run: {', '.join(d['missing'])})" if d["missing"] else ""
            print(f"| {xv:g} | {METHOD_LABELS.get(d['best'], d['best'])}{miss} | {d['best_mean']:.3g} +- "
                  f"{d['best_ci95']:.2g} | {d['mean']:.3g} +- {d['ci95']:.2g} | {d['diff']:+.2g} +- "
                  f"{d['diff_ci95']:.2g} | {d['better']} of {d['n']} | {d['verdict']} | {s} |")
        return 0
    if args.against is not None:
        b = f"{args.b or args.a} in {args.against}"
        print(f"| {args.x} | images | {b} | {args.metric}: {args.a} in {args.results} - {b} (paired 95% interval) "
              f"| upper 95% end, share of B | B better on |")
        print("|---|---|---|---|---|---|")
        for d in diffs:
            print(f"| {d[args.x]:g} | {d['n']} | {d['b_mean']:.5g} | {d['mean']:+.2g} +- {d['ci95']:.2g} | "
                  f"{(d['mean'] + d['ci95']) / d['b_mean']:+.2%} | {d['b_better']} |")
        return 0
    print(f"| {args.x} | images | {args.metric}: {args.a} - {args.b} (mean +- paired 95% interval) "
          f"| {args.b} better on |")
    print("|---|---|---|---|")
    for d in diffs:
        print(f"| {d[args.x]:g} | {d['n']} | {d['mean']:.2g} +- {d['ci95']:.2g} | {d['b_better']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
