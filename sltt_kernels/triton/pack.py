"""Spike pack/unpack in Triton: the implementations of torch.ops.sltt_kernels.triton_spike_*.

The schemas, fake kernels and autograd are the native ops' (_registration.py, pack section); the
math is csrc/spike_pack.h's. Pack: one program per BLOCK elements writes its BLOCK // 32 words and
the range of its nonzero values (min, max, and a flag for NaN or -0.0); the few per-program
ranges are then merged into the scale by torch ops on the device (no host synchronisation).
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
def _spike_pack_kernel(x_ptr, bits_ptr, lo_ptr, hi_ptr, bad_ptr, n, WIDE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    x = tl.load(x_ptr + offs, mask=live, other=0.0)
    # the range type of spike_pack.h: float for 16- and 32-bit inputs (exact), double for double
    if WIDE:
        v = x.to(tl.float64)
        negative = v.to(tl.int64, bitcast=True) < 0
    else:
        v = x.to(tl.float32)
        negative = v.to(tl.int32, bitcast=True) < 0
    zero = v == 0.0
    nan = v != v
    bad = live & (nan | (zero & negative))
    counts = live & (zero == 0) & (nan == 0)
    inf = float("inf")
    lo = tl.min(tl.where(counts, v, inf), axis=0)
    hi = tl.max(tl.where(counts, v, -inf), axis=0)
    words = K._pack_bits(live & (zero == 0), BLOCK)
    w_offs = pid.to(tl.int64) * (BLOCK // 32) + tl.arange(0, BLOCK // 32)
    tl.store(bits_ptr + w_offs, words, mask=w_offs * 32 < n)
    tl.store(lo_ptr + pid, lo)
    tl.store(hi_ptr + pid, hi)
    tl.store(bad_ptr + pid, tl.max(bad.to(tl.int32), axis=0))


@triton.jit
def _spike_unpack_kernel(bits_ptr, scale_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    words = tl.load(bits_ptr + offs // 32, mask=live, other=0)
    bit = (words >> (offs % 32).to(tl.int32)) & 1
    s = tl.load(scale_ptr)
    out = tl.where(bit != 0, s, tl.zeros_like(s))
    tl.store(out_ptr + offs, out, mask=live)


def triton_spike_pack(x: torch.Tensor):
    """x: any shape, float16/bfloat16/float32/float64 -> (bits int32 [ceil(N/32)], scale [] in x.dtype).

    Same result as the native spike_pack (csrc/spike_pack.h). Example (TRITON_INTERPRET=1 on CPU):
        >>> bits, scale = triton_spike_pack(torch.tensor([0.0, 1.0, 1.0]))
        >>> bits, scale
        (tensor([6], dtype=torch.int32), tensor(1.))
    """
    _registration.check_pack(x)
    x = x.contiguous()
    n = x.numel()
    programs = max(triton.cdiv(n, BLOCK), 1)
    wide = x.dtype == torch.float64
    rdt = torch.float64 if wide else torch.float32
    bits = torch.empty((n + 31) // 32, dtype=torch.int32, device=x.device)
    lo = torch.full((programs,), float("inf"), dtype=rdt, device=x.device)
    hi = torch.full((programs,), float("-inf"), dtype=rdt, device=x.device)
    bad = torch.zeros(programs, dtype=torch.int32, device=x.device)
    if n > 0:
        with _device_ctx(x):
            _spike_pack_kernel[(programs,)](x, bits, lo, hi, bad, n, WIDE=wide, BLOCK=BLOCK)
    lo, hi = lo.min(), hi.max()
    # range_scale of spike_pack.h: NaN unless two-valued, 1 for all zeros, else the value
    scale = torch.where((bad.max() > 0) | (lo < hi), torch.full_like(lo, float("nan")),
                        torch.where(lo > hi, torch.ones_like(lo), lo))
    return bits, scale.to(x.dtype)


def triton_spike_unpack(bits: torch.Tensor, scale: torch.Tensor, shape) -> torch.Tensor:
    """bits int32 [ceil(N/32)], scale [] -> tensor of `shape` (N elements) in scale.dtype:
    bit ? scale : +0.0. The inverse of triton_spike_pack for a two-valued input.

    Example:
        >>> triton_spike_unpack(torch.tensor([6], dtype=torch.int32), torch.tensor(1.0), [3])
        tensor([0., 1., 1.])
    """
    n = _registration.check_unpack(bits, scale, shape)
    out = torch.empty(list(shape), dtype=scale.dtype, device=bits.device)
    if n > 0:
        with _device_ctx(bits):
            _spike_unpack_kernel[(triton.cdiv(n, BLOCK),)](bits.contiguous(), scale, out, n, BLOCK=BLOCK)
    return out


def _register():
    devices = ("cpu", "cuda")
    torch.library.register_kernel("sltt_kernels::triton_spike_pack", devices, triton_spike_pack,
                                  lib=_registration._LIB)
    torch.library.register_kernel("sltt_kernels::triton_spike_unpack", devices, triton_spike_unpack,
                                  lib=_registration._LIB)


_register()
