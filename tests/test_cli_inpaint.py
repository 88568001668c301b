import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_user_error, run_cli


def test_inpaint_end_to_end_shipped_model_beats_baselines_on_center(celeba_root, tmp_path):
    """Shipped G and D on 4 real val faces, centre mask, a shortened run (200 of 1500 iterations)."""
    out = tmp_path / "inp"
    p = run_cli("inpaint", "--mask", "center", "--images", celeba_root, "--num-images", 4, "--iters", 200,
                "--blend", "both", "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    assert "center 32x32" in p.stdout and "yeh+poisson" in p.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["lam"] == 0.003 and m["config"]["window"] == 7 and m["config"]["lr"] == 0.01
    assert m["config"]["perceptual"] == "paper" and abs(m["config"]["missing_fraction_mean"] - 0.25) < 1e-9
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4 * 4 and {r["method"] for r in rows} == {"yeh+poisson", "yeh+none", "biharmonic", "tv"}
    s = m["summary"]
    for name in s:
        assert s[name]["psnr_hole"]["n"] == 4 and s[name]["psnr"]["mean"] > s[name]["psnr_hole"]["mean"]
    assert s["yeh+poisson"]["psnr_hole"]["mean"] > s["biharmonic"]["psnr_hole"]["mean"]
    assert s["yeh+poisson"]["psnr_hole"]["mean"] > s["tv"]["psnr_hole"]["mean"]
    masks = np.load(out / "masks.npy")
    assert masks.shape == (4, 64, 64) and masks.dtype == np.uint8 and masks.mean() == 0.75
    imgs = np.load(out / "images.npz")
    known = masks.astype(bool)
    for key in ("yeh_poisson", "yeh_none", "biharmonic", "tv"):
        assert np.array_equal(imgs[key][known], imgs["original"][known]), key  # known pixels kept
    assert (out / "grid.png").stat().st_size > 10_000


def test_inpaint_discriminator_file_is_used(tmp_path):
    """Shipped G with the shipped D, then with an untrained D from a file: Yeh's result changes."""
    from invgan.checkpoint import load_models, save_checkpoint
    from invgan.models import Discriminator

    cfg, _, _, _ = load_models(None)
    torch.manual_seed(123)
    save_checkpoint(tmp_path / "d2.pt", cfg, None, Discriminator(cfg))
    results = {}
    for name, extra in [("shipped", []), ("other", ["--discriminator", tmp_path / "d2.pt"])]:
        out = tmp_path / name
        p = run_cli("inpaint", *extra, "--mask", "random", "--num-images", 2, "--iters", 10, "--lam", 1,
                    "--methods", "yeh,biharmonic", "--out", out, "--quiet", env={"INVGAN_CELEBA": str(tmp_path / "none")})
        assert p.returncode == 0, p.stderr
        results[name] = json.loads((out / "metrics.json").read_text())["summary"]
    a, b = results["shipped"]["yeh+poisson"]["mse"]["mean"], results["other"]["yeh+poisson"]["mse"]["mean"]
    assert abs(a - b) > 1e-5 * a, (a, b)
    assert results["shipped"]["biharmonic"]["mse"] == results["other"]["biharmonic"]["mse"]
    assert_user_error(run_cli("inpaint", "--discriminator", tmp_path / "missing.pt", "--num-images", 1,
                              "--out", tmp_path / "x", "--quiet"), "does not exist")


def _mask_png(path, arr):
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("args,needle", [
    (["--mask", "file"], "needs a mask file"),
    (["--mask", "random", "--mask-file", "SMALL"], "goes with --mask file"),
    (["--mask-file", "SMALL"], "the images are 64x64"),
    (["--mask-file", "BLACK"], "no known pixels"),
    (["--mask-file", "/nonexistent.png"], "does not exist"),
    (["--mask", "random", "--fraction", "1.5"], "strictly between 0 and 1"),
    (["--mask", "blob", "--fraction", "0.1"], "at least a quarter"),
    (["--mask", "square"], "invalid choice"),
    (["--methods", "yeh,magic"], "unknown method 'magic'"),
    (["--window", "4"], "must be odd"),
    (["--budget", "fast"], "invalid choice"),
    (["--hole-size", "64"], "between 1 and 63"),
    (["--images", "/nonexistent/folder"], "does not exist"),
])
def test_inpaint_user_errors(args, needle, tmp_path):
    files = {"SMALL": _mask_png(tmp_path / "small.png", np.full((32, 32), 255)),
             "BLACK": _mask_png(tmp_path / "black.png", np.zeros((64, 64)))}
    args = [str(files.get(a, a)) for a in args]
    if "--methods" not in args:
        args += ["--methods", "biharmonic"]  # fast: the error comes before any method runs
    assert_user_error(run_cli("inpaint", *args, "--iters", 1, "--num-images", 1, "--out", tmp_path / "o",
                              "--quiet"), needle)


def test_inpaint_lbfgs_budget_records_what_it_ran(celeba_root, tmp_path):
    """--budget lbfgs: Yeh runs per-latent L-BFGS with the budget's first step and pairs; --iters
    still sets the passes; the config and the method's settings say so."""
    out = tmp_path / "inp"
    p = run_cli("inpaint", "--images", celeba_root, "--num-images", 2, "--methods", "yeh", "--budget", "lbfgs",
                "--iters", 5, "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["budget"] == "lbfgs" and m["config"]["iters"] == 5 and m["config"]["lr"] == 0.1
    s = m["config"]["method_settings"]["yeh"]
    assert s["optimizer"] == "lbfgs" and s["history"] == 60 and s["iters"] == 5 and s["budget"] == "lbfgs"


def test_inpaint_sweep_recipe_rejects_a_cs_only_budget(tmp_path):
    from invgan import InvganError
    from invgan.sweep import read_sweep_recipe

    r = tmp_path / "r.toml"
    r.write_text('[sweep]\nexperiment = "inpaint"\nmethods = ["biharmonic"]\n[settings]\nbudget = "fast"\n'
                 '[grid]\nmask = ["center"]\n')
    with pytest.raises(InvganError, match="unknown budget 'fast' for inpainting"):
        read_sweep_recipe(r)
