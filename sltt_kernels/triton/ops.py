"""The Triton kernels as torch ops: torch.ops.sltt_kernels.triton_lif_{multistep,step}_{fwd,bwd}.

The same schemas and semantics as the compiled ops (csrc/ops.cpp), defined with
torch.library.custom_op, with the same fake implementations and autograd (sltt_kernels/ops.py),
so they pass opcheck and work under torch.compile(fullgraph=True).
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Tuple

import torch
import triton

from .. import ops as _ops
from .._config import FLOAT_DTYPES, state_dtype
from . import kernels as K

# Under the interpreter: programs of BLOCK neurons, a multiple of 32 so that mask words never
# straddle programs (on a GPU the autotuner picks among such blocks).
BLOCK = 1024
NUM_WARPS = 4

_params_cache: dict = {}


def _params(device, sdt, tau, v_threshold, v_reset, decay_input, surrogate_param) -> torch.Tensor:
    """The neuron constants in the state dtype, rounded once from double as the C++ ops do."""
    key = (device, sdt, tau, v_threshold, v_reset, decay_input, surrogate_param)
    p = _params_cache.get(key)
    if p is None:
        values = {
            "lam": 1.0 - 1.0 / tau,
            "c": 1.0 / tau if decay_input else 1.0,
            "theta": v_threshold,
            "v_r": 0.0 if v_reset is None else v_reset,
            "alpha": surrogate_param,
            "alpha2": surrogate_param * surrogate_param,
            "half_width": surrogate_param * 0.5,
            "inv_width": 1.0 / surrogate_param,
        }
        p = torch.tensor([values[k] for k in K.PARAM_NAMES], dtype=torch.float64).to(device=device, dtype=sdt)
        if len(_params_cache) > 256:
            _params_cache.clear()
        _params_cache[key] = p
    return p


def _check(x, name, tau, v_threshold, v_reset, surrogate, surrogate_param, save, grad, multistep=True):
    """The compiled ops' checks, with the same messages."""
    if x.dtype not in FLOAT_DTYPES:
        raise RuntimeError(f"sltt_kernels: {name} must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if multistep and (x.dim() < 1 or x.shape[0] < 1):
        raise RuntimeError(f"sltt_kernels: {name} must be [T, ...] with at least one time step, got {tuple(x.shape)}")
    if not (math.isfinite(tau) and tau >= 1.0):
        raise RuntimeError(f"sltt_kernels: tau must be a finite number >= 1, got {tau}")
    if not math.isfinite(v_threshold) or (v_reset is not None and not math.isfinite(v_reset)):
        raise RuntimeError("sltt_kernels: v_threshold and v_reset must be finite")
    if not (math.isfinite(surrogate_param) and surrogate_param > 0):
        raise RuntimeError(f"sltt_kernels: surrogate_param must be a finite number > 0, got {surrogate_param}")
    if surrogate not in K.SURROGATE_CODES:
        raise RuntimeError(f"sltt_kernels: surrogate must be one of {sorted(K.SURROGATE_CODES)}, got '{surrogate}'")
    if save not in K.SAVE_CODES:
        raise RuntimeError(f"sltt_kernels: save must be one of {sorted(K.SAVE_CODES)}, got '{save}'")
    if grad not in ("bptt", "sltt"):
        raise RuntimeError(f"sltt_kernels: grad must be 'bptt' or 'sltt', got '{grad}'")
    if save in ("sg", "sg_spike") and surrogate != "rect":
        raise RuntimeError(f"sltt_kernels: save='{save}' (a bit mask) needs the rect surrogate")
    if grad == "bptt" and save == "sg" and v_reset is not None:
        raise RuntimeError("sltt_kernels: BPTT with hard reset needs save='sg_spike' (detach_reset) or save='h'")


def _check_state(v, name, like, shape):
    if v.device != like.device:
        raise RuntimeError(f"sltt_kernels: {name} is on {v.device} but the input is on {like.device}")
    if v.dtype != state_dtype(like.dtype):
        raise RuntimeError(f"sltt_kernels: {name} must be {state_dtype(like.dtype)}, got {v.dtype}")
    if tuple(v.shape) != tuple(shape):
        raise RuntimeError(f"sltt_kernels: {name} must have shape {tuple(shape)}, got {tuple(v.shape)}")


def _launch(kernel, N, *args, **constexprs):
    """One program per BLOCK neurons: autotuned on a GPU, BLOCK fixed under the interpreter."""
    if K.TUNED:
        kernel[lambda meta: (triton.cdiv(N, meta["BLOCK"]),)](*args, **constexprs)
    else:
        kernel[(triton.cdiv(N, BLOCK),)](*args, **constexprs, BLOCK=BLOCK, num_warps=NUM_WARPS)


def _emulate_fma(sdt) -> bool:
    return K.INTERPRET and sdt == torch.float32


def _device_ctx(t):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _fwd(x, v0, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad):
    _check(x, "x", tau, v_threshold, v_reset, surrogate, surrogate_param, save, grad)
    x = x.contiguous()
    T = x.shape[0]
    state_shape = x.shape[1:]
    N = math.prod(state_shape)
    sdt = state_dtype(x.dtype)
    if v0 is not None:
        _check_state(v0, "v0", x, state_shape)
        v0 = v0.contiguous()
    spikes = torch.empty_like(x)
    v_last = torch.empty(state_shape, dtype=sdt, device=x.device)
    saved = torch.empty(_ops.saved_shape(save, T, N), dtype=sdt if save == "h" else torch.int32, device=x.device)
    if N > 0:
        params = _params(x.device, sdt, tau, v_threshold, v_reset, decay_input, surrogate_param)
        code = K.SAVE_CODES[save]
        with _device_ctx(x):
            _launch(
                K.lif_fwd, N, x, v0 if v0 is not None else v_last, spikes, v_last,
                saved if code in (1, 2) else spikes, saved if code == 3 else v_last, params, T, N,
                HAS_V0=v0 is not None, HARD_RESET=v_reset is not None, SAVE=code,
                EMULATE_FMA=_emulate_fma(sdt),
            )
    return spikes, v_last, saved


def _bwd(grad_spikes, grad_v_last, saved, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate,
         surrogate_param, save, grad):
    _check(grad_spikes, "grad_spikes", tau, v_threshold, v_reset, surrogate, surrogate_param, save, grad)
    if save == "none":
        raise RuntimeError("sltt_kernels: the forward saved nothing (save='none'), so there is no backward")
    if grad == "bptt" and save == "sg_spike" and not (v_reset is not None and detach_reset):
        raise RuntimeError("sltt_kernels: save='sg_spike' serves BPTT with hard reset and detach_reset only")
    gs = grad_spikes.contiguous()
    T = gs.shape[0]
    state_shape = gs.shape[1:]
    N = math.prod(state_shape)
    sdt = state_dtype(gs.dtype)
    want = _ops.saved_shape(save, T, N)
    want_dtype = sdt if save == "h" else torch.int32
    if tuple(saved.shape) != tuple(want) or saved.dtype != want_dtype or saved.device != gs.device:
        raise RuntimeError(
            f"sltt_kernels: saved must have shape {tuple(want)} and dtype {want_dtype} on {gs.device}, "
            f"got {tuple(saved.shape)} {saved.dtype} on {saved.device}"
        )
    bptt = grad == "bptt"
    if bptt and grad_v_last is not None:
        _check_state(grad_v_last, "grad_v_last", gs, state_shape)
        grad_v_last = grad_v_last.contiguous()
    else:
        grad_v_last = None
    grad_x = torch.empty_like(gs)
    grad_v0 = (torch.empty if bptt else torch.zeros)(state_shape, dtype=sdt, device=gs.device)
    if N > 0:
        params = _params(gs.device, sdt, tau, v_threshold, v_reset, decay_input, surrogate_param)
        code = K.SAVE_CODES[save]
        with _device_ctx(gs):
            _launch(
                K.lif_bwd, N, gs, grad_v_last if grad_v_last is not None else grad_v0,
                saved if code in (1, 2) else grad_v0, saved if code == 3 else grad_v0,
                grad_x, grad_v0, params, T, N,
                HAS_GV_LAST=grad_v_last is not None, WRITE_GV0=bptt, HARD_RESET=v_reset is not None,
                DETACH=bool(detach_reset), SURROGATE=K.SURROGATE_CODES[surrogate],
                # SLTT reads only plane 0 of a two-plane mask, which is the sg plane
                SAVE=1 if (not bptt and code == 2) else code, BPTT=bptt,
                EMULATE_FMA=_emulate_fma(sdt),
            )
    return grad_x, grad_v0


Tensor = torch.Tensor


@torch.library.custom_op("sltt_kernels::triton_lif_multistep_fwd", mutates_args=())
def triton_lif_multistep_fwd(
    x: Tensor, v0: Optional[Tensor], tau: float, v_threshold: float, v_reset: Optional[float], decay_input: bool,
    detach_reset: bool, surrogate: str, surrogate_param: float, save: str, grad: str,
) -> Tuple[Tensor, Tensor, Tensor]:
    return _fwd(x, v0, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad)


@torch.library.custom_op("sltt_kernels::triton_lif_multistep_bwd", mutates_args=())
def triton_lif_multistep_bwd(
    grad_spikes: Tensor, grad_v_last: Optional[Tensor], saved: Tensor, tau: float, v_threshold: float,
    v_reset: Optional[float], decay_input: bool, detach_reset: bool, surrogate: str, surrogate_param: float,
    save: str, grad: str,
) -> Tuple[Tensor, Tensor]:
    return _bwd(grad_spikes, grad_v_last, saved, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate,
                surrogate_param, save, grad)


@torch.library.custom_op("sltt_kernels::triton_lif_step_fwd", mutates_args=())
def triton_lif_step_fwd(
    x: Tensor, v: Tensor, tau: float, v_threshold: float, v_reset: Optional[float], decay_input: bool,
    detach_reset: bool, surrogate: str, surrogate_param: float, save: str, grad: str,
) -> Tuple[Tensor, Tensor, Tensor]:
    _check(x, "x", tau, v_threshold, v_reset, surrogate, surrogate_param, save, grad, multistep=False)
    _check_state(v, "v", x, x.shape)
    n = x.numel()
    s, v_new, saved = _fwd(x.reshape(1, n), v.reshape(n), tau, v_threshold, v_reset, decay_input, detach_reset,
                           surrogate, surrogate_param, save, grad)
    return s.view(x.shape), v_new.view(x.shape), saved


@torch.library.custom_op("sltt_kernels::triton_lif_step_bwd", mutates_args=())
def triton_lif_step_bwd(
    grad_spike: Tensor, grad_v_new: Optional[Tensor], saved: Tensor, tau: float, v_threshold: float,
    v_reset: Optional[float], decay_input: bool, detach_reset: bool, surrogate: str, surrogate_param: float,
    save: str, grad: str,
) -> Tuple[Tensor, Tensor]:
    n = grad_spike.numel()
    gv = None if grad_v_new is None else grad_v_new.reshape(n)
    gx, gv0 = _bwd(grad_spike.reshape(1, n), gv, saved, tau, v_threshold, v_reset, decay_input, detach_reset,
                   surrogate, surrogate_param, save, grad)
    return gx.view(grad_spike.shape), gv0.view(grad_spike.shape)


@triton_lif_multistep_fwd.register_fake
def _(x, v0, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad):
    return _ops._fake_fwd(x, v0, True, save)


@triton_lif_multistep_bwd.register_fake
def _(grad_spikes, grad_v_last, saved, *neuron_args):
    return _ops._fake_bwd(grad_spikes, True)


@triton_lif_step_fwd.register_fake
def _(x, v, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad):
    return _ops._fake_fwd(x, v, False, save)


@triton_lif_step_bwd.register_fake
def _(grad_spike, grad_v_new, saved, *neuron_args):
    return _ops._fake_bwd(grad_spike, False)


triton_lif_multistep_fwd.register_autograd(
    _ops._make_backward(torch.ops.sltt_kernels.triton_lif_multistep_bwd), setup_context=_ops._setup_context
)
triton_lif_step_fwd.register_autograd(
    _ops._make_backward(torch.ops.sltt_kernels.triton_lif_step_bwd), setup_context=_ops._setup_context
)

MULTISTEP_FWD = torch.ops.sltt_kernels.triton_lif_multistep_fwd
STEP_FWD = torch.ops.sltt_kernels.triton_lif_step_fwd
