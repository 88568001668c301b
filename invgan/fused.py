"""Faster forms of a frozen network's layers that give the same outputs and input gradients, bit for bit.

``invgan.generators.frozen`` applies ``fuse_layers`` to its copy on the CPU, so every latent search
(CSGM, Yeh's inpainting, Sparse-Gen) runs them. Two forms, each measured on the shipped DCGAN at 640
latents (64 faces x 10 restarts; ``scripts/bench_passes.py``):

- ``EvalBatchNormReLU``: a ``BatchNorm2d`` (eval mode) and the ``ReLU`` after it, with the backward
  pass in one fused step. torch's two backward steps were 10% of a generator pass: its eval-mode
  batch-norm backward also reduces over its input for weight gradients that a frozen network does not
  need. The fused step computes the same products in the same order (``invgan._kernels.bn_relu_grad``).
- ``PhaseConvTranspose2d``: a stride-2, 4 x 4 transposed convolution with few output channels (the
  DCGAN's last layer, 64 -> 3) as one ordinary 2 x 2 convolution with an output channel per output
  phase, on the spatially flipped input. oneDNN runs the transposed form with 3 output channels at a
  seventh of its speed on the other layers; the ordinary convolution adds the same products in the
  same order (its kernel taps in ascending order over the flipped input are the transposed form's in
  descending order over the original). That is an observed property of oneDNN's kernels, not a
  guarantee (on this AMD EPYC it holds for the DCGAN's 64 input channels at every batch size tried,
  and not for 8 input channels at some), so it is checked: at each new input shape (and thread
  count) the layer runs both forms once on a random input and uses the phase form only where the two
  are equal bit for bit. Its backward pass is the transposed
  convolution's own (``torch.ops.aten.convolution_backward``).
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
    the backward pass in one fused step. Where the batch-norm is training, has parameters that need
    gradients, no running statistics or no affine weights, or x needs no gradient, it runs the two
    modules as they are."""

    def __init__(self, bn: nn.BatchNorm2d, relu: nn.ReLU):
        super().__init__()
        self.bn, self.relu = bn, relu

    def _fusable(self, x: torch.Tensor) -> bool:
        bn = self.bn
        return (not bn.training and bn.weight is not None and bn.bias is not None and bn.running_var is not None
                and not bn.weight.requires_grad and not bn.bias.requires_grad and x.requires_grad
                and torch.is_grad_enabled() and x.dim() == 4)

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


class _PhaseDeconvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, layer):
        ctx.save_for_backward(x)
        ctx.layer = layer
        return _phase_forward(x, layer.phase_weights(), layer.conv.out_channels)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        conv = ctx.layer.conv  # the transposed convolution's own input gradient, as autograd computes it
        gx = torch.ops.aten.convolution_backward(g, x, conv.weight, None, list(conv.stride), list(conv.padding),
                                                 list(conv.dilation), True, list(conv.output_padding), conv.groups,
                                                 [True, False, False])[0]
        return gx, None


class PhaseConvTranspose2d(nn.Module):
    """A frozen ``ConvTranspose2d`` (4 x 4 kernel, stride 2, padding 1, no bias, few output channels) by
    one ordinary convolution over its output phases, where that gives the transposed form's outputs bit
    for bit (checked once per input shape; see the module's docstring). Else the layer as it is."""

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        self.conv = conv
        self._same = {}  # input shape -> whether the phase form gave the transposed form's output
        self._pw = None

    def phase_weights(self) -> torch.Tensor:
        """The ordinary convolution's weights (4 Cout, Cin, 2, 2), made again when the layer's change."""
        w = self.conv.weight
        if self._pw is None or self._pw[0] != w._version:
            self._pw = (w._version, _phase_weights(w.detach()))
        return self._pw[1]

    def _applies(self, x: torch.Tensor) -> bool:
        if (x.dim() != 4 or x.device.type != "cpu" or x.dtype != torch.float32 or self.conv.weight.requires_grad
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return False
        key = (tuple(x.shape), self.conv.weight._version, torch.get_num_threads())
        if key not in self._same:  # (oneDNN picks its kernels by shape and threads: checked on a random input of
            # this shape, on which a different order of the sums shows in most outputs)
            probe = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(
                memory_format=torch.channels_last)
            with torch.no_grad():
                self._same[key] = torch.equal(_phase_forward(probe, self.phase_weights(), self.conv.out_channels),
                                              self.conv(probe))
        return self._same[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._applies(x):
            return self.conv(x)
        if x.requires_grad and torch.is_grad_enabled():
            return _PhaseDeconvFunction.apply(x, self)
        return _phase_forward(x, self.phase_weights(), self.conv.out_channels)


#: the phase form replaces transposed convolutions with at most this many output channels (4 of them
#: fill one 16-float vector; the DCGAN's last layer has 3)
PHASE_MAX_CHANNELS = 4


def _phase_fits(m: nn.Module) -> bool:
    return (type(m) is nn.ConvTranspose2d and tuple(m.kernel_size) == (4, 4) and tuple(m.stride) == (2, 2)
            and tuple(m.padding) == (1, 1) and tuple(m.output_padding) == (0, 0) and tuple(m.dilation) == (1, 1)
            and m.groups == 1 and m.bias is None and m.padding_mode == "zeros"
            and m.out_channels <= PHASE_MAX_CHANNELS)


def fuse_layers(net: nn.Module) -> nn.Module:
    """In place, in every ``nn.Sequential`` of ``net``: each ``BatchNorm2d`` followed by a ``ReLU`` becomes
    one ``EvalBatchNormReLU``, each small stride-2 ``ConvTranspose2d`` a ``PhaseConvTranspose2d`` (see
    there). The parameters and buffers stay the same tensors in the same order. Returns ``net``."""
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        out, i, changed = [], 0, False
        while i < len(mods):
            if i + 1 < len(mods) and type(mods[i]) is nn.BatchNorm2d and type(mods[i + 1]) is nn.ReLU:
                out.append(EvalBatchNormReLU(mods[i], mods[i + 1]))
                i += 2
                changed = True
                continue
            if _phase_fits(mods[i]):
                out.append(PhaseConvTranspose2d(mods[i]))
                changed = True
            else:
                out.append(mods[i])
            i += 1
        if changed:
            for name in list(seq._modules):
                del seq._modules[name]
            for k, mod in enumerate(out):
                seq.add_module(str(k), mod)
    return net
