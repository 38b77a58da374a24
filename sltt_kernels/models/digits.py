"""A small spiking network for scikit-learn's 8x8 digits (the quick-run and test data set)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import FoldTime
from ._common import NeuronFactory, finish, neuron_or_default

__all__ = ["DigitsSNN", "digits_snn"]


class DigitsSNN(nn.Module):
    """Flatten -> Linear(64, hidden) -> LIF -> Linear(hidden, hidden) -> LIF -> Linear(hidden, classes).

    x: [B, 1, 8, 8] per step or [T, B, 1, 8, 8]; logits [B, classes] or [T, B, classes].

    Example:
        >>> net = digits_snn(step_mode="m")
        >>> net(torch.rand(4, 2, 1, 8, 8)).shape
        torch.Size([4, 2, 10])
    """

    def __init__(self, num_classes: int = 10, hidden: int = 256, neuron: Optional[NeuronFactory] = None,
                 step_mode: str = "s"):
        super().__init__()
        neuron = neuron_or_default(neuron)
        self.fc1 = FoldTime(nn.Sequential(nn.Flatten(), nn.Linear(64, hidden)))
        self.sn1 = neuron()
        self.fc2 = FoldTime(nn.Linear(hidden, hidden))
        self.sn2 = neuron()
        self.fc3 = FoldTime(nn.Linear(hidden, num_classes))
        finish(self, step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.sn2(self.fc2(self.sn1(self.fc1(x)))))


def digits_snn(num_classes: int = 10, neuron: Optional[NeuronFactory] = None, step_mode: str = "s",
               hidden: int = 256) -> DigitsSNN:
    return DigitsSNN(num_classes, hidden, neuron, step_mode)
