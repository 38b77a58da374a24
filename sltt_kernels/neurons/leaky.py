"""snnTorch's Leaky with its default reset_delay=True: what Python knows of the model. Its kernel
math is csrc/neurons/leaky.h; docs/design.md, section 2.3.

With r[t] = [v[t-1] > theta] (detached) and lam = beta, the reset of step t-1 is applied at
step t's charge:

    subtract  h[t] = lam v[t-1] + x[t] - theta r[t]
    zero      h[t] = lam (r[t] ? 0 : v[t-1]) + x[t]
    none      h[t] = lam v[t-1] + x[t]
    fire      s[t] = [h[t] > theta]          state  v[t] = h[t]

Example:
    >>> spk, mem = leaky_multistep(torch.randn(4, 8, 16), beta=0.9)
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _config
from .._config import NeuronArgs, NeuronModel, cached, choice, grad_mode, number, surrogate_of, tensor_or_number
from ..ops import run_neuron

# snnTorch's reset_mechanism -> the op's reset
RESETS = {"subtract": "soft", "zero": "hard", "none": "none"}


@cached
def leaky_config(*, beta, threshold, reset_mechanism, surrogate, grad) -> NeuronArgs:
    """snnTorch's Leaky with reset_delay=True: beta in [0, 1] (a tensor beta is the op's k),
    threshold, reset_mechanism
    'subtract' | 'zero' | 'none' (the reset is detached, as snnTorch's)."""
    beta = number("beta", beta, low=0.0, high=1.0)
    threshold = number("threshold", threshold)
    mech = choice("reset_mechanism", reset_mechanism, tuple(RESETS))
    kind, alpha = surrogate_of(surrogate)
    return NeuronArgs("leaky", beta, 1.0, False, threshold, RESETS[mech], 0.0, True, kind, alpha, "none",
                      grad_mode("grad", grad))



def check_values(args: NeuronArgs) -> None:
    if args.input_gain != 1.0 or not args.detach_reset:
        raise ValueError("neuron='leaky' needs input_gain=1.0 and detach_reset=True (its reset is detached)")


def charge(args: NeuronArgs, v, x, k, theta):
    """k: beta as a tensor (one element or one per neuron), else args.decay; theta: the
    threshold (a number or such a tensor)."""
    beta = args.decay if k is None else k
    r = (v.detach() > (theta.detach() if isinstance(theta, torch.Tensor) else theta)).to(v.dtype)
    if args.reset == "soft":
        return beta * v + x - theta * r
    if args.reset == "hard":
        return beta * torch.where(r > 0, torch.zeros_like(v), v) + x
    return beta * v + x


def reset(args: NeuronArgs, h, s, theta):
    return h  # applied at the next charge


def _run_leaky(x, mem, beta, threshold, reset_mechanism, surrogate, grad, backend, multistep):
    beta, beta_t = tensor_or_number(beta, 0.5)
    threshold, threshold_t = tensor_or_number(threshold, 1.0)
    cfg = leaky_config(beta=beta, threshold=threshold, reset_mechanism=reset_mechanism, surrogate=surrogate,
                       grad=grad)
    return run_neuron(cfg, x, mem, multistep=multistep, backend=backend, k=beta_t, threshold=threshold_t,
                      k_name="beta")


def leaky_multistep(x: torch.Tensor, mem0: Optional[torch.Tensor] = None, *, beta, threshold=1.0,
                    reset_mechanism: str = "subtract", surrogate="atan", grad: str = "bptt",
                    backend: str = "auto"):
    """Fused multi-step snnTorch `Leaky` with its default reset_delay=True (docs/design.md, 2.3).

    mem[t] = beta mem[t-1] + x[t] - threshold r[t] ('subtract'; 'zero' zeroes mem[t-1] instead;
    'none' does neither), r[t] = [mem[t-1] > threshold] detached; spike[t] = [mem[t] > threshold].
    x: [T, ...]; mem0: [...] (default 0). beta and threshold: numbers, or tensors of one element
    or of a shape that broadcasts to [...] (one per neuron, as snnTorch's learn_beta and its NIR
    import make them); a tensor that requires grad gets its gradient from the fused backward. A
    beta tensor is used as given (snnTorch's module clamps it to [0, 1] first; ours does too).
    Returns (spikes [T, ...], mem [...]).

    Example:
        >>> spk, mem = leaky_multistep(torch.randn(4, 8, 16), beta=0.9)
        >>> beta = torch.full((16,), 0.9, requires_grad=True)          # one per feature
        >>> spk, mem = leaky_multistep(torch.randn(4, 8, 16), beta=beta)
    """
    return _run_leaky(x, mem0, beta, threshold, reset_mechanism, surrogate, grad, backend, True)


def leaky_step(x: torch.Tensor, mem: Optional[torch.Tensor] = None, *, beta, threshold=1.0,
               reset_mechanism: str = "subtract", surrogate="atan", grad: str = "bptt", backend: str = "auto"):
    """One step of snnTorch's Leaky (reset_delay=True): x, mem: [...]; beta, threshold as
    leaky_multistep. Returns (spk, mem)."""
    return _run_leaky(x, mem, beta, threshold, reset_mechanism, surrogate, grad, backend, False)


MODEL = _config.register(NeuronModel(
    "leaky", 2, ("soft", "hard", "none"), check_values=check_values, charge=charge, reset=reset,
    # no SpikingJelly twin: our estimate in SpikingJelly's way of counting (counters.py)
    counts={"hard": (5, 3), "soft": (5, 3), "none": (3, 1)},
    configs=(leaky_config,), functions=(leaky_multistep, leaky_step), strict_fire=True, reset_later=True,
    learnable_k=True))  # k is beta (lam = k)
