"""Drop-in LIF neuron modules.

`LIFNode` takes SpikingJelly's constructor arguments and defaults, plus `grad_mode` and
`backend`; `SLTTLIFNode` has the SLTT paper's defaults; `OTTTLIFNode` also returns OTTT's
presynaptic trace. All keep their membrane potential `v` between single-step calls, are
cleared by `reset()` (and by SpikingJelly's `functional.reset_net`), and follow
`step_mode` ('s': x is one step [B, ...]; 'm': x is [T, B, ...]).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import surrogate as _surrogate
from .._config import make_config
from ..ops import lif_multistep, lif_step

__all__ = ["LIFNode", "SLTTLIFNode", "PaperLIFNode", "OTTTLIFNode", "set_step_mode", "reset_net"]


class LIFNode(nn.Module):
    """Leaky integrate-and-fire neuron on the fused kernels (DESIGN.md section 2).

    Shapes: step_mode='s': x [B, ...] -> spikes [B, ...]; step_mode='m': x [T, B, ...] ->
    spikes [T, B, ...]. Spikes in x's dtype; `v` is float32 (float64 for float64 input).
    grad_mode='bptt' back-propagates through time (across single-step calls too, until
    `reset()`); 'sltt' drops the temporal path: v carries no gradient.

    Example:
        >>> lif = LIFNode(tau=2.0, step_mode="m", grad_mode="sltt")
        >>> s = lif(torch.randn(4, 8, 16))   # [T, B, N]
        >>> lif.reset()
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate_function=None,
        detach_reset: bool = False,
        step_mode: str = "s",
        grad_mode: str = "bptt",
        backend: str = "auto",
    ):
        super().__init__()
        if surrogate_function is None:
            surrogate_function = _surrogate.Sigmoid()  # SpikingJelly's default
        self.surrogate_function = _surrogate.resolve(surrogate_function)
        make_config(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                    detach_reset=detach_reset, surrogate=self.surrogate_function, grad=grad_mode)  # checks
        if step_mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.step_mode = step_mode
        self.grad_mode = grad_mode
        self.backend = backend
        self.v: Optional[torch.Tensor] = None

    def _kwargs(self):
        return dict(tau=self.tau, v_threshold=self.v_threshold, v_reset=self.v_reset, decay_input=self.decay_input,
                    detach_reset=self.detach_reset, surrogate=self.surrogate_function, grad=self.grad_mode,
                    backend=self.backend)

    def reset(self) -> None:
        """Forgets the membrane potential (and with it the BPTT graph through time)."""
        self.v = None

    def _check_state(self, state_shape):
        if self.v is None or tuple(self.v.shape) == tuple(state_shape):
            return
        if self.step_mode == "s" and tuple(state_shape[1:]) == tuple(self.v.shape):
            raise ValueError(
                f"{type(self).__name__}(step_mode='s') got x of shape {tuple(state_shape)}, which looks like "
                f"[T, ...] for the state of shape {tuple(self.v.shape)}: a multi-step input to a single-step "
                "module. Use step_mode='m' (sltt_kernels.nn.set_step_mode) or feed one step at a time."
            )
        raise ValueError(
            f"{type(self).__name__}: x's shape per step {tuple(state_shape)} does not match the kept state "
            f"{tuple(self.v.shape)}; call reset() (or functional.reset_net) between samples"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            self._check_state(x.shape)
            spike, self.v = lif_step(x, self.v, **self._kwargs())
            return spike
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__}(step_mode='m') needs x of shape [T, B, ...], got {tuple(x.shape)}")
        self._check_state(x.shape[1:])
        spikes, self.v = lif_multistep(x, self.v, **self._kwargs())
        return spikes

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, decay_input={self.decay_input}, v_threshold={self.v_threshold}, "
                f"v_reset={self.v_reset}, surrogate_function={self.surrogate_function!r}, "
                f"detach_reset={self.detach_reset}, step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, "
                f"backend={self.backend!r}")


class SLTTLIFNode(LIFNode):
    """SpikingJelly's `SLTTLIFNode` on the fused kernels: its arguments and defaults (decay_input
    True, hard reset to 0, Sigmoid surrogate, detach_reset True), single-step, grad_mode='sltt'.

    For the SLTT paper's neuron (the official code's), use `PaperLIFNode`.

    Example:
        >>> lif = SLTTLIFNode()
        >>> s = lif(torch.randn(8, 16))      # one step [B, N]
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = True,
                 step_mode: str = "s", grad_mode: str = "sltt", backend: str = "auto"):
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode=step_mode,
                         grad_mode=grad_mode, backend=backend)


class PaperLIFNode(LIFNode):
    """The SLTT paper's neuron as its official code builds it: tau 1.1, no input decay, soft reset,
    threshold 1, the triangle surrogate with alpha 1 (SpikingJelly's PiecewiseQuadratic), and
    grad_mode='sltt'. `surrogate_function=Rect()` gives the 1-bit variant (the paper's Eq. 5).

    Example:
        >>> lif = PaperLIFNode()
        >>> s = lif(torch.randn(8, 16))      # one step [B, N]
    """

    def __init__(self, tau: float = 1.1, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: Optional[float] = None, surrogate_function=None, detach_reset: bool = False,
                 step_mode: str = "s", grad_mode: str = "sltt", backend: str = "auto"):
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=_surrogate.Triangle(1.0) if surrogate_function is None
                         else surrogate_function,
                         detach_reset=detach_reset, step_mode=step_mode, grad_mode=grad_mode, backend=backend)


class OTTTLIFNode(LIFNode):
    """SpikingJelly's OTTTLIFNode on the fused kernels: an online (SLTT-mode) LIF neuron that in
    training returns [spike, trace], trace[t] = trace[t-1] * (1 - 1/tau) + spike[t] (no gradient),
    for OTTT's layers; in eval it returns the spike only. Single-step only.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: Optional[float] = None, surrogate_function=None, detach_reset: bool = True,
                 step_mode: str = "s", backend: str = "auto"):
        if step_mode != "s":
            raise ValueError("OTTTLIFNode is single-step only (step_mode='s')")
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode="s",
                         grad_mode="sltt", backend=backend)
        self.trace: Optional[torch.Tensor] = None

    def reset(self) -> None:
        super().reset()
        self.trace = None

    def forward(self, x: torch.Tensor):
        spike = super().forward(x)
        if not self.training:
            return spike
        with torch.no_grad():
            decayed = 0.0 if self.trace is None else self.trace * (1.0 - 1.0 / self.tau)
            self.trace = decayed + spike
        return [spike, self.trace]


def set_step_mode(net: nn.Module, step_mode: str) -> nn.Module:
    """Sets step_mode on every module of net that has one (as SpikingJelly's function does)."""
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
    for m in net.modules():
        if hasattr(m, "step_mode"):
            m.step_mode = step_mode
    return net


def reset_net(net: nn.Module) -> None:
    """Calls reset() on every module of net that has one (neurons, time-dropout masks)."""
    for m in net.modules():  # includes net itself
        reset = getattr(m, "reset", None)
        if callable(reset):
            reset()
