"""Spiking-network building blocks on the fused kernels: neurons, layers, whole-network helpers
(`functional`), and swapping the neurons of an existing model (`replace_neurons`)."""

from . import functional
from .functional import detach_net, reset_net, set_step_mode
from .layers import FoldTime, ScaledWSConv2d, StepBatchNorm2d, TimeDropout
from . import leaky as _leaky
from . import neurons as _neurons
from .memory_module import MemoryModule
from .neurons import BaseNode

# Every neuron module (a BaseNode subclass defined in neurons.py or leaky.py: LIFNode, IFNode, ...,
# Leaky, SnnTorchLeaky) is exported, so a new model's module needs no line here.
NEURON_MODULES = {name: obj for module in (_neurons, _leaky) for name, obj in vars(module).items()
                  if isinstance(obj, type) and issubclass(obj, BaseNode) and obj.__module__ == module.__name__}
globals().update(NEURON_MODULES)
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
from .norm_neuron import batch_norm_neuron, fuse_norm_neurons
from .replace import replace_neurons

__all__ = list(NEURON_MODULES) + [
    "MemoryModule",
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
    "batch_norm_neuron",
    "fuse_norm_neurons",
]
