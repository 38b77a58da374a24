"""Spiking-network building blocks on the fused kernels: neurons, layers, whole-network helpers
(`functional`), and swapping the neurons of an existing model (`replace_neurons`)."""

from . import functional
from .functional import detach_net, reset_net, set_step_mode
from .layers import FoldTime, ScaledWSConv2d, StepBatchNorm2d, TimeDropout
from .leaky import Leaky
from .memory_module import MemoryModule
from .neurons import (
    BaseNode,
    IFNode,
    LIFNode,
    OTTTLIFNode,
    PaperLIFNode,
    ParametricLIFNode,
    SLTTLIFNode,
)
from .packed import (
    PackedConv1d,
    PackedConv2d,
    PackedConv3d,
    PackedLinear,
    PackReport,
    pack_spike_inputs,
    spike_pack_calls,
)
from .recompute import ResidualAdd
from .replace import replace_neurons

__all__ = [
    "BaseNode",
    "MemoryModule",
    "LIFNode",
    "IFNode",
    "ParametricLIFNode",
    "SLTTLIFNode",
    "PaperLIFNode",
    "OTTTLIFNode",
    "Leaky",
    "FoldTime",
    "StepBatchNorm2d",
    "ScaledWSConv2d",
    "TimeDropout",
    "functional",
    "set_step_mode",
    "reset_net",
    "detach_net",
    "replace_neurons",
    "pack_spike_inputs",
    "PackReport",
    "PackedConv1d",
    "PackedConv2d",
    "PackedConv3d",
    "PackedLinear",
    "spike_pack_calls",
    "ResidualAdd",
]
