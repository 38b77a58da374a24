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

from .. import _config, _registration
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


def _flat_param(t):
    """k or the threshold as the kernels read it: [1] (one value) or [N] (one per neuron), or None."""
    if t is None:
        return None
    return t.reshape(1 if t.numel() == 1 else -1).contiguous()


def _common_constexprs(args: NeuronArgs, k, theta, sdt):
    return dict(NEURON=K.NEURON_CODES[args.neuron], RESET=K.RESET_CODES[args.reset], HAS_K=k is not None,
                K_PER_NEURON=k is not None and k.numel() > 1, HAS_THETA=theta is not None,
                THETA_PER_NEURON=theta is not None and theta.numel() > 1,
                C_IS_K=bool(args.decay_input), EMULATE_FMA=_emulate_fma(sdt))


def _affine_args(in_scale, in_shift, state_shape, like):
    """The kernel arguments of in_scale and in_shift (pointer, inner, count, stride each), read as
    _config.channel_values says; any tensor in their place where there are none."""
    if in_scale is None:
        return (like, 1, 1, 0) * 2
    return (*_config.channel_values(in_scale, state_shape), *_config.channel_values(in_shift, state_shape))


def _fwd(x, v0, k, args: NeuronArgs, threshold=None, in_scale=None, in_shift=None, affine_shape=None):
    """affine_shape: the state shape in_scale and in_shift have (the step's, for a step flattened
    to [1, N]); default x's."""
    x = x.contiguous()
    T = x.shape[0]
    state_shape = x.shape[1:]
    N = math.prod(state_shape)
    sdt = state_dtype(x.dtype)
    v0 = None if v0 is None else v0.contiguous()
    k = _flat_param(k)
    theta = _flat_param(threshold)
    spikes = torch.empty_like(x)
    v_last = torch.empty(state_shape, dtype=sdt, device=x.device)
    saved = torch.empty(saved_shape(args.save, T, N), dtype=saved_dtype(args.save, x.dtype), device=x.device)
    if N > 0:
        mask = saved if args.save in MASK_SAVES else spikes  # unused pointers point at any tensor
        h = saved if args.save in STATE_SAVES else v_last
        with _device_ctx(x):
            _launch(
                K.lif_fwd, N, x, v0 if v0 is not None else v_last, k if k is not None else v_last,
                theta if theta is not None else v_last, spikes, v_last,
                mask, h, _params(x.device, sdt, args), T, N,
                *_affine_args(in_scale, in_shift, state_shape if affine_shape is None else affine_shape, v_last),
                HAS_V0=v0 is not None, SAVE=K.SAVE_CODES[args.save], AFFINE=in_scale is not None,
                **_common_constexprs(args, k, theta, sdt),
            )
    return spikes, v_last, saved


def _param_grad(partial, param, shape, learned: bool, like, sdt):
    """The gradient output of k or the threshold, as the native ops give it (csrc/lif_options.h,
    param_grad): summed for one element, else in the state's shape; empty where not computed."""
    if param is None or not learned:
        return torch.zeros(0, dtype=sdt, device=like.device)
    return partial.sum() if param.numel() == 1 else partial.view(shape)


def _bwd(grad_spikes, grad_v_last, saved, k, args: NeuronArgs, v_new=None, threshold=None):
    gs = grad_spikes.contiguous()
    T = gs.shape[0]
    state_shape = gs.shape[1:]
    N = math.prod(state_shape)
    sdt = state_dtype(gs.dtype)
    bptt = args.grad == "bptt"
    grad_v_last = grad_v_last.contiguous() if (bptt and grad_v_last is not None) else None
    k = _flat_param(k)
    theta = _flat_param(threshold)
    learned = args.save == "h_v0"  # where the parameters' gradients are computed
    learn_k = k is not None and learned
    learn_theta = theta is not None and learned
    grad_x = torch.empty_like(gs)
    grad_v0 = (torch.empty if bptt else torch.zeros)(state_shape, dtype=sdt, device=gs.device)
    grad_k_partial = torch.zeros(N if learn_k else 0, dtype=sdt, device=gs.device)
    grad_theta_partial = torch.zeros(N if learn_theta else 0, dtype=sdt, device=gs.device)
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
                k if k is not None else grad_v0, theta if theta is not None else grad_v0, grad_x, grad_v0,
                grad_k_partial if learn_k else grad_v0, grad_theta_partial if learn_theta else grad_v0,
                _params(gs.device, sdt, args), T, N,
                DETACH=bool(args.detach_reset), SURROGATE=K.SURROGATE_CODES[args.surrogate],
                SAVE=K.SAVE_CODES[save], BPTT=bptt, HAS_GV_LAST=grad_v_last is not None, WRITE_GV0=bptt,
                LEARN_K=learn_k, LEARN_THETA=learn_theta,
                **_common_constexprs(args, k, theta, sdt),
            )
    return (grad_x, grad_v0, _param_grad(grad_k_partial, k, state_shape, learn_k, gs, sdt),
            _param_grad(grad_theta_partial, theta, state_shape, learn_theta, gs, sdt))


def _register():
    devices = ("cpu", "cuda")

    @torch.library.register_kernel("sltt_kernels::triton_neuron_multistep_fwd", devices, lib=_registration._LIB)
    def _(x, v0, k, *args, **kwargs):
        args, extra = _registration.split_trailing("neuron_multistep_fwd", args, kwargs)
        return _fwd(x, v0, k, _registration.check_fwd(x, v0, k, args, True, **extra), **extra)

    @torch.library.register_kernel("sltt_kernels::triton_neuron_multistep_bwd", devices, lib=_registration._LIB)
    def _(grad_spikes, grad_v_last, saved, k, *args, **kwargs):
        args, extra = _registration.split_trailing("neuron_multistep_bwd", args, kwargs)
        args = _registration.check_bwd(grad_spikes, grad_v_last, saved, k, args, True, **extra)
        return _bwd(grad_spikes, grad_v_last, saved, k, args, **extra)

    @torch.library.register_kernel("sltt_kernels::triton_neuron_step_fwd", devices, lib=_registration._LIB)
    def _(x, v, k, *args, **kwargs):
        args, extra = _registration.split_trailing("neuron_step_fwd", args, kwargs)
        args = _registration.check_fwd(x, v, k, args, False, **extra)
        n = x.numel()
        s, v_new, saved = _fwd(x.reshape(1, n), v.reshape(n), _flat_param(k), args,
                               threshold=_flat_param(extra["threshold"]), in_scale=extra["in_scale"],
                               in_shift=extra["in_shift"], affine_shape=x.shape)
        return s.view(x.shape), v_new.view(x.shape), saved

    @torch.library.register_kernel("sltt_kernels::triton_neuron_step_bwd", devices, lib=_registration._LIB)
    def _(grad_spike, grad_v_new, saved, k, *args, **kwargs):
        args, extra = _registration.split_trailing("neuron_step_bwd", args, kwargs)
        v_new, threshold = extra["v_new"], extra["threshold"]
        args = _registration.check_bwd(grad_spike, grad_v_new, saved, k, args, False, v_new=v_new,
                                       threshold=threshold)
        n = grad_spike.numel()
        gv = None if grad_v_new is None else grad_v_new.reshape(n)
        gx, gv0, gk, gtheta = _bwd(grad_spike.reshape(1, n), gv, saved, _flat_param(k), args,
                                   v_new=None if v_new is None else v_new.reshape(n),
                                   threshold=_flat_param(threshold))
        shape = grad_spike.shape
        return (gx.view(shape), gv0.view(shape), gk.view(k.shape) if gk.dim() == 1 and gk.numel() > 0 else gk,
                gtheta.view(threshold.shape) if gtheta.dim() == 1 and gtheta.numel() > 0 else gtheta)


_register()
