import csv
import json

import numpy as np
import pytest

from invgan.fileio import npz_key

from conftest import assert_user_error, run_cli, run_main


def test_help_lists_subcommands():
    p = run_cli("--help")
    assert p.returncode == 0
    for cmd in ("data", "train", "sample", "cs", "inpaint", "sweep", "plot"):
        assert cmd in p.stdout


def test_cs_end_to_end_on_shared_val_images(celeba_root, tmp_path):
    out = tmp_path / "cs"
    p = run_cli("cs", "--measurements", 100, "--num-images", 3, "--iters", 30,
                "--methods", "dcgan,dcgan-reg,lasso-dct,lasso-wavelet", "--out", out, "--quiet",
                "--images", celeba_root)
    assert p.returncode == 0, p.stderr
    assert "lasso-wavelet" in p.stdout and "CelebA val" in p.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["m"] == 100 and metrics["config"]["noise_std"] == 0.01
    assert metrics["config"]["method_settings"]["dcgan-reg"]["restarts"] == 10  # auto below m = 500
    assert metrics["config"]["method_settings"]["dcgan-reg"]["z_reg"] == 0.001
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 12 and len(metrics["rows"]) == 12
    ids = {r["id"] for r in rows}
    assert len(ids) == 3 and all(int(i[:6]) >= 162771 for i in ids)  # val ids
    for method, s in metrics["summary"].items():
        assert 0 < s["mse"]["mean"] < 1 and s["mse"]["ci95"] >= 0 and s["mse"]["n"] == 3
        assert s["psnr"]["mean"] > 5
    assert (out / "grid.png").stat().st_size > 10_000
    arrays = np.load(out / "images.npz")  # uint8 reconstructions; their MSE is the reported one, up to rounding
    assert list(arrays["ids"]) == [r["id"] for r in metrics["rows"][:3]]
    original = arrays["original"].astype(np.float64) / 127.5 - 1
    assert arrays["original"].shape == (3, 64, 64, 3) and arrays["original"].dtype == np.uint8
    for method in ("dcgan", "dcgan-reg", "lasso-dct", "lasso-wavelet"):
        mse = ((arrays[npz_key(method)] / 127.5 - 1 - original) ** 2).mean(axis=(1, 2, 3))
        reported = [r["mse"] for r in metrics["rows"] if r["method"] == method]
        np.testing.assert_allclose(mse, reported, rtol=0.01)  # piecewise-constant (Haar) images round coarsely


def test_cs_superres_and_gen_span_with_given_generator(tiny_ckpt, tmp_path):
    p = run_cli("cs", "--physics", "superres", "--input", "gen-span", "--generator", tiny_ckpt,
                "--num-images", 2, "--iters", 5, "--methods", "dcgan,lasso-dct", "--out", tmp_path, "--quiet")
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["m"] == 3 * 16 * 16 and m["rows"][0]["id"] == "gen-0"


def test_cs_demo_set_without_celeba(tmp_path):
    p = run_cli("cs", "--num-images", 2, "--iters", 3, "--methods", "dcgan", "--out", tmp_path, "--quiet",
                env={"INVGAN_CELEBA": str(tmp_path / "no-celeba-here")})
    assert p.returncode == 0, p.stderr
    assert "demo set" in p.stdout
    ids = [r["id"] for r in json.loads((tmp_path / "metrics.json").read_text())["rows"]]
    assert ids == ["astronaut", "sample-0"]


@pytest.mark.parametrize("args,needle", [
    (["--measurements", "0"], "must be >= 1"),
    (["--measurements", "20000"], "between 1 and 12288"),
    (["--methods", "dcgan,magic"], "unknown method 'magic'"),
    (["--images", "/nonexistent/folder"], "does not exist"),
    (["--num-images", "0"], "must be >= 1"),
    (["--noise-std", "-1"], "a finite number >= 0"),
    (["--noise-std", "inf"], "a finite number >= 0"),
    (["--lr", "nan"], "a finite number > 0"),
    (["--lr", "-1"], "a finite number > 0"),
    (["--z-clip", "-1"], "a finite number > 0"),
    (["--lasso-tol", "-1"], "a finite number > 0"),
    (["--physics", "blur"], "unknown physics 'blur'"),
    (["--methods", "yeh"], "unknown method 'yeh' for cs"),
])
def test_cs_user_errors(args, needle, tmp_path):
    assert_user_error(run_main("cs", *args, "--iters", 1, "--out", tmp_path, "--quiet"), needle)


def test_cs_bad_generator(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"garbage")
    assert_user_error(run_main("cs", "--generator", tmp_path / "g.pt", "--out", tmp_path, "--quiet"),
                      "not a readable invgan checkpoint")
    assert_user_error(run_main("cs", "--generator", tmp_path / "none.pt", "--out", tmp_path, "--quiet"),
                      "does not exist")


def test_cs_budget_is_recorded_with_the_work_done(tiny32_ckpt, tmp_path):
    from invgan.csgm import BUDGETS, prune_schedule_work

    for budget in ("paper", "fast", "lbfgs"):
        out = tmp_path / budget
        p = run_main("cs", "--input", "gen-span", "--generator", tiny32_ckpt, "--num-images", 1, "-m", 50,
                     "--iters", 360, "--methods", "dcgan-reg", "--budget", budget, "--out", out, "--quiet")
        assert p.returncode == 0, p.stderr
        s = json.loads((out / "metrics.json").read_text())["config"]["method_settings"]["dcgan-reg"]
        assert s["budget"] == budget and s["prune"] == [list(v) for v in BUDGETS[budget]["dcgan-reg"]]
        assert s["latent_steps_per_image"] == prune_schedule_work(10, 360, BUDGETS[budget]["dcgan-reg"])
        assert s["optimizer"] == ("lbfgs" if budget == "lbfgs" else "adam")
    assert prune_schedule_work(10, 360, BUDGETS["fast"]["dcgan-reg"]) < 0.8 * 10 * 360
    # without --iters, the lbfgs budget runs its own settings: 150 generator passes (0.3 of the
    # paper's 500) with 60 curvature pairs
    from invgan.csgm import BUDGET_SETTINGS

    b = BUDGET_SETTINGS["lbfgs"]
    assert b["iters"] == 150 and b["history"] == 60
    out = tmp_path / "lbfgs-default"
    p = run_main("cs", "--input", "gen-span", "--generator", tiny32_ckpt, "--num-images", 1, "-m", 50,
                 "--methods", "dcgan", "--budget", "lbfgs", "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr
    s = json.loads((out / "metrics.json").read_text())["config"]["method_settings"]["dcgan"]
    assert s["iters"] == 150 and s["latent_steps_per_image"] == 2 * 150
    assert s["history"] == 60 and s["lr"] == 0.1


def test_cs_auto_budget_runs_lbfgs_only_on_the_operators_it_was_measured_on(tiny32_ckpt, tmp_path):
    """auto's L-BFGS settings hold for Gaussian measurements, super-resolution and denoising (both
    methods) and the centre-hole inpainting operator (DCGAN only: DCGAN+Reg missed the bar there);
    any other operator (test_api: a user's) runs the paper's Adam budget."""
    want = {"superres": ("lbfgs", "lbfgs"), "inpaint": ("lbfgs", "adam"), "identity": ("lbfgs", "lbfgs")}
    for physics, (dcgan, reg) in want.items():
        out = tmp_path / physics
        extra = ["--factor", 2] if physics == "superres" else []  # m = 768 at 32x32 RGB (factor 4: 192)
        r = run_main("cs", "--input", "gen-span", "--generator", tiny32_ckpt, "--num-images", 1, "--physics", physics,
                     *extra, "--iters", 2, "--methods", "dcgan,dcgan-reg", "--out", out, "--quiet")
        assert r.returncode == 0, r.stderr
        cfg = json.loads((out / "metrics.json").read_text())["config"]
        s = cfg["method_settings"]
        assert cfg["m"] >= 500, cfg["m"]  # all three are above auto's threshold: the operator decides
        assert (s["dcgan"]["optimizer"], s["dcgan-reg"]["optimizer"]) == (dcgan, reg), physics
        assert s["dcgan-reg"]["restarts"] == (8 if reg == "lbfgs" else 10)


def test_cs_default_budget_is_auto_per_method(tiny32_ckpt, tmp_path):
    """The default budget ("auto") runs the paper's Adam budget below m = 500 and from there DCGAN by
    6 restarts x 30 L-BFGS passes, then the best 2 x 70 more (first step 1, 60 pairs: 0.32 of the
    paper's generator passes) and DCGAN+Reg by 8 x 30, then the best 2 x 220 more (first step 0.1:
    0.136), and records both the budget's name and what ran; --budget paper runs the paper's budget at every m; --restarts and
    --iters override auto's."""
    from invgan.csgm import AUTO_FROM_M, AUTO_SETTINGS, PAPER_SETTINGS
    from invgan.latent import lbfgs_prune_work

    for preset, share in (("dcgan", 0.32), ("dcgan-reg", 0.136)):
        p, a = PAPER_SETTINGS[preset], dict(PAPER_SETTINGS[preset], **AUTO_SETTINGS[preset])
        assert lbfgs_prune_work(a["restarts"], a["iters"], a.get("prune", ())) <= share * p["restarts"] * p["iters"]
    assert AUTO_FROM_M == 500
    runs = {}
    for budget, m_, extra in ((None, 499, []), ("paper", 500, []), (None, 500, []), (None, 500, ["--restarts", "3"])):
        out = tmp_path / f"{budget}_{m_}_{len(extra)}"
        args = (["--budget", budget] if budget else []) + extra
        r = run_main("cs", "--input", "gen-span", "--generator", tiny32_ckpt, "--num-images", 1, "-m", m_,
                     "--iters", 40, "--methods", "dcgan,dcgan-reg", *args, "--out", out, "--quiet")
        assert r.returncode == 0, r.stderr
        m = json.loads((out / "metrics.json").read_text())["config"]
        runs[budget, m_, len(extra)] = m["method_settings"]
        assert m["budget"] == (budget or "auto")
    below, auto, paper, own = runs[None, 499, 0], runs[None, 500, 0], runs["paper", 500, 0], runs[None, 500, 2]
    for s in (below["dcgan"], below["dcgan-reg"]):  # the paper's below m = 500
        assert s["optimizer"] == "adam" and s["lr"] == 0.1 and s["budget"] == "auto"
    assert below["dcgan"]["restarts"] == 2 and below["dcgan-reg"]["restarts"] == 10
    assert below["dcgan-reg"]["latent_steps_per_image"] == 10 * 40
    assert own["dcgan-reg"]["restarts"] == own["dcgan"]["restarts"] == 3 and own["dcgan"]["optimizer"] == "lbfgs"
    assert auto["dcgan"]["optimizer"] == "lbfgs" and auto["dcgan"]["restarts"] == 6 and auto["dcgan"]["lr"] == 1.0
    assert auto["dcgan"]["history"] == 60 and auto["dcgan"]["prune"] == [[30, 2]]
    assert auto["dcgan"]["latent_steps_per_image"] == 6 * 30 + 2 * 10  # 2 of the 6 go on after 30 passes
    assert own["dcgan"]["latent_steps_per_image"] == 3 * 30 + 2 * 10
    assert auto["dcgan"]["budget"] == auto["dcgan-reg"]["budget"] == "auto"
    assert auto["dcgan-reg"]["optimizer"] == "lbfgs" and auto["dcgan-reg"]["lr"] == 0.1
    assert auto["dcgan-reg"]["history"] == 60 and auto["dcgan-reg"]["prune"] == [[30, 2]]
    assert auto["dcgan-reg"]["latent_steps_per_image"] == 8 * 30 + 2 * 10  # 2 of the 8 go on after 30 passes
    assert own["dcgan-reg"]["latent_steps_per_image"] == 3 * 30 + 2 * 10
    assert auto["dcgan-reg"]["restarts"] == 8 and auto["dcgan-reg"]["settings_from_m"][0][0] == 500
    for s in (paper["dcgan-reg"], paper["dcgan"]):
        assert s["optimizer"] == "adam" and s["lr"] == 0.1 and s["budget"] == "paper" and "settings_from_m" not in s
    assert paper["dcgan"]["restarts"] == 2 and paper["dcgan-reg"]["restarts"] == 10
