import pickle

import pytest
import torch

from invgan import InvganError
from invgan.checkpoint import load_checkpoint, load_models, save_checkpoint
from invgan.models import ModelConfig, build_models

from conftest import assert_user_error, run_cli, run_main


def test_dcgan_shapes_and_sizes():
    G, D = build_models(ModelConfig())
    z = torch.randn(2, 100)
    x = G(z)
    assert x.shape == (2, 3, 64, 64) and x.abs().max() <= 1
    assert D(x).shape == (2,)
    # the standard DCGAN: 512 -> 256 -> 128 -> 64 -> 3 transposed convolutions
    chans = [m.out_channels for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert chans == [512, 256, 128, 64, 3]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build_models(ModelConfig(d_norm="layer"))[1].modules())


def test_checkpoint_roundtrip(tmp_path):
    cfg = ModelConfig(nz=8, ngf=8, ndf=8)
    G, D = build_models(cfg)
    save_checkpoint(tmp_path / "c.pt", cfg, G, D, meta={"step": 3})
    cfg2, G2, D2, meta = load_models(tmp_path / "c.pt", need_discriminator=True)
    z = torch.randn(4, 8)
    G.eval(), D.eval()
    assert cfg2 == cfg and meta["step"] == 3
    assert torch.equal(G(z), G2(z)) and torch.equal(D(G(z)), D2(G(z)))
    assert not any(p.requires_grad for p in G2.parameters())
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


class Evil:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_refuses_non_checkpoints(tmp_path, capsys, tiny_ckpt):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InvganError, match="not a readable invgan checkpoint .not a PyTorch checkpoint, or damaged"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "invgan-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InvganError, match=r"holds a Python object \(print\).* tensors and plain containers only"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "unpickled" not in capsys.readouterr().out
    (tmp_path / "cut.pt").write_bytes(tiny_ckpt.read_bytes()[:4000])  # a copy cut short
    with pytest.raises(InvganError, match="damaged or incomplete"):
        load_checkpoint(tmp_path / "cut.pt")
    for name in ("junk.pt", "evil.pt", "cut.pt"):  # one line, and never torch's advice to load unsafely
        with pytest.raises(InvganError) as err:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value) and "weights_only" not in str(err.value) and "invgan train" in str(err.value)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InvganError, match="not an invgan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_mismatched_checkpoint(tmp_path):
    cfg = ModelConfig(nz=8, ngf=8, ndf=8)
    G, D = build_models(cfg)
    save_checkpoint(tmp_path / "c.pt", cfg, G, D)
    obj = torch.load(tmp_path / "c.pt", weights_only=True)
    obj["model"]["ngf"] = 16
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(InvganError, match="do not match"):
        load_models(tmp_path / "bad.pt")
    assert_user_error(run_main("sample", "--generator", tmp_path / "bad.pt", "--out", tmp_path / "s.png"), "do not match")
    assert_user_error(run_main("sample", "--generator", tmp_path / "missing.pt"), "does not exist")


def test_sample_cli(tiny_ckpt, tmp_path):
    p = run_main("sample", "--generator", tiny_ckpt, "--n", 9, "--out", tmp_path / "g.png")
    assert p.returncode == 0, p.stderr
    from PIL import Image

    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (3 * 66 + 2, 3 * 66 + 2)
