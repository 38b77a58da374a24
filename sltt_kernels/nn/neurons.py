"""Drop-in neuron modules on the fused kernels, SpikingJelly's family.

`LIFNode`, `IFNode`, `ParametricLIFNode`, `SLTTLIFNode` and `OTTTLIFNode` take SpikingJelly's
constructor arguments and defaults (plus `grad_mode` and `backend`) and keep its state protocol
(nn/memory_module.py): `v` (a float, v_reset, until the first step; a tensor after), `reset()`,
`detach()`, `register_memory` / `memories()` / `named_memories()`, `store_v_seq` / `v_seq`, and
`step_mode` ('s': x is one step [B, ...]; 'm': x is [T, B, ...]). `PaperLIFNode` is the SLTT
paper's neuron. snnTorch's `Leaky` is in nn/leaky.py; every neuron derives from `BaseNode`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .. import _config
from .. import surrogate as _surrogate
from .._backend import check_backend_name
from ..ops import run_neuron
from .memory_module import MemoryModule

__all__ = ["BaseNode", "LIFNode", "IFNode", "ParametricLIFNode", "SLTTLIFNode", "PaperLIFNode", "OTTTLIFNode",
           "surrogate_or"]


class BaseNode(MemoryModule):
    """The state, step modes and v_seq of every neuron here; subclasses say which neuron runs
    (`_config_now()`, `_k()`). grad_mode='bptt' back-propagates through time (across
    single-step calls too, until `reset()`); 'sltt' drops the temporal path."""

    def __init__(self, v_reset_value: float, step_mode: str, grad_mode: str, backend: str, store_v_seq: bool):
        super().__init__()
        _config.choice("grad_mode", grad_mode, _config.GRAD_MODES)
        self.step_mode = step_mode
        self.grad_mode = grad_mode
        self.backend = check_backend_name(backend)
        self.store_v_seq = bool(store_v_seq)
        self.register_memory("v", v_reset_value)
        if self.store_v_seq:
            self.register_memory("v_seq", None)

    def _config_now(self) -> _config.NeuronConfig:
        raise NotImplementedError

    def _k(self) -> Optional[torch.Tensor]:
        return None

    def _state_for(self, shape, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The kept state as a tensor of `shape` (a float v is expanded), or None for v_r."""
        v = self.v
        if isinstance(v, torch.Tensor):
            if tuple(v.shape) == tuple(shape):
                return v
            if self.step_mode == "s" and tuple(shape[1:]) == tuple(v.shape):
                raise ValueError(
                    f"{type(self).__name__}(step_mode='s') got x of shape {tuple(shape)}, which looks like "
                    f"[T, ...] for the state of shape {tuple(v.shape)}: a multi-step input to a single-step module. "
                    "Use step_mode='m' (sltt_kernels.nn.functional.set_step_mode) or feed one step at a time.")
            raise ValueError(f"{type(self).__name__}: x's shape per step {tuple(shape)} does not match the kept "
                             f"state {tuple(v.shape)}; call reset() (or functional.reset_net) between samples")
        v = float(v)
        cfg = self._config_now()
        if v == cfg.v_reset and self.step_mode == "m":
            return None  # the kernels start from v_r
        # full_like (not full): the op SpikingJelly's neurons use here, which its op counters know
        like = x if tuple(x.shape) == tuple(shape) else x[0]
        return torch.full_like(like, v, dtype=_config.state_dtype(x.dtype), memory_format=torch.contiguous_format)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        spike, self.v = run_neuron(self._config_now(), x, self._state_for(x.shape, x), multistep=False,
                                   backend=self.backend, k=self._k())
        if self.store_v_seq:
            self._append_v_seq(self.v)
        return spike

    def _append_v_seq(self, v: torch.Tensor) -> None:
        # single-step: v_seq grows by one step per call until reset() (SpikingJelly 2.0's rule);
        # a new shape, device or dtype starts a new sequence
        step = v.unsqueeze(0)
        seq = self.v_seq
        if (not isinstance(seq, torch.Tensor) or seq.shape[1:] != step.shape[1:] or seq.device != step.device
                or seq.dtype != step.dtype):
            self.v_seq = step.clone()
        else:
            self.v_seq = torch.cat((seq, step))

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__}(step_mode='m') needs x of shape [T, B, ...], "
                             f"got {tuple(x_seq.shape)}")
        cfg = self._config_now()
        v0 = self._state_for(x_seq.shape[1:], x_seq)
        if not self.store_v_seq:
            spikes, self.v = run_neuron(cfg, x_seq, v0, multistep=True, backend=self.backend, k=self._k())
            return spikes
        # v_seq: one step at a time, so every v[t] is an output (the gradients are the same)
        spikes, vs = [], []
        v = v0 if v0 is not None else torch.full_like(x_seq[0], cfg.v_reset, dtype=_config.state_dtype(x_seq.dtype),
                                                      memory_format=torch.contiguous_format)
        for t in range(x_seq.shape[0]):
            s, v = run_neuron(cfg, x_seq[t], v, multistep=False, backend=self.backend, k=self._k())
            spikes.append(s)
            vs.append(v)
        self.v = v
        self.v_seq = torch.stack(vs)
        return torch.stack(spikes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step_forward(x)
        return self.multi_step_forward(x)


def surrogate_or(default, given):
    return _surrogate.resolve(default if given is None else given)


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron (SpikingJelly's LIFNode; docs/design.md, section 2.1).

    Shapes: step_mode='s': x [B, ...] -> spikes [B, ...]; step_mode='m': x [T, B, ...] ->
    spikes [T, B, ...]. Spikes in x's dtype; `v` is float32 (float64 for float64 input).

    Example:
        >>> lif = LIFNode(tau=2.0, step_mode="m", grad_mode="sltt")
        >>> s = lif(torch.randn(4, 8, 16))   # [T, B, N]
        >>> lif.reset()
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "bptt"):
        self_surrogate = surrogate_or(_surrogate.Sigmoid(), surrogate_function)  # SpikingJelly's default
        _config.lif_config(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                           detach_reset=detach_reset, surrogate=self_surrogate, grad=grad_mode)  # checks
        super().__init__(0.0 if v_reset is None else float(v_reset), step_mode, grad_mode, backend, store_v_seq)
        self.surrogate_function = self_surrogate
        self.tau = float(tau)
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)

    def _config_now(self):
        return _config.lif_config(tau=self.tau, v_threshold=self.v_threshold, v_reset=self.v_reset,
                                  decay_input=self.decay_input, detach_reset=self.detach_reset,
                                  surrogate=self.surrogate_function, grad=self.grad_mode)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, decay_input={self.decay_input}, v_threshold={self.v_threshold}, "
                f"v_reset={self.v_reset}, surrogate_function={self.surrogate_function!r}, "
                f"detach_reset={self.detach_reset}, step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, "
                f"backend={self.backend!r}")


class IFNode(BaseNode):
    """Integrate-and-fire neuron (SpikingJelly's IFNode): h = v + x (docs/design.md, section 2.2).

    Example:
        >>> n = IFNode(v_reset=None, step_mode="m")
        >>> s = n(torch.randn(4, 8, 16))
    """

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                 detach_reset: bool = False, step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False,
                 grad_mode: str = "bptt"):
        self_surrogate = surrogate_or(_surrogate.Sigmoid(), surrogate_function)
        _config.if_config(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                          surrogate=self_surrogate, grad=grad_mode)
        super().__init__(0.0 if v_reset is None else float(v_reset), step_mode, grad_mode, backend, store_v_seq)
        self.surrogate_function = self_surrogate
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)

    def _config_now(self):
        return _config.if_config(v_threshold=self.v_threshold, v_reset=self.v_reset, detach_reset=self.detach_reset,
                                 surrogate=self.surrogate_function, grad=self.grad_mode)

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate_function={self.surrogate_function!r}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, backend={self.backend!r}")


class ParametricLIFNode(BaseNode):
    """Parametric LIF (SpikingJelly's ParametricLIFNode): 1/tau = sigmoid(w), w a learnable
    parameter initialised so that tau = init_tau; its gradient comes from the fused backward.

    Example:
        >>> n = ParametricLIFNode(init_tau=2.0, step_mode="m")
        >>> n(torch.randn(4, 8, 16)).sum().backward()   # n.w.grad
    """

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "bptt"):
        init_tau = _config.number("init_tau", init_tau, low=1.0, low_inclusive=False)
        self_surrogate = surrogate_or(_surrogate.Sigmoid(), surrogate_function)
        _config.plif_config(v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                            detach_reset=detach_reset, surrogate=self_surrogate, grad=grad_mode)
        super().__init__(0.0 if v_reset is None else float(v_reset), step_mode, grad_mode, backend, store_v_seq)
        self.surrogate_function = self_surrogate
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))  # sigmoid(w) = 1 / init_tau

    def _config_now(self):
        return _config.plif_config(v_threshold=self.v_threshold, v_reset=self.v_reset, decay_input=self.decay_input,
                                   detach_reset=self.detach_reset, surrogate=self.surrogate_function,
                                   grad=self.grad_mode)

    def _k(self):
        return torch.sigmoid(self.w)

    def extra_repr(self) -> str:
        return (f"tau={1.0 / float(torch.sigmoid(self.w.detach())):.4f}, decay_input={self.decay_input}, "
                f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate_function={self.surrogate_function!r}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, backend={self.backend!r}")


class SLTTLIFNode(LIFNode):
    """SpikingJelly's `SLTTLIFNode` on the fused kernels: its arguments and defaults (decay_input
    True, hard reset to 0, Sigmoid surrogate, detach_reset True), grad_mode='sltt'.

    For the SLTT paper's neuron (the official code's), use `PaperLIFNode`.

    Example:
        >>> lif = SLTTLIFNode()
        >>> s = lif(torch.randn(8, 16))      # one step [B, N]
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = True,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "sltt"):
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode=step_mode,
                         backend=backend, store_v_seq=store_v_seq, grad_mode=grad_mode)


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
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "sltt"):
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=_surrogate.Triangle(1.0) if surrogate_function is None
                         else surrogate_function,
                         detach_reset=detach_reset, step_mode=step_mode, backend=backend, store_v_seq=store_v_seq,
                         grad_mode=grad_mode)


class OTTTLIFNode(LIFNode):
    """SpikingJelly's OTTTLIFNode on the fused kernels: an online (SLTT-mode) LIF neuron that in
    training returns [spike, trace], trace[t] = trace[t-1] * (1 - 1/tau) + spike[t] (no gradient),
    for OTTT's layers; in eval it returns the spike only. Single-step only.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: Optional[float] = None, surrogate_function=None, detach_reset: bool = True,
                 step_mode: str = "s", store_v_seq: bool = False, backend: str = "auto"):
        if step_mode != "s":
            raise ValueError(f"OTTTLIFNode is single-step only: step_mode must be 's', got {step_mode!r}")
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode="s",
                         backend=backend, store_v_seq=store_v_seq, grad_mode="sltt")
        self.register_memory("trace", None)

    def supported_step_mode(self) -> Tuple[str, ...]:
        return ("s",)  # its trace is per step; set_step_mode(net, 'm') fails here rather than later

    def forward(self, x: torch.Tensor):
        spike = super().forward(x)
        if not self.training:
            return spike
        with torch.no_grad():
            decayed = 0.0 if self.trace is None else self.trace * (1.0 - 1.0 / self.tau)
            self.trace = decayed + spike
        return [spike, self.trace]
