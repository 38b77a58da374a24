"""The integrate-and-fire neuron (SpikingJelly's IFNode): what Python knows of the model. Its
kernel math is csrc/neurons/if.h; docs/design.md, section 2.2.

    charge  h[t] = v[t-1] + x[t]          fire and reset as LIF (neurons/lif.py)

Example:
    >>> spikes, v = if_multistep(torch.randn(4, 8, 16), v_reset=None, surrogate="rect")
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _config
from .._config import NeuronArgs, NeuronModel, cached, tensor_or_number
from ..ops import run_neuron
from .lif import reset_now, reset_now_config


@cached
def if_config(*, v_threshold, v_reset, detach_reset, surrogate, grad) -> NeuronArgs:
    """IF: no leak, h = v + x."""
    return reset_now_config("if", 1.0, 1.0, False, v_threshold, v_reset, detach_reset, surrogate, grad)



def check_values(args: NeuronArgs) -> None:
    if args.decay != 1.0 or args.input_gain != 1.0:
        raise ValueError(f"neuron='if' has no leak: decay and input_gain must be 1.0, got {args.decay}, "
                         f"{args.input_gain}")


def charge(args: NeuronArgs, v, x, k, theta):
    return v + x


def if_multistep(x: torch.Tensor, v0: Optional[torch.Tensor] = None, *, v_threshold=1.0,
                 v_reset: Optional[float] = 0.0, detach_reset: bool = False, surrogate="sigmoid",
                 grad: str = "bptt", backend: str = "auto"):
    """Fused multi-step integrate-and-fire neuron (SpikingJelly's IFNode): h = v + x, no leak.

    x: [T, ...]; v0: [...]; v_threshold: a number, or a tensor of one element or of a shape that
    broadcasts to [...] (one per neuron; learnable: its gradient is computed in the backward).
    Returns (spikes [T, ...] in x's dtype, v_last [...] in the state dtype).

    Example:
        >>> spikes, v = if_multistep(torch.randn(4, 8, 16), v_reset=None, surrogate="rect")
    """
    v_threshold, threshold = tensor_or_number(v_threshold, 1.0)
    cfg = if_config(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset, surrogate=surrogate,
                    grad=grad)
    return run_neuron(cfg, x, v0, multistep=True, backend=backend, threshold=threshold)


def if_step(x: torch.Tensor, v: Optional[torch.Tensor] = None, *, v_threshold=1.0,
            v_reset: Optional[float] = 0.0, detach_reset: bool = False, surrogate="sigmoid", grad: str = "bptt",
            backend: str = "auto"):
    """One IF time step: x, v: [...]; v_threshold as if_multistep. Returns (spike, v_new)."""
    v_threshold, threshold = tensor_or_number(v_threshold, 1.0)
    cfg = if_config(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset, surrogate=surrogate,
                    grad=grad)
    return run_neuron(cfg, x, v, multistep=False, backend=backend, threshold=threshold)


MODEL = _config.register(NeuronModel(
    "if", 1, ("soft", "hard"), check_values=check_values, charge=charge, reset=reset_now,
    counts={"hard": (7, 4), "soft": (5, 3)},  # as SpikingJelly's counters count its IFNode
    configs=(if_config,), functions=(if_multistep, if_step)))
