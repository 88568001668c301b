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


@pytest.mark.parametrize("name", sorted(RUNS))
def test_cli_metrics_are_unchanged(name, tmp_path):
    rows = run_pinned(name, tmp_path)
    old = PINNED["rows"][name]
    key = lambda r: (Path(r["id"]).name, r["method"])  # folder images are named by their (temporary) path
    assert [key(r) for r in rows] == [key(r) for r in old]
    for new, ref in zip(rows, old):
        for k in ("mse", "psnr", "ssim"):
            assert new[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), (name, new["id"], new["method"], k)
