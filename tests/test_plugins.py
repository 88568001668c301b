"""A user's method and operator, registered by a plugin module, work in the CLI and in sweeps."""

import json
import os

from conftest import assert_user_error, run_cli, run_main

PLUGIN = '''
import torch
import invgan


class Adjoint(invgan.Method):
    """x = clip(A^T y * n / m): a crude back-projection."""
    name = "my-adjoint"

    def reconstruct(self, y, physics, state=None, progress=False):
        x = physics.A_adjoint(y) * (torch.tensor(physics.img_shape).prod() / physics.m)
        return invgan.Reconstruction(x.clamp(-1, 1), {"scale": "n/m"})


class Subsample(invgan.Physics):
    """Keeps the first m pixel values."""
    name = "my-subsample"

    def __init__(self, m, img_shape, noise_std=0.0):
        self.m, self.img_shape, self.noise_std = m, tuple(img_shape), noise_std

    def A(self, x):
        return x.flatten(1)[:, :self.m]

    def A_adjoint(self, y):
        out = torch.zeros(y.shape[0], int(torch.tensor(self.img_shape).prod()), dtype=y.dtype, device=y.device)
        out[:, :self.m] = y
        return out.view(-1, *self.img_shape)


invgan.register_method("my-adjoint", lambda **_: Adjoint(), tasks=("cs",), description="back-projection")
invgan.register_physics("my-subsample", lambda m=None, img_shape=None, noise_std=0.0, **_:
                        Subsample(m, img_shape, noise_std))
'''


def _env(tmp_path, module="my_invgan_plugin", text=PLUGIN):
    (tmp_path / f"{module}.py").write_text(text)
    return {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "INVGAN_PLUGINS": module}


def test_plugin_method_and_physics_in_cli_and_sweep(tmp_path, tiny_ckpt):
    env = _env(tmp_path)
    assert "my-adjoint" in run_cli("cs", "--help", env=env).stdout.replace("\n", " ")
    out = tmp_path / "cs"
    p = run_cli("cs", "--methods", "my-adjoint,lasso-dct", "--physics", "my-subsample", "--measurements", 3000,
                "--input", "gen-span", "--generator", tiny_ckpt, "--num-images", 2, "--out", out, "--quiet", env=env)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["method_settings"]["my-adjoint"] == {"scale": "n/m"} and m["config"]["m"] == 3000
    recipe = tmp_path / "plug.toml"
    recipe.write_text('[sweep]\nexperiment = "cs"\nmethods = ["my-adjoint"]\nnum_images = 2\n'
                      f'[settings]\ninput = "gen-span"\nphysics = "my-subsample"\ngenerator = "{tiny_ckpt}"\n'
                      '[grid]\nmeasurements = [1000, 4000]\n')
    p = run_cli("sweep", "--recipe", recipe, "--out", tmp_path / "sw", "--quiet", env=env)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "sw" / "results.json").read_text())
    assert res["complete"] and len(res["rows"]) == 4
    mse = {s["measurements"]: s["mse"]["mean"] for s in res["summaries"]}
    assert mse[4000] < mse[1000]  # more measurements, smaller error
    # without the plugin, the name is unknown: one line, exit 2
    assert_user_error(run_main("cs", "--methods", "my-adjoint", "--out", tmp_path / "x", "--quiet"),
                      "unknown method 'my-adjoint'")


def test_a_broken_plugin_is_one_clear_line(tmp_path):
    env = _env(tmp_path, "broken_plugin", "raise RuntimeError('boom')\n")
    assert_user_error(run_cli("cs", "--help", env=env), "plugin 'broken_plugin'", "boom")
