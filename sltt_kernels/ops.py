"""The public functions and the torch-op machinery behind them.

`lif_multistep` and `lif_step` check their arguments, pick a backend (`_backend.py`) and call
either the reference or one of the ops in `torch.ops.sltt_kernels` (schemas in csrc/ops.cpp).
This module registers the ops' fake implementations and autograd, so that the ops work with
autograd, `torch.library.opcheck` and `torch.compile(fullgraph=True)`.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _ext, reference
from ._backend import select_backend
from ._config import LIFConfig, check_input, check_state, make_config, state_dtype

__all__ = ["lif_multistep", "lif_step"]


def _mask_words(n):
    return (n + 31) // 32


def saved_shape(save: str, T, N) -> tuple:
    """Shape of the `saved` output for T steps of N neurons (DESIGN.md section 3)."""
    if save == "sg":
        return (T, _mask_words(N))
    if save == "sg_spike":
        return (2, T, _mask_words(N))
    if save == "h":
        return (T, N)
    return (0,)


def _saved_dtype(save: str, x_dtype: torch.dtype) -> torch.dtype:
    return state_dtype(x_dtype) if save == "h" else torch.int32


def _numel(shape):
    n = 1
    for d in shape:
        n = n * d
    return n


# ---------------------------------------------------------------------------------------------
# Public API


def lif_multistep(
    x: torch.Tensor,
    v0: Optional[torch.Tensor] = None,
    *,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate="rect",
    grad: str = "bptt",
    backend: str = "auto",
):
    """Fused multi-step LIF neuron (DESIGN.md section 2).

    x: [T, ...] (time first, as SpikingJelly's step_mode='m'), float32/float64/float16/bfloat16.
    v0: [...] initial membrane potential (default v_reset, or 0 for soft reset).
    tau >= 1; v_reset=None is a soft reset; surrogate: 'rect' | 'triangle' | 'sigmoid' | 'atan'
    or an object of sltt_kernels.surrogate; grad: 'bptt' or 'sltt' (no gradient along time,
    none to v0, and v_last carries none); backend: 'auto' | 'cpu' | 'cuda' | 'triton' | 'reference'.

    Returns (spikes [T, ...] in x's dtype, v_last [...] float32 (float64 for float64 x)).

    Example:
        >>> x = torch.randn(6, 32, 128, requires_grad=True)
        >>> spikes, v = lif_multistep(x, tau=2.0, v_reset=None, decay_input=False, grad="sltt")
        >>> spikes.sum().backward()
    """
    cfg = make_config(
        tau=tau,
        v_threshold=v_threshold,
        v_reset=v_reset,
        decay_input=decay_input,
        detach_reset=detach_reset,
        surrogate=surrogate,
        grad=grad,
    )
    check_input(x, "x", multistep=True)
    if v0 is not None:
        check_state(v0, "v0", x, x.shape[1:])
    which = select_backend(x, backend)
    if which == "reference":
        return reference.lif_multistep_cfg(cfg, x, v0)
    v0 = _prepare_state(cfg, x, v0)
    save = cfg.save_kind(_needs_grad(x, v0))
    spikes, v_last, _ = _fwd_ops(which)[0](x, v0, *cfg.op_args(save))
    return spikes, v_last


def lif_step(
    x: torch.Tensor,
    v: Optional[torch.Tensor] = None,
    *,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate="rect",
    grad: str = "bptt",
    backend: str = "auto",
):
    """One LIF time step: the same keywords as `lif_multistep`.

    x: [...]; v: [...] membrane potential before the step (default v_reset, or 0 for soft reset).
    Returns (spike [...] in x's dtype, v_new [...] float32 (float64 for float64 x)).
    With grad="sltt", v gets no gradient and v_new carries none: the online SLTT step.

    Example:
        >>> v = None
        >>> for x_t in torch.randn(4, 8, 16).unbind(0):
        ...     s, v = lif_step(x_t, v, grad="sltt")
    """
    cfg = make_config(
        tau=tau,
        v_threshold=v_threshold,
        v_reset=v_reset,
        decay_input=decay_input,
        detach_reset=detach_reset,
        surrogate=surrogate,
        grad=grad,
    )
    check_input(x, "x", multistep=False)
    if v is not None:
        check_state(v, "v", x, x.shape)
    which = select_backend(x, backend)
    if which == "reference":
        return reference.lif_step_cfg(cfg, x, v)
    v = _prepare_state(cfg, x, v)
    if v is None:
        v = torch.full(x.shape, cfg.v_r, dtype=state_dtype(x.dtype), device=x.device)
    save = cfg.save_kind(_needs_grad(x, v))
    spike, v_new, _ = _fwd_ops(which)[1](x, v, *cfg.op_args(save))
    return spike, v_new


def _fwd_ops(backend: str):
    """(multi-step forward op, single-step forward op) of a kernel backend."""
    if backend == "triton":
        from .triton import ops as triton_ops  # registers the Triton ops on first use

        return triton_ops.MULTISTEP_FWD, triton_ops.STEP_FWD
    # cpu and cuda: the compiled ops, which dispatch on the tensors' device
    return torch.ops.sltt_kernels.lif_multistep_fwd, torch.ops.sltt_kernels.lif_step_fwd


def _prepare_state(cfg: LIFConfig, x: torch.Tensor, v: Optional[torch.Tensor]):
    if v is None:
        return None
    v = v.to(state_dtype(x.dtype))
    # SLTT: v[t-1] is a constant of the step, so the state never needs a gradient.
    return v.detach() if cfg.grad == "sltt" else v


def _needs_grad(x: torch.Tensor, v: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or (v is not None and v.requires_grad))


# ---------------------------------------------------------------------------------------------
# Fake implementations and autograd of the compiled ops


def _fake_fwd(x, v, multistep: bool, save: str):
    T = x.shape[0] if multistep else 1
    state_shape = x.shape[1:] if multistep else x.shape
    N = _numel(state_shape)
    spikes = x.new_empty(x.shape)
    v_last = x.new_empty(state_shape, dtype=state_dtype(x.dtype))
    saved = x.new_empty(saved_shape(save, T, N), dtype=_saved_dtype(save, x.dtype))
    return spikes, v_last, saved


def _fake_bwd(grad_spikes, multistep: bool):
    state_shape = grad_spikes.shape[1:] if multistep else grad_spikes.shape
    return grad_spikes.new_empty(grad_spikes.shape), grad_spikes.new_empty(
        state_shape, dtype=state_dtype(grad_spikes.dtype)
    )


def _setup_context(ctx, inputs, output):
    x, v, *neuron_args = inputs
    _, v_last, saved = output
    ctx.neuron_args = tuple(neuron_args)
    ctx.has_v = v is not None
    ctx.grad_mode = neuron_args[-1]
    ctx.save_for_backward(saved)
    ctx.mark_non_differentiable(saved)
    if ctx.grad_mode == "sltt":
        ctx.mark_non_differentiable(v_last)


def _make_backward(bwd_op):
    def backward(ctx, grad_spikes, grad_v_last, _grad_saved):
        (saved,) = ctx.saved_tensors
        if ctx.neuron_args[-2] == "none":
            raise RuntimeError(
                "sltt_kernels: backward through a forward that saved nothing (it ran without grad enabled)"
            )
        bptt = ctx.grad_mode == "bptt"
        grad_x, grad_v = bwd_op(grad_spikes, grad_v_last if bptt else None, saved, *ctx.neuron_args)
        return (grad_x, grad_v if (bptt and ctx.has_v) else None) + (None,) * len(ctx.neuron_args)

    return backward


def _register():
    ops = torch.ops.sltt_kernels

    @torch.library.register_fake("sltt_kernels::lif_multistep_fwd")
    def _(x, v0, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad):
        return _fake_fwd(x, v0, True, save)

    @torch.library.register_fake("sltt_kernels::lif_multistep_bwd")
    def _(grad_spikes, grad_v_last, saved, *neuron_args):
        return _fake_bwd(grad_spikes, True)

    @torch.library.register_fake("sltt_kernels::lif_step_fwd")
    def _(x, v, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad):
        return _fake_fwd(x, v, False, save)

    @torch.library.register_fake("sltt_kernels::lif_step_bwd")
    def _(grad_spike, grad_v_new, saved, *neuron_args):
        return _fake_bwd(grad_spike, False)

    torch.library.register_autograd(
        "sltt_kernels::lif_multistep_fwd", _make_backward(ops.lif_multistep_bwd), setup_context=_setup_context
    )
    torch.library.register_autograd(
        "sltt_kernels::lif_step_fwd", _make_backward(ops.lif_step_bwd), setup_context=_setup_context
    )


if _ext.load() is not None:
    _register()
