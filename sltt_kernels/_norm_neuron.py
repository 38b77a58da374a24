"""A batch norm's apply inside the neuron kernel: spikes = neuron(batch_norm(x)) in one pass.

The batch norm's statistics are computed here (two passes: the mean, then the mean square about
it; or its running statistics in eval mode), and the neuron op reads x with the per-channel scale and shift they give (in_scale,
in_shift: x * scale + shift, scale = weight / sqrt(var + eps), shift = bias - mean * scale), so
the normalised activation is never written nor read back. The backward is the neuron's backward
op, which gives the gradient with respect to the normalised activation, followed by aten's own
batch-norm backward with the statistics of the forward. docs/design.md, section 4.3, says what
rounds differently from aten's batch norm.

Used by ops.run_neuron when it is given a BatchNormInput (the modules' path:
sltt_kernels.nn.batch_norm_neuron).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from . import _layout, _registration
from . import memory as _memory
from ._config import NeuronArgs, state_dtype

__all__ = ["BatchNormInput", "run_norm_neuron"]

# the dtypes the fused path takes: the statistics are computed in x's own dtype, which for a
# 16-bit x would differ from aten's (it accumulates in float32)
NORM_DTYPES = (torch.float32, torch.float64)


class BatchNormInput(NamedTuple):
    """A batch norm in front of a neuron, as F.batch_norm takes it: weight and bias [C] (or None),
    running_mean and running_var [C] (or None: not tracked), batch_stats (normalise by the batch's
    statistics, and update the running ones if given, by `momentum`; else by the running ones),
    eps. Channels are dimension 1 of a step ([B, C, ...])."""

    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    running_mean: Optional[torch.Tensor]
    running_var: Optional[torch.Tensor]
    batch_stats: bool
    momentum: float
    eps: float


def _statistics(xb: torch.Tensor, norm: BatchNormInput):
    """(mean, var) [C] of the [M, C, ...] tensor xb that normalise it, updating the running
    statistics as aten's batch norm does (in double, then rounded)."""
    C = xb.shape[1]
    if not norm.batch_stats:
        return norm.running_mean.clone(), norm.running_var.clone()
    count = xb.numel() // C if C else 0
    if count == 1:  # as torch's batch norm (an empty batch is run_norm_neuron's reference path)
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(xb.shape)}")
    dims = [0] + list(range(2, xb.dim()))
    # two passes, the mean and then the mean square about it: torch.var_mean's Welford reduction
    # over these dimensions took 3.5-4 ms on a [16, 64, 32, 32] float32 input (2-core CPU), three
    # times aten's whole batch norm; this takes 0.4 ms, its variance within 2 ulp of float64's
    mean = xb.mean(dims, keepdim=True)
    var = (xb - mean).square_().mean(dims)
    mean = mean.view(C)
    if norm.running_mean is not None:
        f = norm.momentum
        rm, rv = norm.running_mean, norm.running_var
        rm.copy_(f * mean.double() + (1 - f) * rm.double())
        rv.copy_(f * (var.double() * count / (count - 1)) + (1 - f) * rv.double())
    return mean, var


def _channel_view(c: torch.Tensor, state_shape) -> torch.Tensor:
    """A [C] tensor expanded to the state's shape [B, C, ...] (a view, read per channel)."""
    return c.view([1, -1] + [1] * (len(state_shape) - 2)).expand(state_shape)


def _permuted(t: Optional[torch.Tensor], order) -> Optional[torch.Tensor]:
    return t if (t is None or order is None) else t.permute(order)


def _inverse(order):
    return None if order is None else _layout._inverse(order)


class _BatchNormNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, v, cfg: NeuronArgs, multistep: bool, triton: bool, save: str,
                norm: BatchNormInput):
        xb = x.flatten(0, 1) if multistep else x  # [M, C, ...], as the batch norm sees it
        with torch.no_grad():
            mean, var = _statistics(xb, norm)
            sdt = state_dtype(x.dtype)
            invstd = torch.rsqrt(var + norm.eps)
            scale = invstd if weight is None else weight * invstd
            shift = -(mean * scale) if bias is None else bias - mean * scale
        state_shape = x.shape[1:] if multistep else x.shape
        order, state_order = _layout.storage_orders(x, multistep) or (None, None)
        in_scale = _permuted(_channel_view(scale.to(sdt), state_shape), state_order)
        in_shift = _permuted(_channel_view(shift.to(sdt), state_shape), state_order)
        xs = _permuted(x, order)
        vs = _permuted(v, state_order)
        if vs is not None:
            vs = vs.to(sdt)
        fwd = _registration.op("neuron_multistep_fwd" if multistep else "neuron_step_fwd", triton=triton)
        spikes, v_new, saved = fwd(xs, vs, None, *cfg.args(save), None, in_scale, in_shift)
        ctx.cfg, ctx.multistep, ctx.triton, ctx.save = cfg, multistep, triton, save
        ctx.order, ctx.state_order = order, state_order
        ctx.batch_stats, ctx.eps = norm.batch_stats, norm.eps
        ctx.has_weight, ctx.has_bias, ctx.has_v = weight is not None, bias is not None, v is not None
        if save == "spike_state" and not torch.compiler.is_compiling():
            _memory.note_step_state(v_new)  # as the op's own autograd does (_registration.py)
        # x for aten's batch-norm backward: under pack_spike_inputs(recompute=True) the hooks keep
        # its recipe instead (nn/recompute.py)
        ctx.save_for_backward(x, weight, mean, invstd if norm.batch_stats else var, saved,
                              v_new if save == "spike_state" else None)
        spikes, v_out = _permuted(spikes, _inverse(order)), _permuted(v_new, _inverse(state_order))
        ctx.mark_non_differentiable(saved)
        if cfg.grad == "sltt":
            ctx.mark_non_differentiable(v_out)
        ctx.set_materialize_grads(False)
        return spikes, v_out, saved

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_new, _grad_saved):
        if torch.is_grad_enabled():
            raise RuntimeError("sltt_kernels: higher-order gradients (autograd.grad with create_graph=True) are not "
                               "supported by the fused batch norm + neuron; use backend='reference' for them")
        x, weight, mean, stat, saved, v_new = ctx.saved_tensors
        cfg, bptt = ctx.cfg, ctx.cfg.grad == "bptt"
        nones = (None,) * 6
        if grad_spikes is None and (grad_v_new is None or not bptt):
            return (None, None, None) + nones
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(x)
        bwd = _registration.op("neuron_multistep_bwd" if ctx.multistep else "neuron_step_bwd", triton=ctx.triton)
        gv = _permuted(grad_v_new, ctx.state_order) if bptt else None
        extra = {"v_new": v_new} if ctx.save == "spike_state" else {}
        grad_u, grad_v, _, _ = bwd(_permuted(grad_spikes, ctx.order), gv, saved, None, *cfg.args(ctx.save), **extra)
        grad_u = _permuted(grad_u, _inverse(ctx.order))
        grad_v = _permuted(grad_v, _inverse(ctx.state_order)) if (bptt and ctx.has_v) else None
        xb = x.flatten(0, 1) if ctx.multistep else x
        gb = grad_u.flatten(0, 1) if ctx.multistep else grad_u
        mask = [ctx.needs_input_grad[0], ctx.has_weight and ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2]]
        if ctx.batch_stats:
            gx, gw, gb_ = torch.ops.aten.native_batch_norm_backward(gb, xb, weight, None, None, mean, stat, True,
                                                                     ctx.eps, mask)
        else:  # eval: the running statistics of the forward (copies), constants of x
            gx, gw, gb_ = torch.ops.aten.native_batch_norm_backward(gb, xb, weight, mean, stat, None, None, False,
                                                                     ctx.eps, mask)
        if gx is not None and ctx.multistep:
            gx = gx.view(x.shape)
        return (gx, gw, gb_, grad_v) + nones[:5]


def run_norm_neuron(cfg: NeuronArgs, x: torch.Tensor, v: Optional[torch.Tensor], norm: BatchNormInput, *,
                    multistep: bool, which: str):
    """spikes, v_new = the neuron cfg on batch_norm(x) (norm), on backend `which` ('cpu', 'cuda',
    'triton' or 'reference'). x: [T, B, C, ...] (multistep; the batch norm sees [T * B, C, ...])
    or [B, C, ...], float32 or float64; v: the state [B, C, ...] or None. The checks of
    ops.run_neuron come first."""
    if x.dtype not in NORM_DTYPES:
        raise TypeError(f"x must be float32 or float64 for the fused batch norm, got {x.dtype}")
    if which == "reference" or x.numel() == 0:  # empty: aten's batch-norm backward fails on it, F.batch_norm not
        xb = x.flatten(0, 1) if multistep else x
        y = torch.nn.functional.batch_norm(xb, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                           norm.batch_stats, norm.momentum, norm.eps)
        from . import reference
        return reference.run(cfg, y.view(x.shape), v, None, multistep)
    sdt = state_dtype(x.dtype)
    if v is not None and cfg.grad == "sltt":
        v = v.detach()  # SLTT: v[t-1] is a constant of the step
    if v is None and not multistep:
        v = torch.full_like(x, cfg.v_reset, dtype=sdt, memory_format=torch.preserve_format)
    grad_on = torch.is_grad_enabled()
    needs_grad = grad_on and any(t is not None and t.requires_grad for t in (x, v, norm.weight, norm.bias))
    save = cfg.save_kind(needs_grad, False, half=False, step=not multistep)
    if which == "triton":
        from .triton import ops as _triton_ops  # noqa: F401  (registers the Triton kernels on first use)
    spikes, v_new, _ = _BatchNormNeuron.apply(x, norm.weight, norm.bias, v, cfg, multistep, which == "triton", save,
                                              norm)
    return spikes, v_new
