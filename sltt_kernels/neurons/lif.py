"""The LIF neuron (SpikingJelly's LIFNode) and the parametric LIF (its ParametricLIFNode): what
Python knows of the model. Its kernel math is csrc/neurons/lif.h; docs/design.md, section 2.1.

    charge  h[t] = v_r + lam (v[t-1] - v_r) + c x[t]     lam = 1 - 1/tau, c = 1/tau (decay_input) or 1
    fire    s[t] = [h[t] >= theta]
    reset   soft: v[t] = h[t] - theta s[t]               hard: v[t] = s[t] ? v_r : h[t]

The parametric LIF is this model with k = 1/tau = sigmoid(w) a tensor (lam = 1 - k, c = k or 1),
one value or one per neuron, whose gradient the fused backward returns; the threshold may be a
tensor too (docs/design.md, section 2.6).

Example:
    >>> x = torch.randn(6, 32, 128, requires_grad=True)
    >>> spikes, v = lif_multistep(x, tau=2.0, v_reset=None, decay_input=False, surrogate="rect", grad="sltt")
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _config
from .._config import NeuronArgs, NeuronModel, cached, flag, grad_mode, number, surrogate_of, tensor_or_number
from ..ops import run_neuron
from ..reference import hard_reset


# ---------------------------------------------------------------------------------------------
# Keywords


def reset_now_config(neuron, decay, input_gain, decay_input, v_threshold, v_reset, detach_reset, surrogate,
                     grad) -> NeuronArgs:
    """The keywords SpikingJelly's neurons share (the models that reset at the step that fires):
    v_reset None is a soft reset."""
    v_threshold = number("v_threshold", v_threshold)
    v_reset = None if v_reset is None else number("v_reset", v_reset)
    kind, alpha = surrogate_of(surrogate)
    return NeuronArgs(neuron, decay, input_gain, decay_input, v_threshold, "soft" if v_reset is None else "hard",
                      0.0 if v_reset is None else v_reset, flag("detach_reset", detach_reset), kind, alpha, "none",
                      grad_mode("grad", grad))


@cached
def lif_config(*, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad) -> NeuronArgs:
    """LIF: tau >= 1 (lambda = 1 - 1/tau lies in [0, 1)); v_reset None is a soft reset."""
    tau = number("tau", tau, low=1.0)
    decay_input = flag("decay_input", decay_input)
    return reset_now_config("lif", 1.0 - 1.0 / tau, 1.0 / tau if decay_input else 1.0, decay_input, v_threshold,
                            v_reset, detach_reset, surrogate, grad)


@cached
def plif_config(*, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad) -> NeuronArgs:
    """Parametric LIF: the LIF model with k = 1/tau a tensor (checked by _config.check_param); the
    decay and gain here are placeholders the kernels replace with k."""
    decay_input = flag("decay_input", decay_input)
    return reset_now_config("lif", 0.5, 0.5 if decay_input else 1.0, decay_input, v_threshold, v_reset, detach_reset,
                            surrogate, grad)



def check_values(args: NeuronArgs) -> None:
    """LIF has no rule beyond the shared ones (decay in [0, 1], input_gain > 0)."""


# ---------------------------------------------------------------------------------------------
# The reference's equations


def decay_and_gain(args: NeuronArgs, k):
    if k is None:
        return args.decay, args.input_gain
    return 1 - k, (k if args.decay_input else 1.0)


def charge(args: NeuronArgs, v, x, k, theta):
    lam, c = decay_and_gain(args, k)
    return args.v_reset + lam * (v - args.v_reset) + c * x


def reset_now(args: NeuronArgs, h, s, theta):
    """The reset of the models that reset at the step that fires (LIF, IF); theta: the threshold
    (args.v_threshold, or a tensor of one element or one per neuron)."""
    if args.detach_reset:
        s = s.detach()
    if args.reset == "soft":
        return h - theta * s
    return hard_reset(h, s, args.v_reset)


# ---------------------------------------------------------------------------------------------
# Public functions


def lif_multistep(x: torch.Tensor, v0: Optional[torch.Tensor] = None, *, tau: float = 2.0,
                  v_threshold=1.0, v_reset: Optional[float] = 0.0, decay_input: bool = True,
                  detach_reset: bool = False, surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """Fused multi-step LIF neuron (SpikingJelly's LIFNode; docs/design.md, section 2.1).

    x: [T, ...] (time first, as SpikingJelly's step_mode='m'), float32/float64/float16/bfloat16.
    v0: [...] initial membrane potential (default v_reset, or 0 for soft reset).
    tau >= 1; v_threshold: a number, or a tensor of one element or of a shape that broadcasts to
    [...] (one per neuron; learnable: the fused backward computes its gradient); v_reset=None is a soft reset; surrogate: 'rect' | 'triangle' | 'sigmoid' | 'atan'
    or an object of sltt_kernels.surrogate; grad: 'bptt' or 'sltt' (no gradient along time,
    none to v0, and v_last carries none); backend: 'auto' | 'cpu' | 'cuda' | 'triton' | 'reference'.

    Returns (spikes [T, ...] in x's dtype, v_last [...] float32 (float64 for float64 x)).

    Example:
        >>> x = torch.randn(6, 32, 128, requires_grad=True)
        >>> spikes, v = lif_multistep(x, tau=2.0, v_reset=None, decay_input=False, surrogate="rect", grad="sltt")
        >>> spikes.sum().backward()
    """
    v_threshold, threshold = tensor_or_number(v_threshold, 1.0)
    cfg = lif_config(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                     detach_reset=detach_reset, surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v0, multistep=True, backend=backend, threshold=threshold)


def lif_step(x: torch.Tensor, v: Optional[torch.Tensor] = None, *, tau: float = 2.0, v_threshold=1.0,
             v_reset: Optional[float] = 0.0, decay_input: bool = True, detach_reset: bool = False,
             surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """One LIF time step: the same keywords as `lif_multistep`.

    x: [...]; v: [...] membrane potential before the step (default v_reset, or 0 for soft reset).
    Returns (spike [...] in x's dtype, v_new [...] float32 (float64 for float64 x)).
    With grad="sltt", v gets no gradient and v_new carries none: the online SLTT step.

    Example:
        >>> v = None
        >>> for x_t in torch.randn(4, 8, 16).unbind(0):
        ...     s, v = lif_step(x_t, v, surrogate="rect", grad="sltt")
    """
    v_threshold, threshold = tensor_or_number(v_threshold, 1.0)
    cfg = lif_config(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                     detach_reset=detach_reset, surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v, multistep=False, backend=backend, threshold=threshold)


def plif_multistep(x: torch.Tensor, v0: Optional[torch.Tensor] = None, *, w: torch.Tensor,
                   v_threshold=1.0, v_reset: Optional[float] = 0.0, decay_input: bool = True,
                   detach_reset: bool = False, surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """Fused multi-step parametric LIF (SpikingJelly's ParametricLIFNode): 1/tau = sigmoid(w),
    with w a learnable tensor whose gradient the fused backward computes.

    x: [T, ...]; v0: [...]; w: one element, or a shape that broadcasts to [...] (one time constant
    per neuron or channel, e.g. [C, 1, 1]); v_threshold as lif_multistep.
    Returns (spikes [T, ...], v_last [...]).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor(0.0))    # tau = 2
        >>> spikes, v = plif_multistep(torch.randn(4, 8, 16), w=w)
        >>> spikes.sum().backward()                         # w.grad
    """
    v_threshold, threshold = tensor_or_number(v_threshold, 1.0)
    cfg = plif_config(v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset,
                      surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v0, multistep=True, backend=backend, k=plif_k(w, x), threshold=threshold,
                      k_name="w")


def plif_step(x: torch.Tensor, v: Optional[torch.Tensor] = None, *, w: torch.Tensor, v_threshold=1.0,
              v_reset: Optional[float] = 0.0, decay_input: bool = True, detach_reset: bool = False,
              surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """One parametric-LIF step: x, v: [...]; w as plif_multistep. Returns (spike, v_new)."""
    v_threshold, threshold = tensor_or_number(v_threshold, 1.0)
    cfg = plif_config(v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset,
                      surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v, multistep=False, backend=backend, k=plif_k(w, x), threshold=threshold,
                      k_name="w")


def plif_k(w, x) -> torch.Tensor:
    """k = 1/tau = sigmoid(w) of a parametric LIF, w checked and named as the caller passed it
    (its shape against the state's is checked by run_neuron, as k's)."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor (1/tau = sigmoid(w)), got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"w must be a floating tensor, got {w.dtype}")
    if w.numel() == 0:
        raise ValueError(f"w must have one element or one per neuron, got shape {tuple(w.shape)}")
    if isinstance(x, torch.Tensor):
        _config.check_device(w, "w", x)  # the ops see k = sigmoid(w)
    return torch.sigmoid(w)


MODEL = _config.register(NeuronModel(
    "lif", 0, ("soft", "hard"), check_values=check_values, charge=charge, reset=reset_now,
    # (FLOPs, ACs) per element-step, as SpikingJelly's counters count its LIFNode (counters.py)
    counts={"hard": (10, 6), "soft": (8, 5)},
    configs=(lif_config, plif_config), functions=(lif_multistep, lif_step, plif_multistep, plif_step),
    learnable_k=True))
