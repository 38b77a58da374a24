"""Spike pack/unpack in Triton: the implementations of torch.ops.sltt_kernels.triton_spike_*.

The schemas, fake kernels and autograd are the native ops' (_registration.py, pack section); the
math is csrc/spike_pack.h's, on the elements' bit patterns (int16/int32/int64 by element size).
Pack: one program per BLOCK elements writes its BLOCK // 32 words and the OR and the AND of its
nonzero patterns; a single-program kernel merges those into the scale (no host synchronisation).
Unpack: one program per BLOCK elements. Imported on first use.
"""

from __future__ import annotations

import triton
import triton.language as tl
import torch

from .. import _registration
from . import kernels as K
from .ops import _device_ctx

BLOCK = 1024  # a multiple of 32: words never straddle programs


@triton.jit
def _or(a, b):
    return a | b


@triton.jit
def _and(a, b):
    return a & b


@triton.jit
def _spike_pack_kernel(x_ptr, bits_ptr, any_ptr, all_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    u = tl.load(x_ptr + offs, mask=live, other=0)  # x viewed as integers: the bit patterns
    nonzero = u != 0
    words = K._pack_bits(nonzero, BLOCK)
    w_offs = pid.to(tl.int64) * (BLOCK // 32) + tl.arange(0, BLOCK // 32)
    tl.store(bits_ptr + w_offs, words, mask=w_offs * 32 < n)
    tl.store(any_ptr + pid, tl.reduce(u, 0, _or))
    tl.store(all_ptr + pid, tl.reduce(tl.where(nonzero, u, tl.full(u.shape, -1, u.dtype)), 0, _and))


@triton.jit
def _spike_scale_kernel(any_ptr, all_ptr, programs, one, nan, scale_ptr, CHUNK: tl.constexpr):
    """scale_pattern of spike_pack.h over the per-program patterns, in one program."""
    acc_any = tl.zeros([CHUNK], dtype=one.dtype)
    acc_all = tl.full([CHUNK], -1, dtype=one.dtype)
    for start in range(0, programs, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        live = offs < programs
        acc_any = acc_any | tl.load(any_ptr + offs, mask=live, other=0)
        acc_all = acc_all & tl.load(all_ptr + offs, mask=live, other=-1)
    any_ = tl.reduce(acc_any, 0, _or)
    all_ = tl.reduce(acc_all, 0, _and)
    tl.store(scale_ptr, tl.where(any_ == 0, one, tl.where(any_ == all_, any_, nan)))


@triton.jit
def _spike_unpack_kernel(bits_ptr, scale_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    words = tl.load(bits_ptr + offs // 32, mask=live, other=0)
    bit = (words >> (offs % 32).to(tl.int32)) & 1
    s = tl.load(scale_ptr)  # the scale's pattern: out is written as integers too
    out = tl.where(bit != 0, s, 0).to(s.dtype)
    tl.store(out_ptr + offs, out, mask=live)


_PATTERN = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _pattern(value: float, dtype: torch.dtype) -> int:
    """The bit pattern of `value` in `dtype`, as the signed integer Triton passes."""
    return torch.tensor(value, dtype=dtype).view(_PATTERN[dtype.itemsize]).item()


def triton_spike_pack(x: torch.Tensor):
    """x: any shape, float16/bfloat16/float32/float64 -> (bits int32 [ceil(N/32)], scale [] in x.dtype).

    Same result as the native spike_pack (csrc/spike_pack.h). Example (TRITON_INTERPRET=1 on CPU):
        >>> bits, scale = triton_spike_pack(torch.tensor([0.0, 1.0, 1.0]))
        >>> bits, scale
        (tensor([6], dtype=torch.int32), tensor(1.))
    """
    _registration.check_pack(x)
    pdt = _PATTERN[x.dtype.itemsize]
    u = x.contiguous().view(pdt)
    n = u.numel()
    programs = max(triton.cdiv(n, BLOCK), 1)
    bits = torch.empty((n + 31) // 32, dtype=torch.int32, device=x.device)
    any_ = torch.zeros(programs, dtype=pdt, device=x.device)  # an empty program's patterns
    all_ = torch.full((programs,), -1, dtype=pdt, device=x.device)
    scale = torch.empty((), dtype=pdt, device=x.device)
    with _device_ctx(x):
        if n > 0:
            _spike_pack_kernel[(programs,)](u, bits, any_, all_, n, BLOCK=BLOCK)
        _spike_scale_kernel[(1,)](any_, all_, programs, _pattern(1.0, x.dtype), _pattern(float("nan"), x.dtype),
                                  scale, CHUNK=256)
    return bits, scale.view(x.dtype)


def triton_spike_unpack(bits: torch.Tensor, scale: torch.Tensor, shape) -> torch.Tensor:
    """bits int32 [ceil(N/32)], scale [] -> tensor of `shape` (N elements) in scale.dtype:
    bit ? scale : +0.0. The inverse of triton_spike_pack for a two-valued input.

    Example:
        >>> triton_spike_unpack(torch.tensor([6], dtype=torch.int32), torch.tensor(1.0), [3])
        tensor([0., 1., 1.])
    """
    n = _registration.check_unpack(bits, scale, shape)
    pdt = _PATTERN[scale.dtype.itemsize]
    out = torch.empty(list(shape), dtype=pdt, device=bits.device)
    if n > 0:
        with _device_ctx(bits):
            _spike_unpack_kernel[(triton.cdiv(n, BLOCK),)](bits.contiguous(), scale.contiguous().view(pdt), out, n,
                                                           BLOCK=BLOCK)
    return out.view(scale.dtype)


def _register():
    devices = ("cpu", "cuda")
    torch.library.register_kernel("sltt_kernels::triton_spike_pack", devices, triton_spike_pack,
                                  lib=_registration._LIB)
    torch.library.register_kernel("sltt_kernels::triton_spike_unpack", devices, triton_spike_unpack,
                                  lib=_registration._LIB)


_register()
