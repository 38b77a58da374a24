"""Pre-activation spiking ResNet-18/34 for CIFAR-10/100 (the SLTT paper's ResNet)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import FoldTime, StepBatchNorm2d
from ._common import NeuronFactory, finish, neuron_or_default

__all__ = ["SpikingPreActResNet", "spiking_resnet18", "spiking_resnet34"]


def _conv3x3(cin, cout, stride=1):
    return FoldTime(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False))


class PreActBlock(nn.Module):
    """BN -> LIF -> conv3x3 -> BN -> LIF -> conv3x3, plus the (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronFactory):
        super().__init__()
        self.bn1 = StepBatchNorm2d(cin)
        self.sn1 = neuron()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = StepBatchNorm2d(cout)
        self.sn2 = neuron()
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = FoldTime(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sn1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.sn2(self.bn2(out)))
        return out + shortcut


class SpikingPreActResNet(nn.Module):
    """Spiking pre-activation ResNet for 32x32 images.

    x: [B, C, H, W] per step (step_mode='s', online) or [T, B, C, H, W] (step_mode='m');
    returns logits [B, classes] or [T, B, classes]. `neuron` builds each spiking neuron.

    Example:
        >>> net = spiking_resnet18(num_classes=10, step_mode="m")
        >>> net(torch.randn(2, 4, 3, 32, 32)).shape
        torch.Size([2, 4, 10])
    """

    def __init__(self, num_blocks, num_classes: int = 10, in_channels: int = 3,
                 neuron: Optional[NeuronFactory] = None, step_mode: str = "s", width: int = 64):
        super().__init__()
        neuron = neuron_or_default(neuron)
        self.conv1 = _conv3x3(in_channels, width)
        stages = []
        cin = width
        for i, n in enumerate(num_blocks):
            cout = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(cin, cout, 2 if (j == 0 and i > 0) else 1, neuron))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.bn = StepBatchNorm2d(cin)
        self.sn = neuron()
        self.pool = FoldTime(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.fc = FoldTime(nn.Linear(cin, num_classes))
        finish(self, step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(x))
        return self.fc(self.pool(self.sn(self.bn(out))))


def spiking_resnet18(num_classes: int = 10, neuron: Optional[NeuronFactory] = None, step_mode: str = "s",
                     in_channels: int = 3) -> SpikingPreActResNet:
    return SpikingPreActResNet([2, 2, 2, 2], num_classes, in_channels, neuron, step_mode)


def spiking_resnet34(num_classes: int = 10, neuron: Optional[NeuronFactory] = None, step_mode: str = "s",
                     in_channels: int = 3) -> SpikingPreActResNet:
    return SpikingPreActResNet([3, 4, 6, 3], num_classes, in_channels, neuron, step_mode)
