"""The frozen copy's faster layers (invgan.fused): the same outputs and latent gradients as the modules
they replace, bit for bit, on the kernels' paths and on the torch forms'."""

import copy

import pytest
import torch

from invgan import _kernels
from invgan.checkpoint import load_models
from invgan import fused
from invgan.fused import EvalBatchNormReLU, MatmulConvTranspose2d, PhaseConvTranspose2d
from invgan.generators import frozen
from invgan.models import ModelConfig, build_models
from invgan.resume import fingerprint


def unfused(module):  # what frozen() returned before the fusion
    ref = copy.deepcopy(module).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    assert str(frozen(module, fuse=False)) == str(ref)
    return ref


def pass_of(net, z, seed=1):
    z = z.clone().requires_grad_(True)
    x = net(z)
    x.backward(torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)))
    return x.detach(), z.grad


def trained_like(G):  # running statistics and affine weights that are not the initial ones
    g = torch.Generator().manual_seed(3)
    for m in G.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 1e-3)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))  # some negative
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return G


@pytest.mark.parametrize("n", [1, 5, 40])
@pytest.mark.parametrize("kernels", [True, False])
def test_frozen_generator_gives_the_unfused_outputs_and_gradients_bit_for_bit(n, kernels, monkeypatch):
    G = trained_like(build_models(ModelConfig(nz=12, ngf=8, ndf=8))[0])
    net, ref = frozen(G), unfused(G)
    assert sum(isinstance(m, EvalBatchNormReLU) for m in net.modules()) == 4  # every BN + ReLU pair
    (phase,) = [m for m in net.modules() if isinstance(m, PhaseConvTranspose2d)]  # the last layer, 8 -> 3
    (first,) = [m for m in net.modules() if isinstance(m, MatmulConvTranspose2d)]  # the first, latent -> 4 x 4
    calls = []
    kernel = getattr(_kernels, "_bn_relu_grad_kernel", None)
    if kernels and kernel is not None:
        monkeypatch.setattr(_kernels, "_bn_relu_grad_kernel", lambda *a: (calls.append(1), kernel(*a)))
    monkeypatch.setattr(_kernels, "FUSED", kernels)
    z = torch.randn(n, 12, generator=torch.Generator().manual_seed(n))
    (x0, g0), (x1, g1) = pass_of(ref, z), pass_of(net, z)
    assert torch.equal(x0, x1) and torch.equal(g0, g1)
    assert len(calls) == (4 if kernels and kernel is not None else 0)
    assert len(phase._same) == len(first._same) == 1  # the fast forms were checked (used where bit for bit)
    # the parameters and buffers are the same tensors in the same order (resume keys do not change)
    assert fingerprint(*net.state_dict().values()) == fingerprint(*ref.state_dict().values())


@pytest.mark.parametrize("n", [1, 24, 130])
def test_shipped_generator_fused_pass_is_bit_for_bit(n):
    _, G, _, _ = load_models()
    z = torch.randn(n, 100, generator=torch.Generator().manual_seed(n))
    net = frozen(G)
    (x0, g0), (x1, g1) = pass_of(unfused(G), z), pass_of(net, z)
    assert torch.equal(x0, x1) and torch.equal(g0, g1)
    with torch.no_grad():  # no gradient: the forward forms alone
        assert torch.equal(net(z), x0)
    forms = [m for m in net.modules() if isinstance(m, (PhaseConvTranspose2d, MatmulConvTranspose2d))]
    assert len(forms) == 2
    if n >= 16:  # where the sweep's batches are (64 faces x restarts), the fast forms run on this CPU
        assert all(all(m._same.values()) for m in forms), "not bit for bit here: not used (slower, same results)"


def test_phase_form_is_the_transposed_convolution_and_falls_back_where_it_differs(monkeypatch):
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.ConvTranspose2d(8, 3, 4, 2, 1, bias=False).requires_grad_(False)
    x = torch.randn(5, 8, 6, 7, generator=g).to(memory_format=torch.channels_last)
    ref = conv(x)
    layer = PhaseConvTranspose2d(conv)
    # the same function (to rounding) whatever the CPU's kernels do
    assert torch.allclose(fused._phase_forward(x, layer.prepared(), 3), ref, atol=1e-5, rtol=1e-5)
    # where the phase form's bits differ from the transposed form's, the layer uses the transposed form
    monkeypatch.setattr(fused, "_phase_forward", lambda x, pw, c: conv(x) + 1e-3)
    layer = PhaseConvTranspose2d(conv)
    assert torch.equal(layer(x), ref) and list(layer._same.values()) == [False]
    # the product form: only on 1 x 1 inputs; elsewhere the layer as it is
    first = MatmulConvTranspose2d(torch.nn.ConvTranspose2d(8, 5, 3, 1, 0, bias=False).requires_grad_(False))
    for hw in (1, 2):
        x = torch.randn(20, 8, hw, hw, generator=g).to(memory_format=torch.channels_last)
        assert torch.allclose(first._fast(x) if hw == 1 else first(x), first.conv(x), atol=1e-5, rtol=1e-5)
    assert len(first._same) == 0  # (the 2 x 2 input never reached the check)
    first(torch.randn(20, 8, 1, 1, generator=g).to(memory_format=torch.channels_last))
    assert len(first._same) == 1
    # layers it does not take
    assert not fused._phase_fits(torch.nn.ConvTranspose2d(8, 3, 4, 2, 1, bias=True))
    assert not fused._phase_fits(torch.nn.ConvTranspose2d(8, 16, 4, 2, 1, bias=False))
    assert not fused._phase_fits(torch.nn.ConvTranspose2d(8, 3, 3, 2, 1, bias=False))


@pytest.mark.parametrize("channels", [3, 5, 17])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_bn_relu_grad_equals_torchs_two_backward_steps(channels, layout):
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(6, channels, 5, 7, generator=g).to(memory_format=layout)
    x[0, :, :2] = 0.0  # exact zeros at the ReLU's threshold
    dy = torch.randn(6, channels, 5, 7, generator=g).to(memory_format=layout)
    w = torch.randn(channels, generator=g)
    b = torch.randn(channels, generator=g)
    w[0] = 0.0
    mean, var = torch.randn(channels, generator=g), torch.rand(channels, generator=g) + 1e-3
    bn = torch.nn.BatchNorm2d(channels, eps=1e-5).eval()
    bn.running_mean.copy_(mean), bn.running_var.copy_(var), bn.weight.data.copy_(w), bn.bias.data.copy_(-mean * w)
    y = torch.nn.functional.batch_norm(x, mean, var, w, -mean * w, False, 0.0, 1e-5).relu_()
    assert (y == 0).any() and (y > 0).any()
    ref = torch.ops.aten.native_batch_norm_backward(torch.ops.aten.threshold_backward(dy, y, 0), x, w, mean, var,
                                                    None, None, False, 1e-5, [True, False, False])[0]
    invstd = (1 / torch.sqrt(var.double() + 1e-5)).float()
    assert torch.equal(_kernels.bn_relu_grad(dy, y, invstd, w), ref)
    del b


def test_fused_module_falls_back_where_it_does_not_apply():
    G = trained_like(build_models(ModelConfig(nz=12, ngf=8, ndf=8))[0])
    net = frozen(G)
    pairs = [m for m in net.modules() if isinstance(m, EvalBatchNormReLU)]
    z = torch.randn(6, 12, generator=torch.Generator().manual_seed(0))
    # trainable parameters: the modules as they are, and the weights get their gradients
    net.requires_grad_(True)
    net(z).sum().backward()
    assert all(m.bn.weight.grad is not None for m in pairs)
    # training mode (batch statistics): as the unfused modules in training mode
    ref = copy.deepcopy(G).train().to(memory_format=torch.channels_last)
    net.train()
    assert torch.equal(net(z), ref(z))
    # float64 (and any device but the CPU): the modules as they are
    net, ref = frozen(G).double(), unfused(G).double()
    (x0, g0), (x1, g1) = pass_of(ref, z.double()), pass_of(net, z.double())
    assert torch.equal(x0, x1) and torch.equal(g0, g1)
    pair = next(m for m in frozen(G).modules() if isinstance(m, EvalBatchNormReLU))
    assert pair._fusable(torch.zeros(2, 8, 4, 4, requires_grad=True))
    assert not pair._fusable(torch.zeros(2, 8, 4, 4, dtype=torch.float64, requires_grad=True))
    # a second derivative through the fused step raises instead of coming out wrong
    net = frozen(G)
    zz = z.clone().requires_grad_(True)
    (gz,) = torch.autograd.grad(net(zz).pow(2).sum(), zz, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(gz.sum(), zz)
