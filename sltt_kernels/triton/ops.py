"""The Triton kernels as the implementations of torch.ops.sltt_kernels.triton_neuron_*.

The schemas, fake kernels and autograd are the native ops' (_registration.py); this module
only registers the CPU (interpreter) and CUDA implementations, which check their arguments with
the same validator and launch the kernels of kernels.py. Imported on first use.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton

from .. import _registration
from .._config import NeuronArgs, saved_dtype, saved_shape, state_dtype
from . import kernels as K

# Under the interpreter: programs of BLOCK neurons, a multiple of 32 so that mask words never
# straddle programs (on a GPU the autotuner picks among such blocks).
BLOCK = 1024
NUM_WARPS = 4

# Which `saved` the kernels read as mask words, and which as state (h, or h - theta in 16 bits).
MASK_SAVES = ("sg", "sg_spike", "sg_reset", "spike_state")
STATE_SAVES = ("h", "h_v0", "h16")

_params_cache: dict = {}


def _params(device, sdt, args: NeuronArgs) -> torch.Tensor:
    """The neuron constants in the state dtype, rounded once from double as the C++ ops do."""
    key = (device, sdt, args.decay, args.input_gain, args.v_threshold, args.v_reset, args.surrogate_alpha)
    p = _params_cache.get(key)
    if p is None:
        a = args.surrogate_alpha
        values = {
            "lam": args.decay,
            "c": args.input_gain,
            "theta": args.v_threshold,
            "v_r": args.v_reset,
            "alpha": a,
            "alpha2": a * a,
            "half_width": a * 0.5,
            "inv_width": 1.0 / a,
        }
        p = torch.tensor([values[k] for k in K.PARAM_NAMES], dtype=torch.float64).to(device=device, dtype=sdt)
        if len(_params_cache) > 256:
            _params_cache.clear()
        _params_cache[key] = p
    return p


def _launch(kernel, N, *args, **constexprs):
    """One program per BLOCK neurons: autotuned on a GPU, BLOCK fixed under the interpreter."""
    if K.INTERPRET:
        kernel[(triton.cdiv(N, BLOCK),)](*args, **constexprs, BLOCK=BLOCK, num_warps=NUM_WARPS)
    else:
        kernel[lambda meta: (triton.cdiv(N, meta["BLOCK"]),)](*args, **constexprs)


def _emulate_fma(sdt) -> bool:
    return K.INTERPRET and sdt == torch.float32


def _device_ctx(t):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _common_constexprs(args: NeuronArgs, k, sdt):
    return dict(NEURON=K.NEURON_CODES[args.neuron], RESET=K.RESET_CODES[args.reset], HAS_K=k is not None,
                C_IS_K=bool(args.decay_input), EMULATE_FMA=_emulate_fma(sdt))


def _fwd(x, v0, k, args: NeuronArgs):
    x = x.contiguous()
    T = x.shape[0]
    state_shape = x.shape[1:]
    N = math.prod(state_shape)
    sdt = state_dtype(x.dtype)
    v0 = None if v0 is None else v0.contiguous()
    k = None if k is None else k.reshape(1).contiguous()
    spikes = torch.empty_like(x)
    v_last = torch.empty(state_shape, dtype=sdt, device=x.device)
    saved = torch.empty(saved_shape(args.save, T, N), dtype=saved_dtype(args.save, x.dtype), device=x.device)
    if N > 0:
        mask = saved if args.save in MASK_SAVES else spikes  # unused pointers point at any tensor
        h = saved if args.save in STATE_SAVES else v_last
        with _device_ctx(x):
            _launch(
                K.lif_fwd, N, x, v0 if v0 is not None else v_last, k if k is not None else v_last, spikes, v_last,
                mask, h, _params(x.device, sdt, args), T, N,
                HAS_V0=v0 is not None, SAVE=K.SAVE_CODES[args.save], **_common_constexprs(args, k, sdt),
            )
    return spikes, v_last, saved


def _bwd(grad_spikes, grad_v_last, saved, k, args: NeuronArgs, v_new=None):
    gs = grad_spikes.contiguous()
    T = gs.shape[0]
    state_shape = gs.shape[1:]
    N = math.prod(state_shape)
    sdt = state_dtype(gs.dtype)
    bptt = args.grad == "bptt"
    grad_v_last = grad_v_last.contiguous() if (bptt and grad_v_last is not None) else None
    k = None if k is None else k.reshape(1).contiguous()
    learn_k = k is not None and args.save == "h_v0"
    grad_x = torch.empty_like(gs)
    grad_v0 = (torch.empty if bptt else torch.zeros)(state_shape, dtype=sdt, device=gs.device)
    grad_k_partial = torch.zeros(N if learn_k else 0, dtype=sdt, device=gs.device)
    if N > 0:
        save = args.save
        if not bptt and save in ("sg_spike", "sg_reset"):
            save = "sg"  # SLTT reads only plane 0 of a two-plane mask, which is the sg plane
        with _device_ctx(gs):
            _launch(
                K.lif_bwd, N, gs, grad_v_last if grad_v_last is not None else grad_v0,
                saved if save in MASK_SAVES else grad_v0,
                # spike_state: the kernel reads the step's output state where the others read h
                saved if save in STATE_SAVES else (v_new.contiguous() if save == "spike_state" else grad_v0),
                k if k is not None else grad_v0, grad_x, grad_v0,
                grad_k_partial if learn_k else grad_v0, _params(gs.device, sdt, args), T, N,
                DETACH=bool(args.detach_reset), SURROGATE=K.SURROGATE_CODES[args.surrogate],
                SAVE=K.SAVE_CODES[save], BPTT=bptt, HAS_GV_LAST=grad_v_last is not None, WRITE_GV0=bptt,
                LEARN_K=learn_k,
                **_common_constexprs(args, k, sdt),
            )
    grad_k = grad_k_partial.sum() if learn_k else grad_k_partial
    return grad_x, grad_v0, grad_k


def _register():
    devices = ("cpu", "cuda")

    @torch.library.register_kernel("sltt_kernels::triton_neuron_multistep_fwd", devices, lib=_registration._LIB)
    def _(x, v0, k, *args):
        return _fwd(x, v0, k, _registration.check_fwd(x, v0, k, args, True))

    @torch.library.register_kernel("sltt_kernels::triton_neuron_multistep_bwd", devices, lib=_registration._LIB)
    def _(grad_spikes, grad_v_last, saved, k, *args):
        return _bwd(grad_spikes, grad_v_last, saved, k, _registration.check_bwd(grad_spikes, grad_v_last, saved, k,
                                                                                 args, True))

    @torch.library.register_kernel("sltt_kernels::triton_neuron_step_fwd", devices, lib=_registration._LIB)
    def _(x, v, k, *args):
        args = _registration.check_fwd(x, v, k, args, False)
        n = x.numel()
        s, v_new, saved = _fwd(x.reshape(1, n), v.reshape(n), k, args)
        return s.view(x.shape), v_new.view(x.shape), saved

    @torch.library.register_kernel("sltt_kernels::triton_neuron_step_bwd", devices, lib=_registration._LIB)
    def _(grad_spike, grad_v_new, saved, k, *args, **kwargs):
        args, v_new = _registration.split_v_new(args, kwargs)  # the schema's trailing Tensor? v_new
        args = _registration.check_bwd(grad_spike, grad_v_new, saved, k, args, False, v_new=v_new)
        n = grad_spike.numel()
        gv = None if grad_v_new is None else grad_v_new.reshape(n)
        gx, gv0, gk = _bwd(grad_spike.reshape(1, n), gv, saved, k, args,
                           v_new=None if v_new is None else v_new.reshape(n))
        return gx.view(grad_spike.shape), gv0.view(grad_spike.shape), gk


_register()
