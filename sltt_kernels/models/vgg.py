"""Spiking VGG-11 for DVS data (DVS-Gesture, DVS-CIFAR10), as the official SLTT code builds it,
and its weight-standardised variant VGG-11 (WS) of supplementary H.1.

Five stages, each conv(s) then AvgPool2d(2):  [64] [128] [256, 256] [512, 512] [512, 512].
Each conv: Conv3x3 (bias) -> BN (per step) -> LIF -> dropout (one mask for all steps).
Head: AdaptiveAvgPool2d(7, 7) -> flatten -> Linear(512 * 49, classes).
Init: convs Kaiming normal (fan_out), bias 0; BN 1/0; Linear weight N(0, 0.01), bias 0.
VGG-11 (WS): Conv -> ScaledWS (learnable gain) -> LIF -> x2.74 -> dropout, no BN.
Parameters (VGG-11 with BN): 9,476,298 for 2 channels and 10 classes, 9,501,387 for 11 classes
(the count does not depend on the input size).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import FoldTime, StepBatchNorm2d, TimeDropout
from ._common import (SPIKE_GAIN, NeuronFactory, PaperWSConv2d, Scale, bn_unit_, finish, kaiming_fan_out_,
                      neuron_or_default)

__all__ = ["SpikingVGG11", "vgg11_bn", "vgg11_ws", "VGG11_STAGES"]

VGG11_STAGES = ((64,), (128,), (256, 256), (512, 512), (512, 512))


class SpikingVGG11(nn.Module):
    """x: [B, C, H, W] per step or [T, B, C, H, W]; logits [B, classes] or [T, B, classes].

    norm: 'bn' (the official network) or 'ws' (VGG-11 (WS): scaled weight standardisation and
    the x2.74 gain after each neuron). dropout: rate after each neuron (paper: 0.4 DVS-Gesture,
    0.3 DVS-CIFAR10; default 0). bias=False drops the conv biases (a variant). width: channels of
    the first conv (64 in the paper); every stage scales with it.

    Example:
        >>> net = vgg11_bn(num_classes=11, step_mode="m")
        >>> net(torch.randn(2, 1, 2, 48, 48)).shape
        torch.Size([2, 1, 11])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 2, norm: str = "bn",
                 neuron: Optional[NeuronFactory] = None, dropout: float = 0.0, step_mode: str = "s",
                 bias: bool = True, width: int = 64, pack_spike_inputs: bool = False,
                 recompute: bool = False):
        super().__init__()
        if norm not in ("bn", "ws"):
            raise ValueError(f"norm must be 'bn' or 'ws', got {norm!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        neuron = neuron_or_default(neuron)
        layers = []
        cin = in_channels
        for stage in VGG11_STAGES:
            for cout in stage:
                cout = cout * width // 64
                if norm == "bn":
                    layers += [FoldTime(nn.Conv2d(cin, cout, 3, padding=1, bias=bias)), StepBatchNorm2d(cout),
                               neuron()]
                else:
                    layers += [PaperWSConv2d(cin, cout, 3, padding=1, bias=bias), neuron(), Scale(SPIKE_GAIN)]
                layers.append(TimeDropout(dropout))
                cin = cout
            layers.append(FoldTime(nn.AvgPool2d(2)))
        self.features = nn.Sequential(*layers)
        self.pool = FoldTime(nn.Sequential(nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten()))
        self.fc = FoldTime(nn.Linear(cin * 49, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kaiming_fan_out_(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_unit_(m)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        finish(self, step_mode, pack_spike_inputs, recompute)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))


def vgg11_bn(num_classes: int = 10, in_channels: int = 2, neuron: Optional[NeuronFactory] = None,
             dropout: float = 0.0, step_mode: str = "s", **kwargs) -> SpikingVGG11:
    """The official spiking VGG-11 with per-step BN; kwargs: bias, width, pack_spike_inputs, recompute."""
    return SpikingVGG11(num_classes, in_channels, "bn", neuron, dropout, step_mode, **kwargs)


def vgg11_ws(num_classes: int = 10, in_channels: int = 2, neuron: Optional[NeuronFactory] = None,
             dropout: float = 0.0, step_mode: str = "s", **kwargs) -> SpikingVGG11:
    """VGG-11 (WS) of supplementary H.1 (no official code); kwargs: bias, width, pack_spike_inputs,
    recompute (accepted; no batch norm to recompute)."""
    return SpikingVGG11(num_classes, in_channels, "ws", neuron, dropout, step_mode, **kwargs)
