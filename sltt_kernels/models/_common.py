"""Helpers shared by the model definitions."""

from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from ..nn import PaperLIFNode, set_step_mode

NeuronFactory = Callable[[], nn.Module]


def default_neuron() -> nn.Module:
    """The paper's neuron (PaperLIFNode)."""
    return PaperLIFNode()


def finish(model: nn.Module, step_mode: str) -> nn.Module:
    """Puts every layer and neuron of a freshly built model in one step mode."""
    return set_step_mode(model, step_mode)


def neuron_or_default(neuron: Optional[NeuronFactory]) -> NeuronFactory:
    return default_neuron if neuron is None else neuron
