"""Helpers shared by the model definitions: the default neuron, the constant gain and the
weight-standardised convolution of the official code, its initialisation, and the final touches
(step mode, optional packed spike inputs)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from .. import nn as snn
from ..nn import PaperLIFNode, ScaledWSConv2d, set_step_mode
from ..nn.layers import Scale  # noqa: F401  (a layer, so it lives in nn; the models use it from here)

NeuronFactory = Callable[[], nn.Module]

# The gain after each spiking neuron in the weight-standardised networks (supplementary H.1):
# for unit-Gaussian input the Heaviside output has mean ~0.5 and variance ~0.25 after the
# standardisation, and gamma ~ 2.74 (from OTTT) restores unit variance in the next layer.
SPIKE_GAIN = 2.74


def default_neuron() -> nn.Module:
    """The paper's neuron (PaperLIFNode)."""
    return PaperLIFNode()


def neuron_or_default(neuron: Optional[NeuronFactory]) -> NeuronFactory:
    return default_neuron if neuron is None else neuron




class PaperWSConv2d(ScaledWSConv2d):
    """ScaledWSConv2d with the official code's variance: torch.var's default, the unbiased
    (N - 1) estimate over the fan-in. W_hat = gain * (W - mean) / sqrt(var_unbiased * fan_in + eps).

    x: [B, C, H, W] ('s') or [T, B, C, H, W] ('m').

    Example:
        >>> conv = PaperWSConv2d(2, 8, 3, padding=1)
        >>> conv(torch.randn(4, 2, 16, 16)).shape
        torch.Size([4, 8, 16, 16])
    """

    def __init__(self, *args, unbiased: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.unbiased = unbiased

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        fan_in = w[0].numel()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=self.unbiased)
        w = (w - mean) * torch.rsqrt(var * fan_in + self.eps)
        return w * self.gain if self.gain is not None else w


def kaiming_fan_out_(conv: nn.Conv2d) -> None:
    """The official initialisation of every convolution: Kaiming normal (fan_out, ReLU gain), bias 0."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def bn_unit_(bn: nn.BatchNorm2d) -> None:
    """BN weight 1, bias 0 (PyTorch's default too; set explicitly as the official code does)."""
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)


def finish(model: nn.Module, step_mode: str, pack_spike_inputs: bool = False, recompute: bool = False,
           fuse_norm: bool = False) -> nn.Module:
    """Puts every layer and neuron of a freshly built model in one step mode and, when asked,
    lets the layers that read spikes take them packed (sltt_kernels.nn.pack_spike_inputs),
    the batch norms after convs recompute their input in backward instead of saving it
    (recompute=True, which needs pack_spike_inputs=True), and the batch norms apply themselves
    inside the neuron after them (fuse_norm=True, sltt_kernels.nn.fuse_norm_neurons)."""
    if not isinstance(fuse_norm, bool):
        raise TypeError(f"fuse_norm must be a bool, got {type(fuse_norm).__name__}")
    if recompute and not pack_spike_inputs:
        raise ValueError("recompute=True needs pack_spike_inputs=True: the batch-norm inputs are recomputed from "
                         "the convs' packed inputs (build the model with pack_spike_inputs=True, recompute=True)")
    set_step_mode(model, step_mode)
    if pack_spike_inputs:
        pack = getattr(snn, "pack_spike_inputs", None)
        if pack is None:
            raise NotImplementedError(
                "pack_spike_inputs=True needs sltt_kernels.nn.pack_spike_inputs, which this version of "
                "sltt_kernels does not have yet; build the model with pack_spike_inputs=False")
        pack(model, recompute=recompute)  # in place: the constructors call this on self
    if fuse_norm:
        snn.fuse_norm_neurons(model)
    return model
