"""sltt_kernels: fused spiking-neuron kernels for fast, memory-efficient SNN training (BPTT and SLTT).

    >>> import torch, sltt_kernels
    >>> x = torch.randn(6, 32, 256, requires_grad=True)      # [T, ...]
    >>> spikes, v_last = sltt_kernels.lif_multistep(x, surrogate="rect", grad="sltt")
    >>> spikes.sum().backward()

See README.md for the backends and docs/design.md for the design.
"""

from . import reference, surrogate
from ._backend import available_backends, select_backend
from . import neurons  # noqa: E402  (registers the neuron models: sltt_kernels/neurons/)
from .neurons import FUNCTIONS as _FUNCTIONS

# every model's public functions: lif_multistep, lif_step, if_multistep, ... (sltt_kernels/neurons/)
globals().update(_FUNCTIONS)
from . import nn, models, training  # noqa: E402  (after the ops they use)
from . import counters  # noqa: E402,F401  (op-counter formulas for torch's and SpikingJelly's counters)
from .nn import replace_neurons

__version__ = "0.1.0"

__all__ = list(_FUNCTIONS) + [
    "available_backends",
    "select_backend",
    "replace_neurons",
    "reference",
    "surrogate",
    "nn",
    "models",
    "training",
]
