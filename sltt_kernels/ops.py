"""Running a checked neuron: the one path from a model's public functions (sltt_kernels/neurons/,
one multi-step and one single-step function per model) and the modules to a backend.

`run_neuron` checks the tensors, picks a backend (_backend.py) and calls the reference or the
op in torch.ops.sltt_kernels (_registration.py) with the save kind the call needs. The models'
public functions are importable from here too (sltt_kernels.ops.lif_multistep, ...).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from . import _config, _layout, _registration, reference
from ._backend import select_backend
from ._config import NeuronArgs, check_input, check_state, state_dtype
from ._norm_neuron import BatchNormInput, run_norm_neuron

__all__ = ["run_neuron", "BatchNormInput"]


def neuron_param(t, name: str, x: torch.Tensor, state_shape) -> torch.Tensor:
    """A neuron parameter given as a tensor (k, beta, a threshold): one element, or a shape that
    broadcasts to the state's shape `state_shape` (a per-channel [C, 1, 1] of a conv layer's
    [B, C, H, W] state, a per-feature [F] of [B, F]), expanded to it: one value per neuron. The
    expansion is a view, so autograd sums each neuron's gradient back into the given shape."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    _config.check_device(t, name, x)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if t.numel() == 1:
        return t
    try:
        shape = torch.broadcast_shapes(t.shape, state_shape)
    except RuntimeError:
        shape = None
    if shape is None or tuple(shape) != tuple(state_shape):
        raise ValueError(f"{name} must have one element or a shape that broadcasts to the state's shape "
                         f"{tuple(state_shape)} (one value per neuron), got shape {tuple(t.shape)}")
    return t.expand(state_shape)


def run_neuron(cfg: NeuronArgs, x: torch.Tensor, v: Optional[torch.Tensor], *, multistep: bool,
               backend: str = "auto", k: Optional[torch.Tensor] = None, threshold: Optional[torch.Tensor] = None,
               k_name: str = "k", norm: Optional[BatchNormInput] = None):
    """A validated neuron on x ([T, ...] if multistep, else one step [...]) from state v.

    k: the model's k (LIF: 1/tau; leaky: beta) and threshold (replacing cfg.v_threshold) as
    tensors: one element, or a shape that broadcasts to the state's (one per neuron); their
    gradients reach them when they require grad. k_name: what the caller calls k, for the errors
    ('beta', 'w'). norm: a batch norm in front of the neuron, applied inside its kernel
    (_norm_neuron.py; x float32 or float64, channels at dimension 1 of a step, no k or threshold
    tensor).
    Returns (spikes in x's dtype, the new state in the state dtype)."""
    check_input(x, "x", multistep=multistep)
    state_shape = x.shape[1:] if multistep else x.shape
    if v is not None:
        check_state(v, "v0" if multistep else "v", x, state_shape)
    if norm is not None:
        return _run_normed(cfg, x, v, norm, multistep, backend, k, threshold, state_shape)
    if k is not None:
        k = neuron_param(k, k_name, x, state_shape)
    if threshold is not None:
        threshold = neuron_param(threshold, "threshold", x, state_shape)
    which = select_backend(x, backend)
    if which == "reference":
        return reference.run(cfg, x, v, k, multistep, threshold=threshold)
    if not torch.compiler.is_compiling():
        _refuse_transforms(x, v, k, threshold)
    # the neuron is elementwise: run it on x in its own memory order (channels_last, ...), so that
    # neither x, its gradient nor the spikes the next layer reads are copied (_layout.py); the
    # per-neuron parameters follow the state's order
    k, threshold = _layout.step_view(k, x, multistep), _layout.step_view(threshold, x, multistep)
    x, v, restore = _layout.in_storage_order(x, v, multistep)
    sdt = state_dtype(x.dtype)
    if v is not None:
        v = v.to(sdt)
        if cfg.grad == "sltt":  # SLTT: v[t-1] is a constant of the step
            v = v.detach()
    elif not multistep:
        v = torch.full(x.shape, cfg.v_reset, dtype=sdt, device=x.device)
    if k is not None:
        k = k.to(sdt)
    if threshold is not None:
        threshold = threshold.to(sdt)
    grad_on = torch.is_grad_enabled()
    learn = grad_on and ((k is not None and k.requires_grad) or (threshold is not None and threshold.requires_grad))
    needs_grad = grad_on and (x.requires_grad or (v is not None and v.requires_grad) or learn)
    save = cfg.save_kind(needs_grad, learn, half=x.dtype in _config.HALF_DTYPES, step=not multistep)
    if which == "triton":
        from .triton import ops as _triton_ops  # noqa: F401  (registers the Triton kernels on first use)
    fwd = _registration.op("neuron_multistep_fwd" if multistep else "neuron_step_fwd", triton=which == "triton")
    extra = {} if threshold is None else {"threshold": threshold}
    spikes, v_new, _ = fwd(x, v, k, *cfg.args(save), **extra)
    return restore(spikes, v_new)


def _run_normed(cfg, x, v, norm, multistep, backend, k, threshold, state_shape):
    if k is not None or threshold is not None:
        raise ValueError("a batch norm fused into the neuron (norm=) takes no k or threshold tensor")
    if len(state_shape) < 2:
        raise ValueError(f"x must be [T, B, C, ...] (multistep) or [B, C, ...] for a batch norm over channels, "
                         f"got shape {tuple(x.shape)}")
    C = state_shape[1]
    for name, t in (("weight", norm.weight), ("bias", norm.bias), ("running_mean", norm.running_mean),
                    ("running_var", norm.running_var)):
        if t is None:
            continue
        _config.check_device(t, f"norm.{name}", x)
        if t.dtype != x.dtype or tuple(t.shape) != (C,):
            raise ValueError(f"norm.{name} must be a [{C}] tensor of {x.dtype} (one per channel of x), got "
                             f"{tuple(t.shape)} {t.dtype}")
    if (norm.running_mean is None) != (norm.running_var is None) or (not norm.batch_stats
                                                                     and norm.running_mean is None):
        raise ValueError("norm: running_mean and running_var are given together, and are needed without batch_stats")
    if not isinstance(norm.batch_stats, bool):
        raise TypeError(f"norm.batch_stats must be a bool, got {type(norm.batch_stats).__name__}")
    for name, value, low in (("momentum", norm.momentum, 0.0), ("eps", norm.eps, None)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"norm.{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value) or (value < 0.0 if low is not None else value <= 0.0):
            raise ValueError(f"norm.{name} must be a finite number {'>= 0' if low is not None else '> 0'}, "
                             f"got {value}")
    which = select_backend(x, backend)
    if which != "reference" and not torch.compiler.is_compiling():
        _refuse_transforms(x, v, norm.weight, norm.bias)
    return run_norm_neuron(cfg, x, v, norm, multistep=multistep, which=which)


def _refuse_transforms(*tensors) -> None:
    """The fused ops have a backward only: under forward-mode AD or a torch.func transform
    (grad, vmap, jvp, ...) they would give zeros or fail obscurely, so say so instead."""
    for t in tensors:
        if t is None:
            continue
        if torch._C._functorch.is_functorch_wrapped_tensor(t) or torch._C._functorch.is_batchedtensor(t):
            raise RuntimeError("sltt_kernels: torch.func transforms (grad, vmap, jvp, ...) are not supported by the "
                               "fused ops; use backend='reference' under them")
        if torch.autograd.forward_ad.unpack_dual(t).tangent is not None:
            raise RuntimeError("sltt_kernels: forward-mode AD is not supported by the fused ops (a spike has no "
                               "forward derivative); use backward-mode autograd")


def __getattr__(name: str):
    # every model's public functions (lif_multistep, ...), defined in sltt_kernels/neurons/
    fn = _config.public_function(name)
    if fn is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return fn
