"""Refactors must not move results: the CLI's per-image metrics on small fixed settings equal those
pinned on a known-good commit (tests/data/pinned_metrics.json, made by scripts/pin_metrics.py)."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from pin_metrics import RUNS, run_pinned  # noqa: E402

PINNED = json.loads((REPO / "tests" / "data" / "pinned_metrics.json").read_text())


def _mismatches(rows, old, name):
    key = lambda r: (Path(r["id"]).name, r["method"])  # folder images are named by their (temporary) path
    assert [key(r) for r in rows] == [key(r) for r in old]
    return [(name, new["id"], new["method"], k, new[k], ref[k]) for new, ref in zip(rows, old)
            for k in ("mse", "psnr", "ssim") if new[k] != pytest.approx(ref[k], rel=1e-5, abs=1e-7)]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_cli_metrics_are_unchanged(name, tmp_path):
    """Every row equals the pinned set, or, on a CPU whose float rounding moves a CSGM row, the whole
    set pinned from a known-good commit on such a CPU (``machine_variants``: each names its machine)."""
    rows = run_pinned(name, tmp_path)
    bad = _mismatches(rows, PINNED["rows"][name], name)
    for variant in PINNED.get("machine_variants", []):
        if bad and name in variant["rows"] and not _mismatches(rows, variant["rows"][name], name):
            bad = []
    assert not bad, bad
