"""Method A minus method B, image by image, at each m (mean and paired 95% interval).

    python scripts/paired_diff.py runs/sweeps/cs_paper dcgan dcgan-reg
    python scripts/paired_diff.py runs/sweeps/cs_noise dcgan lasso-dct --x noise_std

RESULTS is anything `invgan plot` reads (a sweep folder, results.json or results.csv). Positive
differences in mse mean B is better. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invgan import InvganError  # noqa: E402
from invgan.plots import load_results, paired_difference  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--x", default="m")
    ap.add_argument("--metric", default="mse")
    args = ap.parse_args(argv)
    try:
        rows = load_results(args.results)[0]
        diffs = paired_difference(rows, args.a, args.b, args.x, args.metric)
    except InvganError as exc:
        print(f"paired_diff: error: {exc}", file=sys.stderr)
        return 2
    print(f"| {args.x} | images | {args.metric}: {args.a} - {args.b} (mean +- paired 95% interval) "
          f"| {args.b} better on |")
    print("|---|---|---|---|")
    for d in diffs:
        print(f"| {d[args.x]:g} | {d['n']} | {d['mean']:.2g} +- {d['ci95']:.2g} | {d['b_better']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
