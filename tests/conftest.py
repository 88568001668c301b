import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # Decoded-image cache in a temporary folder: tests never depend on a user's cache.
    os.environ["INVGAN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture(autouse=True)
def _no_kept_setup():
    # each test starts without a Lasso set-up kept from another (invgan.lasso's _SetupCache)
    from invgan.lasso import clear_setup_cache

    clear_setup_cache()
    yield
    clear_setup_cache()


@pytest.fixture(scope="session")
def celeba_root():
    from invgan.data import default_celeba_root, is_celeba

    root = default_celeba_root()
    if root is None or not is_celeba(root):
        pytest.skip("shared CelebA subset not found (set INVGAN_CELEBA)")
    return root


def _tiny_checkpoint(folder, **size):
    from invgan.checkpoint import save_checkpoint
    from invgan.models import ModelConfig, build_models

    cfg = ModelConfig(nz=16, ngf=8, ndf=8, **size)
    torch.manual_seed(0)
    G, D = build_models(cfg)
    path = folder / "tiny.pt"
    save_checkpoint(path, cfg, G, D, meta={"note": "test"})
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A tiny trained-for-a-few-steps checkpoint (random data, 64x64, ngf=ndf=8, nz=16)."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def tiny32_ckpt(tmp_path_factory):
    """Like ``tiny_ckpt`` at 32x32 (a quarter of the pixels): for tests of bookkeeping that run many steps."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt32"), image_size=32)


def lasso_problem(m, seed=0, n_images=3, dtype=torch.float64, noise=0.01, shape=(3, 16, 16)):
    """Smooth-ish random images (a few large coefficients, like faces), a Gaussian A with m rows and
    its noisy measurements: (x, physics, y), for the Lasso solvers' tests."""
    from invgan.physics import GaussianCS

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_images, *shape, generator=g, dtype=dtype) * 2 - 1
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    p = GaussianCS(m, shape, noise_std=noise, seed=seed)
    p.matrix = p.matrix.to(dtype)
    return x, p, p(x, torch.Generator().manual_seed(seed + 1))


def die_at_save(monkeypatch, n: int):
    """Make ``SolveState.save`` raise KeyboardInterrupt right after its n-th save (a killed run);
    returns the real ``save``, to put back with monkeypatch before the resumed run."""
    from invgan.resume import SolveState

    saves = []
    real_save = SolveState.save

    def save_then_die(self, key, state):
        real_save(self, key, state)
        saves.append(1)
        if len(saves) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(SolveState, "save", save_then_die)
    return real_save


def default_sigint():
    """Popen preexec_fn: the child takes SIGINT as a keyboard interrupt even when this test run was
    started in the background (a shell then starts jobs with SIGINT ignored, and Python keeps that)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args, env=None, timeout=600):
    """Run `python -m invgan ARGS`; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "invgan", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=e, timeout=timeout)


def run_main(*args):
    """``invgan.cli.main(ARGS)`` in this process (fast: no interpreter start-up), as a
    CompletedProcess: returncode from its SystemExit (0 if it returns), captured stdout / stderr."""
    import contextlib
    import io

    from invgan.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.replace("\r", "\n").splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("invgan:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # one line, last (progress bars may precede)
    err = errors[0]
    assert err.startswith("invgan: error:"), err
    for n in needles:
        assert n in err, (n, err)
