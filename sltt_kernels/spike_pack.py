"""Spike packing: store a two-valued tensor ({+0.0, s}, e.g. spikes) as 1 bit per element plus
its scale s, and restore it exactly. The public functions pick a backend per call, as ops.py does
for the neuron ops; the pure-PyTorch versions here are the oracle of every pack kernel.

    spike_pack(x)                    -> (bits int32 [ceil(x.numel() / 32)], scale [] in x.dtype)
    spike_unpack(bits, scale, shape) -> tensor of `shape` in scale.dtype: bit ? scale : +0.0

The schemas, fake kernels and autograd are in _registration.py (pack section); the native
kernels in csrc/ (spike_pack.h), the Triton ones in triton/pack.py (registered on first use).
The layers that save their spike input packed are in nn/packed_layers.py.
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn.functional as F

from . import _registration
from ._backend import select_backend

__all__ = ["spike_pack", "spike_unpack", "reference_pack", "reference_unpack", "pack_ops"]

# the integer type whose values are a float type's bit patterns, by element size
_PATTERN = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def reference_pack(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """spike_pack in plain torch ops (no compiled extension): csrc/spike_pack.h's math on the
    elements' bit patterns. Same arguments and results as spike_pack."""
    _registration.check_pack(x)
    u = x.contiguous().view(_PATTERN[x.dtype.itemsize]).reshape(-1)
    n = u.numel()
    nonzero = u != 0
    words = (n + 31) // 32
    padded = F.pad(nonzero.to(torch.int64), (0, words * 32 - n)).reshape(words, 32)
    packed = (padded << torch.arange(32, device=x.device)).sum(-1)
    bits = torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
    values = u[nonzero]
    if values.numel() == 0:
        scale = torch.ones((), dtype=x.dtype, device=x.device)
    elif bool((values == values[0]).all()):
        scale = values[0].view(x.dtype)
    else:
        scale = torch.full((), float("nan"), dtype=x.dtype, device=x.device)
    return bits, scale


def reference_unpack(bits: torch.Tensor, scale: torch.Tensor, shape) -> torch.Tensor:
    """spike_unpack in plain torch ops. Same arguments and result as spike_unpack."""
    n = _registration.check_unpack(bits, scale, shape)
    flags = ((bits.to(torch.int64).unsqueeze(-1) >> torch.arange(32, device=bits.device)) & 1).reshape(-1)[:n]
    pattern = scale.reshape(1).view(_PATTERN[scale.dtype.itemsize])
    return torch.where(flags.bool(), pattern, torch.zeros_like(pattern)).view(scale.dtype).reshape(list(shape))


def pack_ops(device_tensor: torch.Tensor, backend: str = "auto") -> Tuple[Callable, Callable]:
    """(pack, unpack) of the backend that runs on this tensor's device ('auto', 'cpu', 'cuda',
    'triton' or 'reference'; see _backend.select_backend). The Triton kernels register on first use."""
    chosen = select_backend(device_tensor, backend)
    if chosen == "reference":
        return reference_pack, reference_unpack
    if chosen == "triton":
        from .triton import pack as _triton_pack  # noqa: F401  (registers the Triton kernels on first use)
    triton = chosen == "triton"
    return _registration.op("spike_pack", triton), _registration.op("spike_unpack", triton)


def spike_pack(x: torch.Tensor, backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Packs x (any shape, float16/bfloat16/float32/float64) into (bits, scale).

    bits: int32 [ceil(x.numel() / 32)], bit j of word w = (x.flatten()[32 w + j] is not +0.0).
    scale: a 0-dim tensor in x.dtype: s when every element of x is, bit for bit, +0.0 or s (1 when
    all are +0.0), NaN when x is not two-valued (then spike_unpack does not give x back).

    Example:
        >>> bits, scale = spike_pack(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        >>> bits, scale
        (tensor([6], dtype=torch.int32), tensor(1.))
    """
    return pack_ops(x, backend)[0](x)


def spike_unpack(bits: torch.Tensor, scale: torch.Tensor, shape, backend: str = "auto") -> torch.Tensor:
    """The inverse of spike_pack: a contiguous tensor of `shape` in scale.dtype, bit ? scale : +0.0.

    Example:
        >>> spike_unpack(*spike_pack(torch.tensor([0.0, 2.5, 2.5])), [3])
        tensor([0.0000, 2.5000, 2.5000])
    """
    return pack_ops(bits, backend)[1](bits, scale, list(shape))
