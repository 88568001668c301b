"""Faster forms of a frozen network's layers that give the same outputs and input gradients, bit for bit.

``invgan.generators.frozen`` applies ``fuse_layers`` to its copy on the CPU, so every latent search
(CSGM, Yeh's inpainting, Sparse-Gen) runs them. Three forms, measured on the shipped DCGAN at 640
latents (64 faces x 10 restarts; ``scripts/bench_passes.py`` times a whole pass):

- ``EvalBatchNormReLU``: a ``BatchNorm2d`` (eval mode) and the ``ReLU`` after it, with the backward
  pass in one fused step. torch's two backward steps were 10% of a generator pass: its eval-mode
  batch-norm backward also reduces over its input for weight gradients that a frozen network does not
  need. The fused step computes the same products in the same order (``invgan._kernels.bn_relu_grad``).
- ``PhaseConvTranspose2d``: a stride-2, 4 x 4 transposed convolution with few output channels (the
  DCGAN's last layer, 64 -> 3) as one ordinary 2 x 2 convolution with an output channel per output
  phase, on the spatially flipped input: 36 ms against 62. oneDNN runs the transposed form with 3
  output channels at a seventh of its speed on the other layers; the ordinary convolution adds the same
  products in the same order (its kernel taps in ascending order over the flipped input are the
  transposed form's in descending order over the original).
- ``MatmulConvTranspose2d``: a stride-1 transposed convolution of a 1 x 1 input (the first layer,
  latent -> 512 x 4 x 4) as one matrix product: 7 ms against 20.

The last two are observed properties of the libraries' kernels, not guarantees (on this AMD EPYC the
phase form holds for the DCGAN's 64 input channels at every batch size tried, and not for 8 input
channels at some; the product from 8 latents on), so each is checked: at each new input shape (and
thread count) the layer runs both forms once on a random input and uses the fast one only where the
two are equal bit for bit. Their backward passes are the transposed convolution's own
(``torch.ops.aten.convolution_backward``, as autograd calls it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from invgan import _kernels


class _EvalBNReLUFunction(torch.autograd.Function):
    """relu(batch_norm(x)) in eval mode, x's gradient by ``invgan._kernels.bn_relu_grad`` (one pass)."""

    @staticmethod
    def forward(ctx, x, bn):
        y = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps).relu_()
        ctx.save_for_backward(y)
        # 1 / sqrt(var + eps) formed in float64 and rounded, as torch's eval-mode backward forms it
        ctx.invstd = (1 / torch.sqrt(bn.running_var.double() + bn.eps)).to(bn.running_var.dtype)
        ctx.weight = bn.weight
        return y

    @staticmethod
    @once_differentiable  # (a second derivative through it raises instead of coming out wrong)
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return _kernels.bn_relu_grad(g, y, ctx.invstd, ctx.weight), None


class EvalBatchNormReLU(nn.Module):
    """A ``BatchNorm2d`` and the ``ReLU`` after it: the same outputs and input gradients, bit for bit, with
    the backward pass in one fused step (float32 on the CPU, where it was measured). Where the batch-norm
    is training, has parameters that need gradients, no running statistics or no affine weights, or x
    needs no gradient, is not float32 or not on the CPU, it runs the two modules as they are."""

    def __init__(self, bn: nn.BatchNorm2d, relu: nn.ReLU):
        super().__init__()
        self.bn, self.relu = bn, relu

    def _fusable(self, x: torch.Tensor) -> bool:
        bn = self.bn
        return (not bn.training and bn.weight is not None and bn.bias is not None and bn.running_var is not None
                and not bn.weight.requires_grad and not bn.bias.requires_grad and x.requires_grad
                and torch.is_grad_enabled() and x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fusable(x):
            return _EvalBNReLUFunction.apply(x, self.bn)
        return self.relu(self.bn(x))


#: output rows of a stride-2, 4 x 4, padding-1 transposed convolution: phase a of row 2i + a adds input
#: rows (i - 1, i) (a = 0) or (i, i + 1) (a = 1) times these kernel rows (of the flipped kernel)
_PHASE_TAPS = ((3, 1), (2, 0))


def _phase_weights(weight: torch.Tensor) -> torch.Tensor:
    """(Cin, Cout, 4, 4) transposed-convolution weights -> (4 Cout, Cin, 2, 2) convolution weights, output
    channel (2 a + b) Cout + c for output phase (a, b), from the spatially flipped kernel."""
    w = weight.flip(2, 3)
    cout = w.shape[1]
    out = w.new_empty(4 * cout, w.shape[0], 2, 2)
    for a in (0, 1):
        for b in (0, 1):
            q = (2 * a + b) * cout
            for u in (0, 1):
                for v in (0, 1):
                    out[q:q + cout, :, u, v] = w[:, :, _PHASE_TAPS[a][u], _PHASE_TAPS[b][v]].T
    return out.contiguous(memory_format=torch.channels_last)


def _phase_forward(x: torch.Tensor, pw: torch.Tensor, cout: int) -> torch.Tensor:
    # the phases on the flipped input, (n, 4 cout, h + 1, w + 1); output phase (a, b) is the flipped
    # problem's phase (1 - a, 1 - b), flipped back (``invgan._kernels.phase_gather``)
    return _kernels.phase_gather(F.conv2d(_kernels.flip_hw(x), pw, padding=1), cout)


class _CheckedForm(nn.Module):
    """A frozen layer with a faster forward form that is used, per input shape and thread count, only where
    it gave the layer's own output bit for bit on a random input of that shape (on which a different order
    of the sums shows in most outputs). The backward pass is the layer's own."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv
        self._same = {}  # (input shape, weight version, threads) -> whether the fast form gave the layer's output
        self._prepared = None

    def prepared(self) -> torch.Tensor:
        """The fast form's weights, made again when the layer's change."""
        w = self.conv.weight
        if self._prepared is None or self._prepared[0] != w._version:
            self._prepared = (w._version, self._prepare(w.detach()))
        return self._prepared[1]

    def _fits(self, x: torch.Tensor) -> bool:
        return (x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32
                and not self.conv.weight.requires_grad and x.is_contiguous(memory_format=torch.channels_last))

    def _applies(self, x: torch.Tensor) -> bool:
        if not self._fits(x):
            return False
        key = (tuple(x.shape), self.conv.weight._version, torch.get_num_threads())
        if key not in self._same:
            probe = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(
                memory_format=torch.channels_last)
            with torch.no_grad():
                self._same[key] = torch.equal(self._fast(probe), self.conv(probe))
        return self._same[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._applies(x):
            return self.conv(x)
        if x.requires_grad and torch.is_grad_enabled():
            return _FastForwardFunction.apply(x, self)
        return self._fast(x)


class _FastForwardFunction(torch.autograd.Function):
    """A ``_CheckedForm``'s fast forward, with the transposed convolution's own input gradient."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.save_for_backward(x)
        ctx.layer = layer
        return layer._fast(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        conv = ctx.layer.conv  # as autograd computes it for the layer itself
        gx = torch.ops.aten.convolution_backward(g, x, conv.weight, None, list(conv.stride), list(conv.padding),
                                                 list(conv.dilation), True, list(conv.output_padding), conv.groups,
                                                 [True, False, False])[0]
        return gx, None


class PhaseConvTranspose2d(_CheckedForm):
    """A frozen ``ConvTranspose2d`` (4 x 4 kernel, stride 2, padding 1, no bias, few output channels) by
    one ordinary convolution over its output phases on the flipped input, where that gives the transposed
    form's output bit for bit (see the module's docstring). Else the layer as it is."""

    def _prepare(self, w):
        return _phase_weights(w)

    def _fast(self, x):
        return _phase_forward(x, self.prepared(), self.conv.out_channels)


class MatmulConvTranspose2d(_CheckedForm):
    """A frozen ``ConvTranspose2d`` (stride 1, no padding, no bias) applied to 1 x 1 inputs (the DCGAN's
    first layer, latent -> 512 x 4 x 4) as one matrix product with its weights, its columns in the
    output's channels-last order, where that gives the layer's output bit for bit. oneDNN ran the
    transposed form at 52 GFLOP/s here, the product at about three times that."""

    def _prepare(self, w):  # (Cin, Cout, k, k) -> (Cin, k k Cout): rows of the channels-last output
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).contiguous()

    def _fits(self, x):
        return super()._fits(x) and x.shape[2] == 1 and x.shape[3] == 1

    def _fast(self, x):
        n, k = x.shape[0], self.conv.kernel_size
        out = x.reshape(n, -1) @ self.prepared()
        return out.view(n, k[0], k[1], self.conv.out_channels).permute(0, 3, 1, 2)


#: the phase form replaces transposed convolutions with at most this many output channels (4 of them
#: fill one 16-float vector; the DCGAN's last layer has 3)
PHASE_MAX_CHANNELS = 4


def _matmul_fits(m: nn.Module) -> bool:
    return (type(m) is nn.ConvTranspose2d and tuple(m.stride) == (1, 1) and tuple(m.padding) == (0, 0)
            and tuple(m.output_padding) == (0, 0) and tuple(m.dilation) == (1, 1) and m.groups == 1
            and m.bias is None and m.padding_mode == "zeros")


def _phase_fits(m: nn.Module) -> bool:
    return (type(m) is nn.ConvTranspose2d and tuple(m.kernel_size) == (4, 4) and tuple(m.stride) == (2, 2)
            and tuple(m.padding) == (1, 1) and tuple(m.output_padding) == (0, 0) and tuple(m.dilation) == (1, 1)
            and m.groups == 1 and m.bias is None and m.padding_mode == "zeros"
            and m.out_channels <= PHASE_MAX_CHANNELS)


def fuse_layers(net: nn.Module) -> nn.Module:
    """In place, in every ``nn.Sequential`` of ``net``: each ``BatchNorm2d`` followed by a ``ReLU`` becomes
    one ``EvalBatchNormReLU``, each small stride-2 ``ConvTranspose2d`` a ``PhaseConvTranspose2d``, each
    stride-1 unpadded one a ``MatmulConvTranspose2d`` (it runs as it is on inputs larger than 1 x 1). The
    parameters and buffers stay the same tensors in the same order. Returns ``net``."""
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        out, i, changed = [], 0, False
        while i < len(mods):
            if i + 1 < len(mods) and type(mods[i]) is nn.BatchNorm2d and type(mods[i + 1]) is nn.ReLU:
                out.append(EvalBatchNormReLU(mods[i], mods[i + 1]))
                i += 2
                changed = True
                continue
            form = (PhaseConvTranspose2d if _phase_fits(mods[i]) else
                    MatmulConvTranspose2d if _matmul_fits(mods[i]) else None)
            out.append(mods[i] if form is None else form(mods[i]))
            changed = changed or form is not None
            i += 1
        if changed:
            seq._modules.clear()
            for k, mod in enumerate(out):
                seq.add_module(str(k), mod)
    return net
