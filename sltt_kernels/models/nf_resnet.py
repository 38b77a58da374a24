"""Normaliser-free spiking ResNet-34/50/101 for ImageNet: scaled weight-standardised convs, and
residual branches scaled as in NF-ResNets (x / beta into the branch, alpha on its output, with
beta the expected standard deviation of the signal, reset at each stage's first block)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import FoldTime, ScaledWSConv2d
from ._common import NeuronFactory, finish, neuron_or_default

__all__ = ["SpikingNFResNet", "nf_resnet34", "nf_resnet50", "nf_resnet101"]


class NFBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, alpha, beta, neuron):
        super().__init__()
        cout = width * self.expansion
        self.alpha, self.beta = alpha, beta
        self.sn1 = neuron()
        self.conv1 = ScaledWSConv2d(cin, width, 3, stride, 1)
        self.sn2 = neuron()
        self.conv2 = ScaledWSConv2d(width, cout, 3, 1, 1)
        self.shortcut = ScaledWSConv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        pre = self.sn1(x / self.beta)
        shortcut = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv2(self.sn2(self.conv1(pre)))
        return out * self.alpha + shortcut


class NFBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, alpha, beta, neuron):
        super().__init__()
        cout = width * self.expansion
        self.alpha, self.beta = alpha, beta
        self.sn1 = neuron()
        self.conv1 = ScaledWSConv2d(cin, width, 1)
        self.sn2 = neuron()
        self.conv2 = ScaledWSConv2d(width, width, 3, stride, 1)
        self.sn3 = neuron()
        self.conv3 = ScaledWSConv2d(width, cout, 1)
        self.shortcut = ScaledWSConv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        pre = self.sn1(x / self.beta)
        shortcut = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv3(self.sn3(self.conv2(self.sn2(self.conv1(pre)))))
        return out * self.alpha + shortcut


class SpikingNFResNet(nn.Module):
    """x: [B, 3, H, W] per step or [T, B, 3, H, W]; logits [B, classes] or [T, B, classes].

    Example:
        >>> net = nf_resnet34(num_classes=1000, step_mode="m")
        >>> net(torch.randn(1, 1, 3, 64, 64)).shape
        torch.Size([1, 1, 1000])
    """

    def __init__(self, block, layers, num_classes: int = 1000, neuron: Optional[NeuronFactory] = None,
                 step_mode: str = "s", alpha: float = 0.2):
        super().__init__()
        neuron = neuron_or_default(neuron)
        self.stem = ScaledWSConv2d(3, 64, 7, 2, 3)
        self.stem_sn = neuron()
        self.stem_pool = FoldTime(nn.MaxPool2d(3, 2, 1))
        cin = 64
        stages = []
        for i, n in enumerate(layers):
            width = 64 * 2**i
            expected_var = 1.0
            blocks = []
            for j in range(n):
                beta = expected_var**0.5
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1, alpha, beta, neuron))
                cin = width * block.expansion
                # the first block's projection shortcut starts a fresh unit-variance signal
                expected_var = (1.0 if j == 0 else expected_var) + alpha**2
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.head_sn = neuron()
        self.pool = FoldTime(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.fc = FoldTime(nn.Linear(cin, num_classes))
        finish(self, step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem_pool(self.stem_sn(self.stem(x)))
        out = self.layers(out)
        return self.fc(self.pool(self.head_sn(out)))


def nf_resnet34(num_classes: int = 1000, neuron: Optional[NeuronFactory] = None, step_mode: str = "s"):
    return SpikingNFResNet(NFBasicBlock, [3, 4, 6, 3], num_classes, neuron, step_mode)


def nf_resnet50(num_classes: int = 1000, neuron: Optional[NeuronFactory] = None, step_mode: str = "s"):
    return SpikingNFResNet(NFBottleneck, [3, 4, 6, 3], num_classes, neuron, step_mode)


def nf_resnet101(num_classes: int = 1000, neuron: Optional[NeuronFactory] = None, step_mode: str = "s"):
    return SpikingNFResNet(NFBottleneck, [3, 4, 23, 3], num_classes, neuron, step_mode)
