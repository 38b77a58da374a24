"""The one validator: every rule on a neuron's arguments, and the op arguments' one definition.

The public functions, the modules, the Triton ops and the fake kernels all check here, so a
mistake gets the same exception and message whichever backend would run. The C++ bindings keep
only the checks that protect memory (docs/design.md, section 4).

Exceptions: TypeError for a wrong type or dtype, ValueError for a wrong value, shape or device.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from . import surrogate as _surrogate

GRAD_MODES = ("bptt", "sltt")
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
SAVE_KINDS = ("none", "sg", "sg_spike", "h", "sg_reset", "h_v0", "h16")  # codes 0..6, as csrc/lif_math.h
HALF_DTYPES = (torch.float16, torch.bfloat16)
SURROGATE_KINDS = ("rect", "triangle", "sigmoid", "atan")  # codes 0..3
RESETS = ("soft", "hard", "none")  # codes 0..2


@dataclass(frozen=True)
class NeuronModel:
    """What the validator needs to know of a neuron model (docs/design.md, section 2).

    name: the `neuron` op argument; code: its csrc/lif_math.h enum value; resets: the resets it
    has; strict_fire: fires on h > theta (else h >= theta); reset_later: the reset of step t-1
    is applied at step t's charge (so the state is h itself); learnable_k: takes k = 1/tau as a
    tensor (a parametric time constant)."""

    name: str
    code: int
    resets: tuple
    strict_fire: bool = False
    reset_later: bool = False
    learnable_k: bool = False


# The registry: one line per model. Each has its math in csrc/neurons/<name>.h, its reference
# in reference.py (MODELS) and its Triton charge in triton/kernels.py.
MODELS = {
    "lif": NeuronModel("lif", 0, ("soft", "hard"), learnable_k=True),
    "if": NeuronModel("if", 1, ("soft", "hard")),
    "leaky": NeuronModel("leaky", 2, ("soft", "hard", "none"), strict_fire=True, reset_later=True),
}


class NeuronArgs(NamedTuple):
    """The neuron arguments of every torch.ops.sltt_kernels op, in schema order: the one
    definition (the schemas are generated from these annotations in _registration.py).

    The charge is h = v_r + decay (v - v_r) + input_gain x for 'lif' (with a tensor k = 1/tau:
    decay = 1 - k and input_gain = k if decay_input else 1), h = v + x for 'if', and the
    leaky model's for 'leaky' (decay = beta)."""

    neuron: str
    decay: float
    input_gain: float
    decay_input: bool
    v_threshold: float
    reset: str
    v_reset: float
    detach_reset: bool
    surrogate: str
    surrogate_alpha: float
    save: str
    grad: str


@dataclass(frozen=True)
class NeuronConfig:
    """A validated neuron: everything but the save kind, which depends on the call."""

    neuron: str
    decay: float
    input_gain: float
    decay_input: bool
    v_threshold: float
    reset: str
    v_reset: float
    detach_reset: bool
    surrogate: str
    surrogate_alpha: float
    grad: str

    @property
    def model(self) -> NeuronModel:
        return MODELS[self.neuron]

    def save_kind(self, needs_grad: bool, learn_k: bool = False, half: bool = False) -> str:
        """What the forward keeps for the backward (docs/design.md, section 3). half: x is
        float16 or bfloat16, so h - theta is kept in 16 bits where h would be kept, for the
        continuous surrogates (rect's window edge is a jump: rounding d could cross it)."""
        kind = self._save_kind(needs_grad, learn_k)
        return "h16" if (half and kind == "h" and self.surrogate != "rect") else kind

    def _save_kind(self, needs_grad: bool, learn_k: bool) -> str:
        if not needs_grad:
            return "none"
        if learn_k:
            return "h_v0"
        rect = self.surrogate == "rect"
        if self.grad == "sltt":
            return "sg" if rect else "h"
        if self.model.reset_later:
            if self.reset == "hard":  # the zero reset gates the gradient by the previous state
                return "sg_reset" if rect else "h_v0"
            return "sg" if rect else "h"
        if rect:
            if self.reset == "soft":
                return "sg"  # 1 bit: sg != 0
            if self.detach_reset:
                return "sg_spike"  # 2 bits: sg != 0 and s
        return "h"

    def args(self, save: str) -> NeuronArgs:
        return NeuronArgs(self.neuron, self.decay, self.input_gain, self.decay_input, self.v_threshold, self.reset,
                          self.v_reset, self.detach_reset, self.surrogate, self.surrogate_alpha, save, self.grad)


# ---------------------------------------------------------------------------------------------
# Scalars


def number(name: str, value, *, low=None, low_inclusive=True, high=None, high_inclusive=True) -> float:
    """A finite Python float from a number (or a one-element tensor, read now), else an error
    naming the argument."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.SymInt, torch.SymFloat)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    # + 0.0 turns -0.0 into 0.0: the two are one setting, and the configuration cache (keyed on
    # values, where -0.0 == 0.0) must not hand one call's zero sign to another
    value = float(value) + 0.0
    # a comparison rather than math.isfinite: under torch.compile(dynamic=True) the value may be
    # symbolic, and a comparison becomes a guard where math.isfinite cannot be traced
    if not abs(value) < math.inf:
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ValueError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value}")
    return value


def flag(name: str, value) -> bool:
    if not isinstance(value, (bool, int)) or (isinstance(value, int) and value not in (0, 1)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value, options) -> str:
    if not isinstance(value, str) or value.lower() not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return value.lower()


def _surrogate_of(surrogate):
    sg = _surrogate.resolve(surrogate)
    return sg.kind, sg.param


# ---------------------------------------------------------------------------------------------
# The public functions' keywords -> NeuronConfig, one function per model

_PLAIN = (bool, int, float, str, type(None))
_checked: dict = {}


def _cached(make):
    """Caches a checked configuration on its arguments' types and values, when every argument is
    a plain immutable value (or an immutable surrogate object): an online loop checks the same
    neuron once per layer and step. A tensor or a foreign surrogate (whose alpha may change) is
    checked afresh each call, so nothing stale is ever used."""

    @functools.wraps(make)
    def checked(**kw):
        if torch.compiler.is_compiling() or not all(
                type(v) in _PLAIN or isinstance(v, _surrogate.SurrogateFunction) for v in kw.values()):
            return make(**kw)
        key = (make.__name__,) + tuple((k, type(v), v) for k, v in sorted(kw.items()))
        cfg = _checked.get(key)
        if cfg is None:
            cfg = make(**kw)
            if len(_checked) > 1024:
                _checked.clear()
            _checked[key] = cfg
        return cfg

    return checked



@_cached
def lif_config(*, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad) -> NeuronConfig:
    """LIF: tau >= 1 (lambda = 1 - 1/tau lies in [0, 1)); v_reset None is a soft reset."""
    tau = number("tau", tau, low=1.0)
    decay_input = flag("decay_input", decay_input)
    return _reset_now_config("lif", 1.0 - 1.0 / tau, 1.0 / tau if decay_input else 1.0, decay_input,
                             v_threshold, v_reset, detach_reset, surrogate, grad)


@_cached
def plif_config(*, v_threshold, v_reset, decay_input, detach_reset, surrogate, grad) -> NeuronConfig:
    """Parametric LIF: the LIF model with k = 1/tau a tensor (checked by check_k)."""
    decay_input = flag("decay_input", decay_input)
    return _reset_now_config("lif", 0.5, 0.5 if decay_input else 1.0, decay_input, v_threshold, v_reset,
                             detach_reset, surrogate, grad)


@_cached
def if_config(*, v_threshold, v_reset, detach_reset, surrogate, grad) -> NeuronConfig:
    """IF: no leak, h = v + x."""
    return _reset_now_config("if", 1.0, 1.0, False, v_threshold, v_reset, detach_reset, surrogate, grad)


def _reset_now_config(neuron, decay, input_gain, decay_input, v_threshold, v_reset, detach_reset, surrogate,
                      grad) -> NeuronConfig:
    v_threshold = number("v_threshold", v_threshold)
    v_reset = None if v_reset is None else number("v_reset", v_reset)
    kind, alpha = _surrogate_of(surrogate)
    return NeuronConfig(neuron, decay, input_gain, decay_input, v_threshold, "soft" if v_reset is None else "hard",
                        0.0 if v_reset is None else v_reset, flag("detach_reset", detach_reset), kind, alpha,
                        choice("grad", grad, GRAD_MODES))


LEAKY_RESETS = {"subtract": "soft", "zero": "hard", "none": "none"}


@_cached
def leaky_config(*, beta, threshold, reset_mechanism, surrogate, grad) -> NeuronConfig:
    """snnTorch's Leaky with reset_delay=True: beta in [0, 1], threshold, reset_mechanism
    'subtract' | 'zero' | 'none' (the reset is detached, as snnTorch's)."""
    beta = number("beta", beta, low=0.0, high=1.0)
    threshold = number("threshold", threshold)
    mech = choice("reset_mechanism", reset_mechanism, tuple(LEAKY_RESETS))
    kind, alpha = _surrogate_of(surrogate)
    return NeuronConfig("leaky", beta, 1.0, False, threshold, LEAKY_RESETS[mech], 0.0, True, kind, alpha,
                        choice("grad", grad, GRAD_MODES))


# ---------------------------------------------------------------------------------------------
# Raw op arguments (what the Triton ops and the fake kernels are given)


def check_args(args: NeuronArgs, has_k: bool = False) -> NeuronArgs:
    """Checks raw op arguments against every rule; returns them with strings normalised."""
    if not isinstance(args, NeuronArgs):
        args = NeuronArgs(*args)
    neuron = choice("neuron", args.neuron, tuple(MODELS))
    model = MODELS[neuron]
    decay = number("decay", args.decay, low=0.0, high=1.0)
    input_gain = number("input_gain", args.input_gain, low=0.0, low_inclusive=False)
    decay_input = flag("decay_input", args.decay_input)
    v_threshold = number("v_threshold", args.v_threshold)
    reset = choice("reset", args.reset, model.resets)
    v_reset = number("v_reset", args.v_reset)
    detach_reset = flag("detach_reset", args.detach_reset)
    surrogate = choice("surrogate", args.surrogate, SURROGATE_KINDS)
    alpha = number("surrogate_alpha", args.surrogate_alpha, low=0.0, low_inclusive=False)
    save = choice("save", args.save, SAVE_KINDS)
    grad = choice("grad", args.grad, GRAD_MODES)
    if neuron == "if" and (decay != 1.0 or input_gain != 1.0):
        raise ValueError(f"neuron='if' has no leak: decay and input_gain must be 1.0, got {decay}, {input_gain}")
    if model.reset_later and (input_gain != 1.0 or not detach_reset):
        raise ValueError("neuron='leaky' needs input_gain=1.0 and detach_reset=True (its reset is detached)")
    if reset != "hard" and v_reset != 0.0:
        raise ValueError(f"v_reset must be 0.0 unless reset='hard', got {v_reset} with reset={reset!r}")
    if has_k and not model.learnable_k:
        raise ValueError(f"k (a learnable time constant) is not supported by neuron={neuron!r}")
    cfg = NeuronConfig(neuron, decay, input_gain, decay_input, v_threshold, reset, v_reset, detach_reset, surrogate,
                       alpha, grad)
    allowed = {"none", cfg.save_kind(True)}
    if has_k:
        allowed.add("h_v0")  # a learnable k; a constant one serves every save kind of its model
    if model.reset_later:  # the backward from h (h_v0 where the zero reset needs the state)
        allowed.add("h_v0" if reset == "hard" and grad == "bptt" else "h")
    else:
        allowed.add("h")  # the backward from h serves every LIF / IF configuration
    if "h" in allowed and surrogate != "rect":
        allowed.add("h16")  # h - theta in 16 bits, for float16 / bfloat16 input (checked with x)
    if save not in allowed:
        raise ValueError(f"save={save!r} cannot serve this configuration (neuron={neuron!r}, reset={reset!r}, "
                         f"surrogate={surrogate!r}, grad={grad!r}{', with k' if has_k else ''}); "
                         f"expected one of {sorted(allowed)}")
    return cfg.args(save)


# ---------------------------------------------------------------------------------------------
# Tensors: the same checks as the C++ bindings (csrc/lif_options.h), with the same messages


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
            raise ValueError(f"{name} must be [T, ...] (time first), got a 0-d tensor; use the step function "
                             "for one step")
        if x.shape[0] == 0:
            raise ValueError(f"{name} must have at least one time step (T >= 1), got shape {tuple(x.shape)}")


def check_device(t: torch.Tensor, name: str, like: torch.Tensor, like_name: str = "x") -> None:
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but {like_name} is on {like.device}")


def check_state(v, name: str, x: torch.Tensor, shape, exact_dtype: bool = False) -> None:
    """A state tensor (v0, v, a state gradient): a float tensor on x's device, of `shape`; with
    exact_dtype (the raw ops), in the state dtype of x."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(v).__name__}")
    check_device(v, name, x)
    if exact_dtype and v.dtype != state_dtype(x.dtype):
        raise TypeError(f"{name} must be {state_dtype(x.dtype)} (the state dtype for {x.dtype} input), got {v.dtype}")
    if v.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor, got {v.dtype}")
    if tuple(v.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(v.shape)}")


def check_k(k, x: torch.Tensor, exact_dtype: bool = False) -> None:
    """k = 1/tau of a parametric neuron: one element, on x's device."""
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"k must be a torch.Tensor, got {type(k).__name__}")
    check_device(k, "k", x)
    if exact_dtype and k.dtype != state_dtype(x.dtype):
        raise TypeError(f"k must be {state_dtype(x.dtype)}, got {k.dtype}")
    if k.numel() != 1:
        raise ValueError(f"k must have one element, got shape {tuple(k.shape)}")


def mask_words(n: int) -> int:
    return (n + 31) // 32


def saved_shape(save: str, T, N) -> tuple:
    """Shape of the `saved` output for T steps of N neurons (docs/design.md, section 3)."""
    if save == "sg":
        return (T, mask_words(N))
    if save in ("sg_spike", "sg_reset"):
        return (2, T, mask_words(N))
    if save in ("h", "h16"):
        return (T, N)
    if save == "h_v0":
        return (T + 1, N)
    return (0,)


def saved_dtype(save: str, x_dtype: torch.dtype) -> torch.dtype:
    if save == "h16":
        if x_dtype not in HALF_DTYPES:
            raise TypeError(f"save='h16' needs float16 or bfloat16 input, got {x_dtype}")
        return x_dtype
    return state_dtype(x_dtype) if save in ("h", "h_v0") else torch.int32


def check_saved(saved, args: NeuronArgs, grad: torch.Tensor, T, N) -> None:
    if not isinstance(saved, torch.Tensor):
        raise TypeError(f"saved must be a torch.Tensor, got {type(saved).__name__}")
    if args.save == "none":
        raise ValueError("the forward saved nothing (save='none'), so there is no backward")
    check_device(saved, "saved", grad, "the gradient")
    want = saved_shape(args.save, T, N)
    if tuple(saved.shape) != tuple(want):
        raise ValueError(f"saved must have shape {tuple(want)} for save={args.save!r}, got {tuple(saved.shape)}")
    dt = saved_dtype(args.save, grad.dtype)
    if saved.dtype != dt:
        raise TypeError(f"saved must be {dt} for save={args.save!r}, got {saved.dtype}")
    if not saved.is_contiguous():
        raise ValueError("saved must be contiguous (as the forward returned it)")
