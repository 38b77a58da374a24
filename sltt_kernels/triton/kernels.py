"""The fused neuron kernels in Triton: the algorithm of the CUDA kernels (docs/design.md, 2-3).

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
from triton.language.extra import libdevice

from .. import _config
from .. import surrogate as _surrogate

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
# x * in_scale + in_shift with its product and sum rounded apart on a GPU (_affine_input says how);
# the interpreter computes the two operations apart already
EXACT_AFFINE = tl.constexpr(not INTERPRET)

# Codes shared with the C++ enums (csrc's lists), from the registries: the kernels branch on them
# by name (a constexpr global is what a jit function may read).
SAVE_CODES = {name: i for i, name in enumerate(_config.SAVE_KINDS)}
SURROGATE_CODES = {name: cls.code for name, cls in _surrogate.SURROGATES.items()}
RESET_CODES = {name: i for i, name in enumerate(_config.RESETS)}
NEURON_CODES = {name: model.code for name, model in _config.MODELS.items()}

LIF = tl.constexpr(NEURON_CODES["lif"])
IF = tl.constexpr(NEURON_CODES["if"])
LEAKY = tl.constexpr(NEURON_CODES["leaky"])
SOFT = tl.constexpr(RESET_CODES["soft"])  # leaky: subtract
HARD = tl.constexpr(RESET_CODES["hard"])  # leaky: zero
RESET_NONE = tl.constexpr(RESET_CODES["none"])  # leaky only
RECT = tl.constexpr(SURROGATE_CODES["rect"])
TRIANGLE = tl.constexpr(SURROGATE_CODES["triangle"])
SIGMOID = tl.constexpr(SURROGATE_CODES["sigmoid"])
ATAN = tl.constexpr(SURROGATE_CODES["atan"])
FAST_SIGMOID = tl.constexpr(SURROGATE_CODES["fast_sigmoid"])
SAVE_NONE = tl.constexpr(SAVE_CODES["none"])
SAVE_SG = tl.constexpr(SAVE_CODES["sg"])
SAVE_SG_SPIKE = tl.constexpr(SAVE_CODES["sg_spike"])
SAVE_H = tl.constexpr(SAVE_CODES["h"])
SAVE_SG_RESET = tl.constexpr(SAVE_CODES["sg_reset"])
SAVE_H_V0 = tl.constexpr(SAVE_CODES["h_v0"])
SAVE_H16 = tl.constexpr(SAVE_CODES["h16"])
SAVE_SPIKE_STATE = tl.constexpr(SAVE_CODES["spike_state"])
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
    return _surrogate_d(h - theta, alpha, alpha2, half_width, inv_width, SURROGATE, EMULATE).to(h.dtype)


@triton.jit
def _surrogate_d(d, alpha, alpha2, half_width, inv_width, SURROGATE: tl.constexpr, EMULATE: tl.constexpr):
    """sg(d) for d = h - theta."""
    if SURROGATE == RECT:
        g = tl.where((d < half_width) & (-d < half_width), inv_width, 0.0)
    elif SURROGATE == TRIANGLE:
        g = _fma(tl.zeros_like(d) - alpha2, tl.abs(d), tl.zeros_like(d) + alpha, EMULATE)
        g = tl.where(g < 0, 0.0, g)  # keeps a NaN (docs/design.md, section 2.4)
    elif SURROGATE == SIGMOID:
        sig = 1.0 / (1.0 + tl.exp(-alpha * d))
        g = alpha * sig * (1.0 - sig)
    elif SURROGATE == ATAN:
        k = 1.5707963267948966 * alpha * d
        g = (alpha * 0.5) / _fma(k, k, tl.zeros_like(k) + 1.0, EMULATE)
    else:
        tl.static_assert(SURROGATE == FAST_SIGMOID, "a surrogate code without a Triton branch")
        r = 1.0 / _fma(tl.zeros_like(d) + alpha, tl.abs(d), tl.zeros_like(d) + 1.0, EMULATE)  # slope in alpha
        g = r * r
    return g.to(d.dtype)


@triton.jit
def _store_d16(d, OUT_DTYPE: tl.constexpr):
    """d (float32) in a 16-bit dtype, rounded to nearest even, with a nonzero d that would round
    to zero kept as the smallest subnormal of its sign, and a finite d that would round to +-inf
    kept as the largest finite value of its sign (save 'h16'; csrc Store16). bfloat16 is
    rounded by hand: the interpreter's float32 -> bfloat16 cast truncates."""
    if OUT_DTYPE == tl.bfloat16:
        bits = d.to(tl.int32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        nan_bits = (bits >> 16) | 0x40
        q = tl.where(d != d, nan_bits, rounded).to(tl.int16).to(tl.bfloat16, bitcast=True)
        max_bits: tl.constexpr = 0x7F7F  # the largest finite bfloat16
    else:
        q = d.to(tl.float16)
        max_bits: tl.constexpr = 0x7BFF  # 65504
    tiny = tl.full(d.shape, 1, tl.int16).to(OUT_DTYPE, bitcast=True)
    neg_tiny = tl.full(d.shape, -32767, tl.int16).to(OUT_DTYPE, bitcast=True)  # 0x8001
    q32 = q.to(tl.float32)
    lost = (q32 == 0.0) & (d != 0.0)
    q = tl.where(lost, tl.where(d > 0.0, tiny, neg_tiny), q)
    # an inf d (or NaN) stays what it is; a finite one must not become inf: the backward's
    # h - v_r times a zero surrogate would turn it into a NaN. Beyond float32's largest finite
    # value lies only inf.
    top = tl.full(d.shape, max_bits, tl.int16).to(OUT_DTYPE, bitcast=True)
    neg_top = tl.full(d.shape, max_bits - 0x8000, tl.int16).to(OUT_DTYPE, bitcast=True)  # sign bit set
    overflow = (tl.abs(q32) > 3.4028234663852886e38) & (tl.abs(d) <= 3.4028234663852886e38)
    return tl.where(overflow, tl.where(d > 0.0, top, neg_top), q)


@triton.jit
def _pack_bits(flags, BLOCK: tl.constexpr):
    """bool [BLOCK] -> int32 [BLOCK // 32] words, bit j of word w = flag 32 w + j."""
    bits = tl.reshape(flags.to(tl.int32), [BLOCK // 32, 32])
    shifts = tl.arange(0, 32)
    return tl.sum(bits << shifts[None, :], axis=1)  # distinct bits: the sum is the OR


# ---------------------------------------------------------------------------------------------
# The neuron models (csrc/neurons/*.h, sltt_kernels/neurons/*.py), selected by the NEURON
# constexpr (LIF, IF, LEAKY) and the RESET constexpr (SOFT, HARD, RESET_NONE) above.


@triton.jit
def _reset_flag(v, theta, NEURON: tl.constexpr):
    """The flag a charge reads from the previous state: the leaky model's [v > theta]."""
    if NEURON == LEAKY:
        return v > theta
    else:
        return v > v  # all False, NaN included


@triton.jit
def _charge(v, x, lam, c, theta, v_r, zero, NEURON: tl.constexpr, RESET: tl.constexpr, EMULATE: tl.constexpr):
    if NEURON == LIF:  # fma(lam, v - v_r, fma(c, x, v_r)), the C++ kernels' order
        h = _fma(zero + lam, v - v_r, _fma(zero + c, x, zero + v_r, EMULATE), EMULATE)
    elif NEURON == IF:
        h = v + x
    else:  # leaky: the previous step's reset, detached
        tl.static_assert(NEURON == LEAKY, "a neuron code without a Triton branch")
        r = v > theta
        if RESET == SOFT:
            h = _fma(zero + lam, v, x, EMULATE) - tl.where(r, theta, 0.0).to(v.dtype)
        elif RESET == HARD:
            h = _fma(zero + lam, tl.where(r, 0.0, v).to(v.dtype), x, EMULATE)
        else:
            h = _fma(zero + lam, v, x, EMULATE)
    return h


@triton.jit
def _fire(h, theta, NEURON: tl.constexpr):
    if NEURON == LEAKY:
        return h > theta
    else:
        return h >= theta


@triton.jit
def _fire_d(d, NEURON: tl.constexpr):
    """The same decision from d = h - theta."""
    if NEURON == LEAKY:
        return d > 0.0
    else:
        return d >= 0.0


@triton.jit
def _reset(h, spike, theta, v_r, NEURON: tl.constexpr, RESET: tl.constexpr):
    if NEURON == LEAKY:
        return h  # applied at the next charge
    elif RESET == HARD:
        return tl.where(spike, v_r, h)
    else:
        return tl.where(spike, h - theta, h)


@triton.jit
def _dv_dh(h, spike, sg, theta, v_r, zero, NEURON: tl.constexpr, RESET: tl.constexpr, DETACH: tl.constexpr,
           EMULATE: tl.constexpr):
    if NEURON == LEAKY:
        return zero + 1.0
    elif RESET == HARD:
        keep = tl.where(spike, 0.0, 1.0).to(zero.dtype)
        if DETACH:
            return keep
        else:
            return _fma(-(h - v_r), sg, keep, EMULATE)
    else:
        if DETACH:
            return zero + 1.0
        else:
            return _fma(-theta + zero, sg, zero + 1.0, EMULATE)


@triton.jit
def _dcharge_dv(reset_flag, lam, zero, NEURON: tl.constexpr, RESET: tl.constexpr):
    if NEURON == IF:
        return zero + 1.0
    elif NEURON == LEAKY and RESET == HARD:
        return tl.where(reset_flag, 0.0, lam).to(zero.dtype)
    else:
        return zero + lam


@triton.jit
def _dcharge_dk(v_prev, h, c, v_r, reset_flag, NEURON: tl.constexpr, RESET: tl.constexpr, C_IS_K: tl.constexpr):
    """dh/dk. LIF (k = 1/tau): (h - v_prev) / k with c = k (0 at k = 0, where dL/dw = dL/dk k (1 - k)
    is 0), else v_r - v_prev. Leaky (k = beta): v_prev, 0 where the zero reset applied."""
    if NEURON == LEAKY:
        if RESET == HARD:
            return tl.where(reset_flag, 0.0, v_prev).to(v_prev.dtype)
        else:
            return v_prev
    elif C_IS_K:
        return tl.where(c == 0.0, 0.0, (h - v_prev) / tl.where(c == 0.0, 1.0, c)).to(v_prev.dtype)
    else:
        return v_r - v_prev


@triton.jit
def _threshold_grad(gs, gv, gh, h, sg, spike, reset_flag, theta, v_r, NEURON: tl.constexpr, RESET: tl.constexpr,
                    DETACH: tl.constexpr):
    """dL/dtheta of one element-step (csrc/neurons/neurons.h, threshold_grad): through the spike
    (ds/dtheta = -sg), through the reset with the spike held, and through the leaky charge."""
    if NEURON == LEAKY:
        through_spike = gs
        direct = gh * tl.where(reset_flag, -1.0, 0.0).to(gh.dtype) if RESET == SOFT else gh * 0.0
    else:
        if DETACH:
            through_spike = gs
        elif RESET == HARD:
            through_spike = gs + gv * (v_r - h)
        else:
            through_spike = gs + gv * (-theta)
        if RESET == SOFT:
            direct = gv * tl.where(spike, -1.0, 0.0).to(gv.dtype)
        else:
            direct = gv * 0.0
    return -sg * through_spike + direct


@triton.jit
def _params(params_ptr, k_ptr, theta_ptr, offs, live, HAS_K: tl.constexpr, K_PER_NEURON: tl.constexpr,
            HAS_THETA: tl.constexpr, THETA_PER_NEURON: tl.constexpr, C_IS_K: tl.constexpr, NEURON: tl.constexpr):
    """lam, c and theta: the constants, or k (LIF: 1/tau, lam = 1 - k, c = k or 1; leaky: beta = lam)
    and the threshold read on the device, one value or one per neuron."""
    lam = tl.load(params_ptr + 0)
    c = tl.load(params_ptr + 1)
    theta = tl.load(params_ptr + 2)
    if HAS_THETA:
        if THETA_PER_NEURON:
            theta = tl.load(theta_ptr + offs, mask=live, other=1.0).to(lam.dtype)
        else:
            theta = tl.load(theta_ptr).to(lam.dtype)
    if HAS_K:
        if K_PER_NEURON:
            k = tl.load(k_ptr + offs, mask=live, other=0.5).to(lam.dtype)
        else:
            k = tl.load(k_ptr).to(lam.dtype)
        if NEURON == LEAKY:
            lam = k
        else:
            lam = 1.0 - k
            if C_IS_K:
                c = k
            else:
                c = lam * 0.0 + 1.0
    return lam, c, theta


@triton.jit
def _channel_values(ptr, offs, live, inner, count, stride, dtype):
    """in_scale or in_shift of each neuron: the element ((n // inner) % count) * stride of ptr
    (_config.channel_values)."""
    return tl.load(ptr + ((offs // inner) % count) * stride, mask=live, other=0.0).to(dtype)


@triton.jit
def _affine_input(x, scale, shift, EXACT: tl.constexpr):
    """x * scale + shift rounded after the product and after the sum, as the reference and aten's
    batch norm (a GPU compile would otherwise contract it into one fma; the interpreter does not).
    float32: PTX's mul.rn / add.rn, whose .rn forbids the contraction; libdevice's float32 versions
    compile to the .ftz forms, which would flush a subnormal product to zero. float64: libdevice."""
    if EXACT:
        if x.dtype == tl.float64:
            return libdevice.add_rn(libdevice.mul_rn(x, scale), shift)
        else:
            return tl.inline_asm_elementwise("{ .reg .f32 p; mul.rn.f32 p, $1, $2; add.rn.f32 $0, p, $3; }",
                                             "=r,r,r,r", [x, scale, shift], dtype=tl.float32, is_pure=True,
                                             pack=1)
    else:
        return x * scale + shift


@triton.jit
def _lif_fwd_kernel(
    x_ptr, v0_ptr, k_ptr, theta_ptr, spikes_ptr, v_last_ptr, mask_ptr, h_ptr, params_ptr, T, N,
    scale_ptr, scale_inner, scale_count, scale_stride, shift_ptr, shift_inner, shift_count, shift_stride,
    NEURON: tl.constexpr, RESET: tl.constexpr, HAS_V0: tl.constexpr, HAS_K: tl.constexpr, K_PER_NEURON: tl.constexpr,
    HAS_THETA: tl.constexpr, THETA_PER_NEURON: tl.constexpr, C_IS_K: tl.constexpr,
    SAVE: tl.constexpr, EMULATE_FMA: tl.constexpr, AFFINE: tl.constexpr, BLOCK: tl.constexpr,
):
    # AFFINE: the input is x * in_scale + in_shift (a batch norm's apply, docs/design.md, section 4.3)
    # SAVE: one of the SAVE_* codes above (docs/design.md, section 3)
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    live = offs < N
    N64 = N.to(tl.int64)  # every offset in 64 bits: T * N may exceed 2^31
    W = (N64 + 31) // 32
    words = pid * (BLOCK // 32) + tl.arange(0, BLOCK // 32)
    word_live = words < W
    lam, c, theta = _params(params_ptr, k_ptr, theta_ptr, offs, live, HAS_K, K_PER_NEURON, HAS_THETA,
                            THETA_PER_NEURON, C_IS_K, NEURON)
    v_r = tl.load(params_ptr + 3)
    half_width = tl.load(params_ptr + 6)
    zero = tl.zeros([BLOCK], dtype=v_r.dtype)
    if HAS_V0:
        v = tl.load(v0_ptr + offs, mask=live, other=0.0).to(zero.dtype)
    else:
        v = zero + v_r
    if SAVE == SAVE_H_V0:
        tl.store(h_ptr + offs, v, mask=live)
    if AFFINE:
        in_scale = _channel_values(scale_ptr, offs, live, scale_inner, scale_count, scale_stride, zero.dtype)
        in_shift = _channel_values(shift_ptr, offs, live, shift_inner, shift_count, shift_stride, zero.dtype)
    for t in range(T):
        t64 = tl.full([], t, tl.int64)
        row = t64 * N64
        # no `other`: dead lanes are never stored, and the interpreter mis-casts a bf16 `other`
        x = tl.load(x_ptr + row + offs, mask=live).to(zero.dtype)
        if AFFINE:
            x = _affine_input(x, in_scale, in_shift, EXACT_AFFINE)
        reset_flag = _reset_flag(v, theta, NEURON)
        h = _charge(v, x, lam, c, theta, v_r, zero, NEURON, RESET, EMULATE_FMA)
        spike = _fire(h, theta, NEURON)
        # via float32: the interpreter cannot cast bool to bfloat16
        spike_value = tl.where(spike, 1.0, 0.0)
        tl.store(spikes_ptr + row + offs, spike_value.to(spikes_ptr.dtype.element_ty), mask=live)
        if SAVE == SAVE_H:
            tl.store(h_ptr + row + offs, h, mask=live)
        if SAVE == SAVE_H_V0:
            tl.store(h_ptr + row + N64 + offs, h, mask=live)
        if SAVE == SAVE_H16:
            tl.store(h_ptr + row + offs, _store_d16(h - theta, h_ptr.dtype.element_ty), mask=live)
        if SAVE == SAVE_SG or SAVE == SAVE_SG_SPIKE or SAVE == SAVE_SG_RESET:
            sg_words = _pack_bits(_rect_window(h, theta, half_width) & live, BLOCK)
            tl.store(mask_ptr + t64 * W + words, sg_words, mask=word_live)
        if SAVE == SAVE_SG_SPIKE:
            spike_words = _pack_bits(spike & live, BLOCK)
            tl.store(mask_ptr + (T + t64) * W + words, spike_words, mask=word_live)
        if SAVE == SAVE_SPIKE_STATE:  # its one plane holds s[t] (the backward reads v from the state)
            spike_words = _pack_bits(spike & live, BLOCK)
            tl.store(mask_ptr + t64 * W + words, spike_words, mask=word_live)
        if SAVE == SAVE_SG_RESET:
            reset_words = _pack_bits(reset_flag & live, BLOCK)
            tl.store(mask_ptr + (T + t64) * W + words, reset_words, mask=word_live)
        v = _reset(h, spike, theta, v_r, NEURON, RESET)
    tl.store(v_last_ptr + offs, v, mask=live)


@triton.jit
def _lif_bwd_kernel(
    gs_ptr, gv_last_ptr, mask_ptr, h_ptr, k_ptr, theta_ptr, gx_ptr, gv0_ptr, gk_ptr, gtheta_ptr, params_ptr, T, N,
    NEURON: tl.constexpr, RESET: tl.constexpr, DETACH: tl.constexpr, SURROGATE: tl.constexpr, SAVE: tl.constexpr,
    BPTT: tl.constexpr, HAS_GV_LAST: tl.constexpr, WRITE_GV0: tl.constexpr, HAS_K: tl.constexpr,
    K_PER_NEURON: tl.constexpr, HAS_THETA: tl.constexpr, THETA_PER_NEURON: tl.constexpr,
    C_IS_K: tl.constexpr, LEARN_K: tl.constexpr, LEARN_THETA: tl.constexpr, EMULATE_FMA: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    live = offs < N
    N64 = N.to(tl.int64)
    W = (N64 + 31) // 32
    word_of = offs // 32
    bit_of = (offs % 32).to(tl.int32)
    lam, c, theta = _params(params_ptr, k_ptr, theta_ptr, offs, live, HAS_K, K_PER_NEURON, HAS_THETA,
                            THETA_PER_NEURON, C_IS_K, NEURON)
    v_r = tl.load(params_ptr + 3)
    alpha = tl.load(params_ptr + 4)
    alpha2 = tl.load(params_ptr + 5)
    half_width = tl.load(params_ptr + 6)
    inv_width = tl.load(params_ptr + 7)
    zero = tl.zeros([BLOCK], dtype=v_r.dtype)
    gv = zero
    gk = zero
    gtheta = zero
    if BPTT and HAS_GV_LAST:
        gv = tl.load(gv_last_ptr + offs, mask=live, other=0.0).to(zero.dtype)
    for step in range(T):
        t64 = tl.full([], T - 1 - step, tl.int64)
        row = t64 * N64
        h = zero
        spike = zero > 0
        reset_flag = zero > 0
        if SAVE == SAVE_H or SAVE == SAVE_H_V0:
            h_row = row + N64 if SAVE == SAVE_H_V0 else row
            h = tl.load(h_ptr + h_row + offs, mask=live, other=0.0)
            sg = _surrogate(h, theta, alpha, alpha2, half_width, inv_width, SURROGATE, EMULATE_FMA)
            spike = _fire(h, theta, NEURON)
        elif SAVE == SAVE_H16:
            # the decisions from d itself, whose sign the 16-bit store keeps exactly
            d = tl.load(h_ptr + row + offs, mask=live, other=0.0).to(zero.dtype)
            h = d + theta
            sg = _surrogate_d(d, alpha, alpha2, half_width, inv_width, SURROGATE, EMULATE_FMA)
            spike = _fire_d(d, NEURON)
        elif SAVE == SAVE_SPIKE_STATE:
            # one step (T = 1): s[t] from the bits, and h_ptr is the step's output state v. The
            # forward's soft reset wrote v = h - theta where it fired and v = h where not, so d
            # below is the forward's own subtraction h - theta, to the bit
            spike_word = tl.load(mask_ptr + t64 * W + word_of, mask=live, other=0)
            spike = ((spike_word >> bit_of) & 1) != 0
            v_new = tl.load(h_ptr + offs, mask=live, other=0.0)
            d = tl.where(spike, v_new, v_new - theta)
            h = d + theta
            sg = _surrogate_d(d, alpha, alpha2, half_width, inv_width, SURROGATE, EMULATE_FMA)
        else:
            sg_word = tl.load(mask_ptr + t64 * W + word_of, mask=live, other=0)
            sg = tl.where(((sg_word >> bit_of) & 1) != 0, inv_width, 0.0).to(zero.dtype)
            if SAVE == SAVE_SG_SPIKE or SAVE == SAVE_SG_RESET:
                plane1 = tl.load(mask_ptr + (T + t64) * W + word_of, mask=live, other=0)
                flag = ((plane1 >> bit_of) & 1) != 0
                if SAVE == SAVE_SG_SPIKE:
                    spike = flag
                else:
                    reset_flag = flag
        v_prev = zero
        if SAVE == SAVE_H_V0:
            # the row before h[t] holds h[t-1] (or, at t = 0, the state v[-1] itself)
            before = tl.load(h_ptr + row + offs, mask=live, other=0.0)
            after_reset = _reset(before, _fire(before, theta, NEURON), theta, v_r, NEURON, RESET)
            v_prev = tl.where(t64 == 0, before, after_reset)
            reset_flag = _reset_flag(v_prev, theta, NEURON)
        gs = tl.load(gs_ptr + row + offs, mask=live).to(zero.dtype)
        gh = gs * sg
        gv_in = gv  # dL/dv[t] from the steps after t (0 for SLTT)
        if BPTT:
            gh = _fma(gv, _dv_dh(h, spike, sg, theta, v_r, zero, NEURON, RESET, DETACH, EMULATE_FMA), gh,
                      EMULATE_FMA)
            gv = _dcharge_dv(reset_flag, lam, zero, NEURON, RESET) * gh
        if LEARN_K:
            gk = _fma(gh, _dcharge_dk(v_prev, h, c, v_r, reset_flag, NEURON, RESET, C_IS_K), gk, EMULATE_FMA)
        if LEARN_THETA:
            gtheta += _threshold_grad(gs, gv_in, gh, h, sg, spike, reset_flag, theta, v_r, NEURON, RESET, DETACH)
        tl.store(gx_ptr + row + offs, (c * gh).to(gx_ptr.dtype.element_ty), mask=live)
    if BPTT and WRITE_GV0:
        tl.store(gv0_ptr + offs, gv, mask=live)
    if LEARN_K:
        tl.store(gk_ptr + offs, gk, mask=live)
    if LEARN_THETA:
        tl.store(gtheta_ptr + offs, gtheta, mask=live)


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


lif_fwd = _tuned(_lif_fwd_kernel)
lif_bwd = _tuned(_lif_bwd_kernel)
