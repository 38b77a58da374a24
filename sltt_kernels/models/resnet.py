"""Pre-activation spiking ResNet-18/34 for CIFAR-10/100, as the official SLTT code builds it.

Block: s = LIF(BN(x)); out = conv2(dropout(LIF(BN(conv1(s))))) + shortcut(s), where the
shortcut is the identity or a 1x1 conv, both applied to the pre-activation spikes s (not to x).
Block convs and shortcuts have a bias; the stem conv has none. Head: BN -> LIF -> average pool
-> flatten -> dropout -> Linear. Convs: Kaiming normal (fan_out); BN 1/0; Linear bias 0.
ResNet-18 on CIFAR-10 has 11,176,906 parameters, ResNet-34 21,288,778.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..nn import FoldTime, StepBatchNorm2d, TimeDropout, batch_norm_neuron
from ..nn.recompute import ResidualAdd
from ._common import NeuronFactory, bn_unit_, finish, kaiming_fan_out_, neuron_or_default

__all__ = ["SpikingPreActResNet", "spiking_resnet18", "spiking_resnet34"]


def _conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> FoldTime:
    return FoldTime(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias))


class PreActBlock(nn.Module):
    """BN -> LIF (= s) -> conv3x3 -> BN -> LIF -> dropout -> conv3x3, plus shortcut(s).

    x: [B, cin, H, W] ('s') or [T, B, cin, H, W] ('m') -> [.., cout, H/stride, W/stride].
    """

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronFactory, dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        self.bn1 = StepBatchNorm2d(cin)
        self.sn1 = neuron()
        self.conv1 = _conv(cin, cout, 3, stride, bias)
        self.bn2 = StepBatchNorm2d(cout)
        self.sn2 = neuron()
        # the official block always holds a dropout (p may be 0); one mask for all steps
        self.dropout = TimeDropout(dropout)
        self.conv2 = _conv(cout, cout, 3, 1, bias)
        self.shortcut = _conv(cin, cout, 1, stride, bias) if (stride != 1 or cin != cout) else None
        # out + shortcut(s), as a module: with recompute=True the next block's bn1 rebuilds this sum
        # in backward (from conv2's and the shortcut's 1-bit inputs) instead of saving it
        self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sn(bn(x)), in one kernel pass under fuse_norm (nn.batch_norm_neuron)
        s = batch_norm_neuron(self.bn1, self.sn1, x)  # x is read by bn1 alone: the residual stream is s, not x
        out = self.conv2(self.dropout(batch_norm_neuron(self.bn2, self.sn2, self.conv1(s))))
        return self.add(out, self.shortcut(s) if self.shortcut is not None else s)


class SpikingPreActResNet(nn.Module):
    """Spiking pre-activation ResNet for 32x32 images.

    x: [B, C, H, W] per step (step_mode='s', online) or [T, B, C, H, W] (step_mode='m');
    returns logits [B, classes] or [T, B, classes]. `neuron` builds each spiking neuron
    (default: PaperLIFNode). `dropout`: the rate of the dropout in each block and before the
    classifier (official default 0). `bias=False` drops the block convs' biases (a variant; the
    official blocks have them). `width`: channels of the first stage (64 in the paper).
    `pack_spike_inputs=True`: the convs save their spike inputs as 1 bit per element;
    `recompute=True` (with it): no batch norm saves its input, which the convs rebuild in backward
    (sltt_kernels.nn.pack_spike_inputs; exact, see its docstring for what a GPU needs).
    `fuse_norm=True`: each batch norm's apply runs inside the neuron kernel after it
    (sltt_kernels.nn.fuse_norm_neurons; single-step mode; rounds differently from aten's batch norm
    in the last bits, docs/design.md, section 4.3).

    Example:
        >>> net = spiking_resnet18(num_classes=10, step_mode="m")
        >>> net(torch.randn(2, 4, 3, 32, 32)).shape
        torch.Size([2, 4, 10])
    """

    def __init__(self, num_blocks: Sequence[int], num_classes: int = 10, in_channels: int = 3,
                 neuron: Optional[NeuronFactory] = None, step_mode: str = "s", width: int = 64,
                 dropout: float = 0.0, bias: bool = True, pack_spike_inputs: bool = False, recompute: bool = False,
                 fuse_norm: bool = False):
        super().__init__()
        if len(num_blocks) != 4 or any(int(n) < 1 for n in num_blocks):
            raise ValueError(f"num_blocks must be 4 positive block counts, got {num_blocks!r}")
        neuron = neuron_or_default(neuron)
        self.conv1 = _conv(in_channels, width, 3, 1, bias=False)  # the stem conv has no bias
        stages = []
        cin = width
        for i, n in enumerate(num_blocks):
            cout = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(cin, cout, 2 if (j == 0 and i > 0) else 1, neuron, dropout, bias))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.bn = StepBatchNorm2d(cin)
        self.sn = neuron()
        # the official AvgPool2d(4) on the 4x4 map of a 32x32 input; adaptive so that other
        # input sizes also work (identical at 32x32)
        self.pool = FoldTime(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.dropout = TimeDropout(dropout)
        self.fc = FoldTime(nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kaiming_fan_out_(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_unit_(m)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)  # the weight keeps PyTorch's default, as in the official code
        finish(self, step_mode, pack_spike_inputs, recompute, fuse_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(x))
        return self.fc(self.dropout(self.pool(batch_norm_neuron(self.bn, self.sn, out))))


def spiking_resnet18(num_classes: int = 10, neuron: Optional[NeuronFactory] = None, step_mode: str = "s",
                     in_channels: int = 3, dropout: float = 0.0, **kwargs) -> SpikingPreActResNet:
    """Pre-activation spiking ResNet-18 ([2, 2, 2, 2] blocks); kwargs: width, bias, pack_spike_inputs, recompute,
    fuse_norm."""
    return SpikingPreActResNet([2, 2, 2, 2], num_classes, in_channels, neuron, step_mode, dropout=dropout, **kwargs)


def spiking_resnet34(num_classes: int = 10, neuron: Optional[NeuronFactory] = None, step_mode: str = "s",
                     in_channels: int = 3, dropout: float = 0.0, **kwargs) -> SpikingPreActResNet:
    """Pre-activation spiking ResNet-34 ([3, 4, 6, 3] blocks); kwargs: width, bias, pack_spike_inputs, recompute,
    fuse_norm."""
    return SpikingPreActResNet([3, 4, 6, 3], num_classes, in_channels, neuron, step_mode, dropout=dropout, **kwargs)
