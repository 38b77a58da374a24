"""The LIF loop a user would write in plain PyTorch, for torch.compile: the benchmarks' peer.

This is what someone who does not install sltt_kernels would run instead: a Python loop over
time steps, the spike a Heaviside step whose backward is the surrogate (a small autograd
Function), wrapped in torch.compile. Same dynamics as sltt_kernels (docs/design.md, section 2):

    h[t] = v_r + (1 - 1/tau) (v[t-1] - v_r) + c x[t]        c = 1/tau with input decay, else 1
    s[t] = [h[t] >= theta]                                   backward: sg(h[t] - theta)
    soft reset: v[t] = h[t] - theta s[t]     hard: v[t] = h[t] - (h[t] - v_r) s[t]

grad="sltt" detaches v[t-1] before each charge (no gradient along time).
"""

from __future__ import annotations

from typing import Optional

import torch

from sltt_kernels.surrogate import surrogate_grad  # the same formulas, plain PyTorch


def _spike_function(kind: str, param: float):
    """An autograd Function: forward the step function, backward the surrogate."""

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, d):
            ctx.save_for_backward(d)
            return (d >= 0).to(d.dtype)

        @staticmethod
        def backward(ctx, grad_s):
            (d,) = ctx.saved_tensors
            return grad_s * surrogate_grad(d, kind, param)

    return Spike


def make_lif_loop(tau: float = 2.0, v_threshold: float = 1.0, v_reset: Optional[float] = None,
                  decay_input: bool = False, detach_reset: bool = False, surrogate: str = "rect",
                  surrogate_param: float = 1.0, grad: str = "bptt"):
    """A function x [T, ...] -> (spikes [T, ...], v_last [...]) in plain PyTorch (not compiled)."""
    lam = 1.0 - 1.0 / tau
    c = 1.0 / tau if decay_input else 1.0
    v_r = 0.0 if v_reset is None else float(v_reset)
    soft = v_reset is None
    spike = _spike_function(surrogate, surrogate_param).apply
    sltt = grad == "sltt"

    def lif_loop(x: torch.Tensor):
        v = torch.full_like(x[0], v_r)
        out = []
        for t in range(x.shape[0]):
            if sltt:
                v = v.detach()
            h = v_r + lam * (v - v_r) + c * x[t]
            s = spike(h - v_threshold)
            r = s.detach() if detach_reset else s
            v = h - v_threshold * r if soft else h - (h - v_r) * r
            out.append(s)
        return torch.stack(out), v

    return lif_loop


def compiled_lif_loop(compile_backend: str = "inductor", **neuron):
    """make_lif_loop(**neuron) wrapped in torch.compile (static shapes: one graph per shape)."""
    return torch.compile(make_lif_loop(**neuron), backend=compile_backend, dynamic=False)
