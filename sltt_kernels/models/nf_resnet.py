"""Normaliser-free spiking ResNet-34/50/101 for ImageNet, as the official SLTT code builds it.

Stem: ScaledWS conv7x7/2 (bias, gain) -> AvgPool2d(3, 2, 1); no neuron after it.
Block (x_{l+1} = x_l + alpha * skipinit_gain * f(x_l / beta_l)):
    s = LIF(x / beta) * 2.74
    shortcut = ScaledWS conv1x1(s) when the shape changes, else x itself
    basic:      f = conv3x3(LIF(conv3x3/stride(s)) * 2.74)
    bottleneck: f = conv1x1(LIF(conv3x3/stride(LIF(conv1x1(s)) * 2.74)) * 2.74)
    out = f * skipinit_gain * alpha + shortcut        (skipinit_gain: a learnable scalar, 0 at init)
beta = sqrt(expected variance of x), which carries across stages: + alpha^2 per block, and 1 +
alpha^2 after a block with a projection shortcut (ResNet-34 stage 1 has none, so the first
blocks of stages 2-4 have beta 1.058, 1.077, 1.114).
Head: global average pool -> flatten -> Linear (weight 0, bias PyTorch's default); no neuron.
Convs (ScaledWS, unbiased variance as torch.var's default): Kaiming normal (fan_out), bias 0.
Parameters for 1000 classes: 21,797,688 / 25,557,048 / 44,549,193.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..nn import FoldTime
from ._common import SPIKE_GAIN, NeuronFactory, PaperWSConv2d, finish, kaiming_fan_out_, neuron_or_default

__all__ = ["SpikingNFResNet", "nf_resnet34", "nf_resnet50", "nf_resnet101"]


def _ws(cin: int, cout: int, k: int, stride: int = 1) -> PaperWSConv2d:
    return PaperWSConv2d(cin, cout, k, stride, k // 2, bias=True, gain=True)


class _NFBlock(nn.Module):
    """Shared forward: the pre-activation spikes s feed the branch and a projection shortcut."""

    def _residual(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sn1(x / self.beta) * SPIKE_GAIN
        shortcut = self.downsample(s) if self.downsample is not None else x
        return self._residual(s) * self.skipinit_gain * self.alpha + shortcut

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta:.4f}"


class NFBasicBlock(_NFBlock):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, alpha: float, beta: float, neuron: NeuronFactory):
        super().__init__()
        cout = width * self.expansion
        self.alpha, self.beta = alpha, beta
        self.conv1 = _ws(cin, width, 3, stride)
        self.conv2 = _ws(width, cout, 3)
        self.sn1 = neuron()
        self.sn2 = neuron()
        self.downsample = _ws(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None
        self.skipinit_gain = nn.Parameter(torch.zeros(()))

    def _residual(self, s):
        return self.conv2(self.sn2(self.conv1(s)) * SPIKE_GAIN)


class NFBottleneck(_NFBlock):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, alpha: float, beta: float, neuron: NeuronFactory):
        super().__init__()
        cout = width * self.expansion
        self.alpha, self.beta = alpha, beta
        self.conv1 = _ws(cin, width, 1)
        self.conv2 = _ws(width, width, 3, stride)  # the stride sits on the 3x3 conv
        self.conv3 = _ws(width, cout, 1)
        self.sn1 = neuron()
        self.sn2 = neuron()
        self.sn3 = neuron()
        self.downsample = _ws(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None
        self.skipinit_gain = nn.Parameter(torch.zeros(()))

    def _residual(self, s):
        out = self.sn2(self.conv1(s)) * SPIKE_GAIN
        return self.conv3(self.sn3(self.conv2(out)) * SPIKE_GAIN)


class SpikingNFResNet(nn.Module):
    """x: [B, C, H, W] per step or [T, B, C, H, W]; logits [B, classes] or [T, B, classes].

    block: NFBasicBlock or NFBottleneck; layers: blocks per stage; alpha: the residual scale (0.2);
    width: channels of the first stage (64 in the paper).

    Example:
        >>> net = nf_resnet34(num_classes=1000, step_mode="m")
        >>> net(torch.randn(1, 1, 3, 64, 64)).shape
        torch.Size([1, 1, 1000])
    """

    def __init__(self, block, layers: Sequence[int], num_classes: int = 1000, neuron: Optional[NeuronFactory] = None,
                 step_mode: str = "s", alpha: float = 0.2, in_channels: int = 3, width: int = 64,
                 pack_spike_inputs: bool = False, recompute: bool = False):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {layers!r}")
        neuron = neuron_or_default(neuron)
        self.stem = _ws(in_channels, width, 7, 2)
        self.stem_pool = FoldTime(nn.AvgPool2d(3, 2, 1))
        cin = width
        expected_var = 1.0  # carried across stages, as in the official code
        stages = []
        for i, n in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                b = block(cin, planes, stride, alpha, expected_var**0.5, neuron)
                blocks.append(b)
                cin = planes * block.expansion
                # a projection shortcut starts a fresh unit-variance signal
                expected_var = (1.0 if b.downsample is not None else expected_var) + alpha**2
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.pool = FoldTime(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.fc = FoldTime(nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kaiming_fan_out_(m)
        nn.init.zeros_(self.fc.module.weight)  # the bias keeps PyTorch's default, as in the official code
        finish(self, step_mode, pack_spike_inputs, recompute)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem_pool(self.stem(x)))
        return self.fc(self.pool(out))


def nf_resnet34(num_classes: int = 1000, neuron: Optional[NeuronFactory] = None, step_mode: str = "s", **kwargs):
    """NF-ResNet-34 (basic blocks [3, 4, 6, 3]); kwargs: alpha, in_channels, width, pack_spike_inputs,
    recompute (accepted; a normaliser-free network has no batch norm to recompute)."""
    return SpikingNFResNet(NFBasicBlock, [3, 4, 6, 3], num_classes, neuron, step_mode, **kwargs)


def nf_resnet50(num_classes: int = 1000, neuron: Optional[NeuronFactory] = None, step_mode: str = "s", **kwargs):
    """NF-ResNet-50 (bottlenecks [3, 4, 6, 3]); kwargs as nf_resnet34."""
    return SpikingNFResNet(NFBottleneck, [3, 4, 6, 3], num_classes, neuron, step_mode, **kwargs)


def nf_resnet101(num_classes: int = 1000, neuron: Optional[NeuronFactory] = None, step_mode: str = "s", **kwargs):
    """NF-ResNet-101 (bottlenecks [3, 4, 23, 3]); kwargs as nf_resnet34."""
    return SpikingNFResNet(NFBottleneck, [3, 4, 23, 3], num_classes, neuron, step_mode, **kwargs)
