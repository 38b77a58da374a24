"""1-bit spike inputs, in one import: the names of the three modules that do the work.

    sltt_kernels/spike_pack.py      spike_pack / spike_unpack (a backend per call) and their oracle
    sltt_kernels/nn/packed_layers.py the layers that save a spike input packed (autograd, Packed*)
    sltt_kernels/nn/spike_inputs.py  which layers of a model read spikes (torch.fx): pack_spike_inputs

Code written against this module (and pickles of packed layers made before the split) keeps
working: every name it had is here.

    >>> net = sltt_kernels.models.spiking_resnet18()
    >>> print(sltt_kernels.nn.packed.pack_spike_inputs(net))
"""

from __future__ import annotations

from ..spike_pack import pack_ops as _ops  # noqa: F401  (the name tests and older code use)
from ..spike_pack import spike_pack, spike_unpack
from . import packed_layers as _layers
from .packed_layers import (
    PackedConv1d,
    PackedConv2d,
    PackedConv3d,
    PackedLinear,
    spike_input_conv,
    spike_input_linear,
)
from .packed_layers import packed_class as _packed_class  # noqa: F401  (as _ops)
from .spike_inputs import PackReport, pack_spike_inputs, spike_pack_calls

__all__ = [
    "spike_pack",
    "spike_unpack",
    "spike_input_conv",
    "spike_input_linear",
    "PackedConv1d",
    "PackedConv2d",
    "PackedConv3d",
    "PackedLinear",
    "PackReport",
    "pack_spike_inputs",
    "spike_pack_calls",
]


def __getattr__(name: str):
    # packed subclasses of other conv classes, pickled under this module's name before the split
    if name.startswith(_layers.DYNAMIC_PREFIX):
        return getattr(_layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
