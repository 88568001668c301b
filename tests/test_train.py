import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import run_main, REPO, assert_user_error, default_sigint, run_cli

TINY = ["--partition", "val", "--limit", "192", "--ngf", "8", "--ndf", "8", "--nz", "16",
        "--batch-size", "16", "--log-every", "2", "--seed", "5", "--quiet"]


def _weights(path):
    c = torch.load(path, weights_only=True)
    return c["generator"], c["discriminator"], c["meta"]["step"]


def _log_steps(run):
    with open(run / "log.csv") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def test_train_writes_outputs_and_sample_reads_them(celeba_root, tmp_path):
    p = run_cli("train", "--data", celeba_root, "--out", tmp_path / "r", "--max-steps", 14,
                "--checkpoint-every", 5, *TINY)
    assert p.returncode == 0, p.stderr
    assert "trained 14 steps" in p.stdout
    assert _log_steps(tmp_path / "r") == list(range(2, 15, 2))
    assert (tmp_path / "r" / "samples" / "epoch-001.png").is_file()  # 12 steps = one epoch of 192
    with open(tmp_path / "r" / "log.csv") as fh:
        row = next(csv.DictReader(fh))
    assert 0 < float(row["d_real"]) < 1 and 0 < float(row["d_fake"]) < 1
    p = run_main("sample", "--generator", tmp_path / "r", "--n", 4, "--out", tmp_path / "s.png")
    assert p.returncode == 0 and (tmp_path / "s.png").is_file()


def test_interrupted_run_resumes_exactly(celeba_root, tmp_path):
    ref = run_main("train", "--data", celeba_root, "--out", tmp_path / "ref", "--max-steps", 40, *TINY)
    assert ref.returncode == 0, ref.stderr
    g1, d1, s1 = _weights(tmp_path / "ref" / "checkpoint.pt")
    for sig in (signal.SIGKILL, signal.SIGINT):
        # the same run, interrupted once its checkpoint at step >= 10 is on disk, then resumed
        out = tmp_path / f"cut-{sig.name}"
        cmd = [sys.executable, "-m", "invgan", "train", "--data", str(celeba_root), "--out",
               str(out), "--max-steps", "40", "--checkpoint-every", "5", *TINY]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_sigint)
        ckpt = out / "checkpoint.pt"
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if ckpt.is_file():
                try:
                    if _weights(ckpt)[2] >= 10:
                        break
                except Exception:
                    pass
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate()
        assert "Traceback" not in err, err
        cut_step = _weights(ckpt)[2]
        assert 10 <= cut_step < 40, "the run was not interrupted mid-way"
        res = run_main("train", "--out", out, "--resume", "--max-steps", 40, "--quiet")
        assert res.returncode == 0, res.stderr
        g2, d2, s2 = _weights(ckpt)
        assert s1 == s2 == 40
        for k in g1:
            assert torch.equal(g1[k], g2[k]), k
        for k in d1:
            assert torch.equal(d1[k], d2[k]), k
        steps = _log_steps(out)
        assert steps == list(range(2, 41, 2))  # no gap and no duplicate rows across the cut
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left


def test_wgan_gp_trains(celeba_root, tmp_path):
    p = run_cli("train", "--data", celeba_root, "--out", tmp_path / "w", "--max-steps", 3,
                "--loss", "wgan-gp", "--n-critic", 2, *TINY)
    assert p.returncode == 0, p.stderr
    c = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    assert c["model"]["d_norm"] == "layer"
    assert not any("running_mean" in k for k in c["discriminator"])
    with open(tmp_path / "w" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["grad_penalty"]) > 0


def test_ddp_two_cpu_processes(celeba_root, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "invgan", "train", "--data", str(celeba_root), "--out", str(tmp_path / "d"),
           "--max-steps", "6", *TINY]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    c = torch.load(tmp_path / "d" / "checkpoint.pt", weights_only=True)
    assert c["meta"]["world_size"] == 2 and c["meta"]["step"] == 6
    # each of the 2 ranks consumed 6 batches of 16: the log counts 2 * 6 * 16 images
    with open(tmp_path / "d" / "log.csv") as fh:
        assert int(list(csv.DictReader(fh))[-1]["images"]) == 192


def test_train_user_errors(tmp_path, celeba_root):
    assert_user_error(run_main("train", "--out", tmp_path / "x", "--data", tmp_path / "nothing"), "does not exist")
    assert_user_error(run_main("train", "--out", tmp_path / "x", "--resume"), "no checkpoint")
    assert_user_error(run_main("train", "--out", tmp_path / "x", "--epochs", "0"), "must be >= 1")
    (tmp_path / "r.toml").write_text("[train]\nepochz = 3\n")
    assert_user_error(run_main("train", "--out", tmp_path / "x", "--recipe", tmp_path / "r.toml"), "epochz")
    assert_user_error(run_main("train", "--out", tmp_path / "x", "--data", celeba_root, "--partition", "val",
                              "--batch-size", "4096"), "fewer than one batch")


def test_recipes_parse():
    from invgan.models import ModelConfig
    from invgan.train import TrainConfig, read_recipe

    for path in sorted((REPO / "recipes").glob("*celeba64*.toml")):
        t, m = read_recipe(path)
        TrainConfig(**t).validate()
        ModelConfig(**m)


def test_train_on_a_plain_folder(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (80, 70, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    p = run_cli("train", "--data", tmp_path / "imgs", "--out", tmp_path / "r", "--max-steps", 2,
                "--batch-size", 8, "--ngf", 8, "--ndf", 8, "--nz", 8, "--quiet")
    assert p.returncode == 0, p.stderr
    c = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert c["meta"]["data"]["num_images"] == 20 and c["meta"]["train_config"]["partition"] == "all"
