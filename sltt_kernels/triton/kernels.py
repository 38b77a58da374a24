"""The fused LIF kernels in Triton: the algorithm of the CUDA kernels (DESIGN.md sections 2-3).

One program takes BLOCK consecutive neurons and walks the T steps with the state in registers.
Masks use the C++ kernels' layout: int32 [T, ceil(N/32)], bit j of word w = neuron 32w + j.
The neuron constants come from a small tensor in the state dtype (Triton passes Python floats
as float32, which would round the float64 kernels' constants).

Under TRITON_INTERPRET=1 (CPU tensors), tl.fma is not fused (the interpreter computes a*b + c
in the operands' dtype). For float32 state the kernels then emulate the fused multiply-add in
float64, which rounds like a true fma except in cases rarer than 1 in 2^29; that keeps spikes and
masks bit-identical to the C++ kernels'.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# Codes shared with the C++ enums (csrc/lif_math.h).
SAVE_CODES = {"none": 0, "sg": 1, "sg_spike": 2, "h": 3}
SURROGATE_CODES = {"rect": 0, "triangle": 1, "sigmoid": 2, "atan": 3}
# Order of the constants in the params tensor.
PARAM_NAMES = ("lam", "c", "theta", "v_r", "alpha", "alpha2", "half_width", "inv_width")


@triton.jit
def _fma(a, b, c, EMULATE: tl.constexpr):
    if EMULATE:
        return (a.to(tl.float64) * b.to(tl.float64) + c.to(tl.float64)).to(c.dtype)
    else:
        return tl.fma(a, b, c)


@triton.jit
def _rect_window(h, theta, half_width):
    d = h - theta
    return (d < half_width) & (-d < half_width)


@triton.jit
def _surrogate(h, theta, alpha, alpha2, half_width, inv_width, SURROGATE: tl.constexpr, EMULATE: tl.constexpr):
    d = h - theta
    if SURROGATE == 0:  # rect
        g = tl.where(_rect_window(h, theta, half_width), inv_width, 0.0)
    elif SURROGATE == 1:  # triangle
        g = _fma(tl.zeros_like(d) - alpha2, tl.maximum(d, -d), tl.zeros_like(d) + alpha, EMULATE)
        g = tl.where(g > 0, g, 0.0)
    elif SURROGATE == 2:  # sigmoid
        sig = 1.0 / (1.0 + tl.exp(-alpha * d))
        g = alpha * sig * (1.0 - sig)
    else:  # atan
        k = 1.5707963267948966 * alpha * d
        g = (alpha * 0.5) / _fma(k, k, tl.zeros_like(k) + 1.0, EMULATE)
    return g.to(h.dtype)


@triton.jit
def _pack_bits(flags, BLOCK: tl.constexpr):
    """bool [BLOCK] -> int32 [BLOCK // 32] words, bit j of word w = flag 32 w + j."""
    bits = tl.reshape(flags.to(tl.int32), [BLOCK // 32, 32])
    shifts = tl.arange(0, 32)
    return tl.sum(bits << shifts[None, :], axis=1)  # distinct bits: the sum is the OR


@triton.jit
def _lif_fwd_kernel(
    x_ptr, v0_ptr, spikes_ptr, v_last_ptr, mask_ptr, h_ptr, params_ptr, T, N,
    HAS_V0: tl.constexpr, HARD_RESET: tl.constexpr, SAVE: tl.constexpr, EMULATE_FMA: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    live = offs < N
    W = (N + 31) // 32
    words = pid * (BLOCK // 32) + tl.arange(0, BLOCK // 32)
    word_live = words < W
    lam = tl.load(params_ptr + 0)
    c = tl.load(params_ptr + 1)
    theta = tl.load(params_ptr + 2)
    v_r = tl.load(params_ptr + 3)
    half_width = tl.load(params_ptr + 6)
    zero = tl.zeros([BLOCK], dtype=lam.dtype)
    if HAS_V0:
        v = tl.load(v0_ptr + offs, mask=live, other=0.0).to(lam.dtype)
    else:
        v = zero + v_r
    for t in range(T):
        row = t * N
        # no `other`: dead lanes are never stored, and the interpreter mis-casts a bf16 `other`
        x = tl.load(x_ptr + row + offs, mask=live).to(lam.dtype)
        h = _fma(zero + lam, v - v_r, _fma(zero + c, x, zero + v_r, EMULATE_FMA), EMULATE_FMA)
        spike = h >= theta
        # via float32: the interpreter cannot cast bool to bfloat16
        spike_value = tl.where(spike, 1.0, 0.0)
        tl.store(spikes_ptr + row + offs, spike_value.to(spikes_ptr.dtype.element_ty), mask=live)
        if SAVE == 3:
            tl.store(h_ptr + row + offs, h, mask=live)
        if SAVE == 1 or SAVE == 2:
            sg_words = _pack_bits(_rect_window(h, theta, half_width) & live, BLOCK)
            tl.store(mask_ptr + t * W + words, sg_words, mask=word_live)
        if SAVE == 2:
            spike_words = _pack_bits(spike & live, BLOCK)
            tl.store(mask_ptr + (T + t) * W + words, spike_words, mask=word_live)
        if HARD_RESET:
            v = tl.where(spike, v_r, h)
        else:
            v = tl.where(spike, h - theta, h)
    tl.store(v_last_ptr + offs, v, mask=live)


@triton.jit
def _lif_bwd_kernel(
    gs_ptr, gv_last_ptr, mask_ptr, h_ptr, gx_ptr, gv0_ptr, params_ptr, T, N,
    HAS_GV_LAST: tl.constexpr, WRITE_GV0: tl.constexpr, HARD_RESET: tl.constexpr, DETACH: tl.constexpr,
    SURROGATE: tl.constexpr, SAVE: tl.constexpr, BPTT: tl.constexpr, EMULATE_FMA: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    live = offs < N
    W = (N + 31) // 32
    word_of = offs // 32
    bit_of = (offs % 32).to(tl.int32)
    lam = tl.load(params_ptr + 0)
    c = tl.load(params_ptr + 1)
    theta = tl.load(params_ptr + 2)
    v_r = tl.load(params_ptr + 3)
    alpha = tl.load(params_ptr + 4)
    alpha2 = tl.load(params_ptr + 5)
    half_width = tl.load(params_ptr + 6)
    inv_width = tl.load(params_ptr + 7)
    zero = tl.zeros([BLOCK], dtype=lam.dtype)
    gv = zero
    if BPTT and HAS_GV_LAST:
        gv = tl.load(gv_last_ptr + offs, mask=live, other=0.0).to(lam.dtype)
    for step in range(T):
        t = T - 1 - step
        row = t * N
        h = zero
        spike = zero > 0
        if SAVE == 3:
            h = tl.load(h_ptr + row + offs, mask=live, other=0.0)
            sg = _surrogate(h, theta, alpha, alpha2, half_width, inv_width, SURROGATE, EMULATE_FMA)
            spike = h >= theta
        else:
            sg_word = tl.load(mask_ptr + t * W + word_of, mask=live, other=0)
            sg = tl.where(((sg_word >> bit_of) & 1) != 0, inv_width, 0.0).to(lam.dtype)
            if SAVE == 2:
                spike_word = tl.load(mask_ptr + (T + t) * W + word_of, mask=live, other=0)
                spike = ((spike_word >> bit_of) & 1) != 0
        gh = tl.load(gs_ptr + row + offs, mask=live).to(lam.dtype) * sg
        if BPTT:
            if HARD_RESET:
                keep = tl.where(spike, 0.0, 1.0).to(lam.dtype)
                if DETACH:
                    dv_dh = keep
                else:
                    dv_dh = _fma(-(h - v_r), sg, keep, EMULATE_FMA)
            else:
                if DETACH:
                    dv_dh = zero + 1.0
                else:
                    dv_dh = _fma(-theta + zero, sg, zero + 1.0, EMULATE_FMA)
            gh = _fma(gv, dv_dh, gh, EMULATE_FMA)
            gv = lam * gh
        tl.store(gx_ptr + row + offs, (c * gh).to(gx_ptr.dtype.element_ty), mask=live)
    if BPTT and WRITE_GV0:
        tl.store(gv0_ptr + offs, gv, mask=live)


def _tuned(kernel):
    """Autotuned over block size and warps on a GPU (keyed on N and T); the plain kernel under
    the interpreter, which cannot run more than one config. Both kernels read none of their
    outputs, so re-running them while tuning is harmless."""
    if INTERPRET:
        return kernel
    configs = [
        triton.Config({"BLOCK": block}, num_warps=warps)
        for block, warps in ((256, 2), (512, 4), (1024, 4), (1024, 8), (2048, 8))
    ]
    return triton.autotune(configs=configs, key=["N", "T"])(kernel)


TUNED = not INTERPRET
lif_fwd = _tuned(_lif_fwd_kernel)
lif_bwd = _tuned(_lif_bwd_kernel)
