"""Spiking VGG-11 for DVS data (DVS-Gesture, DVS-CIFAR10): with BN, or with scaled weight
standardisation (WS); a dropout after each neuron."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import FoldTime, ScaledWSConv2d, StepBatchNorm2d, TimeDropout
from ._common import NeuronFactory, finish, neuron_or_default

__all__ = ["SpikingVGG11", "vgg11_bn", "vgg11_ws"]

CFG11 = [64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class SpikingVGG11(nn.Module):
    """x: [B, 2, H, W] per step or [T, B, 2, H, W]; logits [B, classes] or [T, B, classes].

    Example:
        >>> net = vgg11_bn(num_classes=11, step_mode="m")
        >>> net(torch.randn(2, 1, 2, 48, 48)).shape
        torch.Size([2, 1, 11])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 2, norm: str = "bn",
                 neuron: Optional[NeuronFactory] = None, dropout: float = 0.0, step_mode: str = "s"):
        super().__init__()
        if norm not in ("bn", "ws"):
            raise ValueError(f"norm must be 'bn' or 'ws', got {norm!r}")
        neuron = neuron_or_default(neuron)
        layers = []
        cin = in_channels
        for v in CFG11:
            if v == "M":
                layers.append(FoldTime(nn.AvgPool2d(2)))
                continue
            if norm == "bn":
                layers += [FoldTime(nn.Conv2d(cin, v, 3, padding=1, bias=False)), StepBatchNorm2d(v)]
            else:
                layers.append(ScaledWSConv2d(cin, v, 3, padding=1, bias=True))
            layers.append(neuron())
            if dropout > 0:
                layers.append(TimeDropout(dropout))
            cin = v
        self.features = nn.Sequential(*layers)
        self.pool = FoldTime(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.fc = FoldTime(nn.Linear(cin, num_classes))
        finish(self, step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))


def vgg11_bn(num_classes: int = 10, in_channels: int = 2, neuron: Optional[NeuronFactory] = None,
             dropout: float = 0.0, step_mode: str = "s") -> SpikingVGG11:
    return SpikingVGG11(num_classes, in_channels, "bn", neuron, dropout, step_mode)


def vgg11_ws(num_classes: int = 10, in_channels: int = 2, neuron: Optional[NeuronFactory] = None,
             dropout: float = 0.0, step_mode: str = "s") -> SpikingVGG11:
    return SpikingVGG11(num_classes, in_channels, "ws", neuron, dropout, step_mode)
