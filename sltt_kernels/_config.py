"""Checked neuron configuration, shared by every backend and by the reference."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch

from . import surrogate as _surrogate

GRAD_MODES = ("bptt", "sltt")
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class LIFConfig:
    """The LIF neuron of DESIGN.md section 2, validated.

    lam = 1 - 1/tau, c = 1/tau if decay_input else 1, v_r = v_reset or 0 (soft reset).
    """

    tau: float
    v_threshold: float
    v_reset: Optional[float]
    decay_input: bool
    detach_reset: bool
    surrogate: str
    surrogate_param: float
    grad: str

    @property
    def lam(self) -> float:
        return 1.0 - 1.0 / self.tau

    @property
    def c(self) -> float:
        return 1.0 / self.tau if self.decay_input else 1.0

    @property
    def v_r(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    def save_kind(self, needs_grad: bool) -> str:
        """What the forward keeps for the backward (DESIGN.md section 3)."""
        if not needs_grad:
            return "none"
        if self.surrogate == "rect":
            if self.grad == "sltt" or self.soft_reset:
                return "sg"  # 1 bit: sg != 0
            if self.detach_reset:
                return "sg_spike"  # 2 bits: sg != 0 and s
        return "h"

    def op_args(self, save: str) -> tuple:
        """The neuron arguments of the torch.ops.sltt_kernels schemas, in order."""
        return (
            self.tau,
            self.v_threshold,
            self.v_reset,
            self.decay_input,
            self.detach_reset,
            self.surrogate,
            self.surrogate_param,
            save,
            self.grad,
        )


def _number(name: str, value) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def make_config(
    *, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=False, surrogate="rect", grad="bptt"
) -> LIFConfig:
    """Validates the neuron keywords; every error names the argument and what was expected.

    Checked configurations are cached: an online loop calls this once per layer and step.
    (Not while torch.compile traces: Dynamo warns about lru_cache, and the check then runs once.)"""
    if torch.compiler.is_compiling():
        return _make_config(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad)
    try:
        return _make_config_cached(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad)
    except TypeError:  # an unhashable argument (a tensor): check it uncached
        return _make_config(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad)


def _make_config(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad) -> LIFConfig:
    tau = _number("tau", tau)
    if tau < 1.0:
        raise ValueError(f"tau must be >= 1 (so that lambda = 1 - 1/tau lies in [0, 1)), got {tau}")
    v_threshold = _number("v_threshold", v_threshold)
    if v_reset is not None:
        v_reset = _number("v_reset", v_reset)
    if not isinstance(grad, str) or grad.lower() not in GRAD_MODES:
        raise ValueError(f"grad must be 'bptt' or 'sltt', got {grad!r}")
    sg = _surrogate.resolve(surrogate)
    return LIFConfig(
        tau=tau,
        v_threshold=v_threshold,
        v_reset=v_reset,
        decay_input=bool(decay_input),
        detach_reset=bool(detach_reset),
        surrogate=sg.kind,
        surrogate_param=sg.param,
        grad=grad.lower(),
    )


_make_config_cached = functools.lru_cache(maxsize=512)(_make_config)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """Membrane state is float32 for every input dtype but float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_input(x, name: str = "x", multistep: bool = True) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if multistep:
        if x.dim() == 0:
            raise ValueError(f"{name} must be [T, ...] (time first), got a 0-d tensor; use lif_step for one step")
        if x.shape[0] == 0:
            raise ValueError(f"{name} must have at least one time step (T >= 1), got shape {tuple(x.shape)}")


def check_state(v, name: str, x: torch.Tensor, shape) -> None:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(v).__name__}")
    if v.device != x.device:
        raise ValueError(f"{name} is on {v.device} but x is on {x.device}")
    if v.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor, got {v.dtype}")
    if tuple(v.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (x's shape without T), got {tuple(v.shape)}")
