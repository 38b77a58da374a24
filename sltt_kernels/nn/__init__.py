"""Spiking-network building blocks on the fused kernels: neurons, layers, and swapping the
neurons of an existing model (`replace_neurons`)."""

from .layers import FoldTime, ScaledWSConv2d, StepBatchNorm2d, TimeDropout
from .neurons import LIFNode, OTTTLIFNode, PaperLIFNode, SLTTLIFNode, reset_net, set_step_mode
from .replace import replace_neurons

__all__ = [
    "LIFNode",
    "SLTTLIFNode",
    "PaperLIFNode",
    "OTTTLIFNode",
    "FoldTime",
    "StepBatchNorm2d",
    "ScaledWSConv2d",
    "TimeDropout",
    "set_step_mode",
    "reset_net",
    "replace_neurons",
]
