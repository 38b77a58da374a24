"""The one validator: the rules every neuron's arguments share, the registry of neuron models, and
the op arguments' one record (`NeuronArgs`).

Each neuron model lives in its own file (sltt_kernels/neurons/, mirroring csrc/neurons/) and
registers a `NeuronModel` here: its keywords, value rules, reference math and op counts. The public
functions, the modules, the Triton ops and the fake kernels all check through this module, so a
mistake gets the same exception and message whichever backend would run. The C++ bindings repeat
the model rules for raw native calls (docs/design.md, section 4).

Exceptions: TypeError for a wrong type or dtype, ValueError for a wrong value, shape or device.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Tuple

import torch

from . import surrogate as _surrogate

GRAD_MODES = ("bptt", "sltt")
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
HALF_DTYPES = (torch.float16, torch.bfloat16)
# The codes are the tuples' positions, the codes csrc's lists give (X(enumerator, code, name) in
# csrc/lif_math.h; tests/kernels/test_csrc_lists.py compares them).
SAVE_KINDS = ("none", "sg", "sg_spike", "h", "sg_reset", "h_v0", "h16", "spike_state")
RESETS = ("soft", "hard", "none")
SURROGATE_KINDS = _surrogate.KINDS  # the surrogate registry's names, in code order


class NeuronArgs(NamedTuple):
    """The neuron arguments of every torch.ops.sltt_kernels op, in schema order: the one record
    (the schemas are generated from these annotations in _registration.py). A checked
    configuration from a model's keywords is a NeuronArgs whose `save` the call then picks
    (`args(cfg.save_kind(...))`).

    The charge is h = v_r + decay (v - v_r) + input_gain x for 'lif' (with a tensor k = 1/tau:
    decay = 1 - k and input_gain = k if decay_input else 1), h = v + x for 'if', and the
    leaky model's for 'leaky' (decay = beta): docs/design.md, section 2."""

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

    @property
    def model(self) -> "NeuronModel":
        return MODELS[self.neuron]

    def args(self, save: str) -> "NeuronArgs":
        """These arguments with the save kind `save`."""
        return self._replace(save=save)

    def save_kind(self, needs_grad: bool, learn_k: bool = False, half: bool = False, step: bool = False) -> str:
        """What the forward keeps for the backward (docs/design.md, section 3). learn_k: a
        parameter tensor (k or the threshold) needs its gradient, which h_v0 gives. half: x is
        float16 or bfloat16, so h - theta is kept in 16 bits where h would be kept, for the
        continuous surrogates (rect's window edge is a jump: rounding d could cross it).
        step: the single-step op, whose backward can also read the step's output state, so an
        SLTT step of a soft-reset, reset-now model keeps only the spike bit ('spike_state'),
        whatever the input dtype (the state is float32 or float64, so d is rebuilt exactly)."""
        kind = self._save_kind(needs_grad, learn_k)
        if step and kind == "h" and self.spike_state_serves():
            return "spike_state"
        return "h16" if (half and kind == "h" and self.surrogate != "rect") else kind

    def spike_state_serves(self) -> bool:
        """Whether save='spike_state' can serve these arguments (on the step ops): an SLTT
        backward (no temporal path), a soft reset applied at the step that fires (so v[t] is
        h - theta or h, as the forward rounded them), and a continuous surrogate (rect keeps its
        1-bit window mask)."""
        return (self.grad == "sltt" and self.reset == "soft" and not self.model.reset_later
                and self.surrogate != "rect")

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


@dataclass(frozen=True)
class NeuronModel:
    """What the package knows of a neuron model, registered by its file in sltt_kernels/neurons/
    (docs/design.md, sections 2 and 6).

    name: the `neuron` op argument (csrc/neurons/neurons.h's list names it the same); code: its
    csrc enum value; resets: the resets it has; strict_fire: fires on h > theta (else h >=
    theta); reset_later: the reset of step t-1 is applied at step t's charge (so the state is h
    itself); learnable_k: takes k as a tensor (LIF: 1/tau; leaky: beta); check_values(args): its value rules beyond
    the shared ones (raises ValueError); charge(args, v, x, k, theta) and reset(args, h, s, theta): the
    reference's equations; counts: reset -> (FLOPs, ACs) per element-step of the forward, as
    SpikingJelly's op counters count the same neuron (counters.py); functions: its public
    multi-step and one-step functions; configs: its keyword checkers (keywords -> NeuronArgs)."""

    name: str
    code: int
    resets: Tuple[str, ...]
    check_values: Callable[[NeuronArgs], None]
    charge: Callable
    reset: Callable
    counts: Dict[str, Tuple[int, int]]
    functions: Tuple[Callable, ...] = ()
    configs: Tuple[Callable, ...] = ()
    strict_fire: bool = False
    reset_later: bool = False
    learnable_k: bool = False


# The registry, filled by the model files (sltt_kernels/neurons/), in code order.
MODELS: Dict[str, NeuronModel] = {}


def public_function(name: str):
    """A registered model's public function by name (lif_multistep, ...), or None."""
    for model in MODELS.values():
        for fn in model.functions:
            if fn.__name__ == name:
                return fn
    return None


def register(model: NeuronModel) -> NeuronModel:
    """Adds a neuron model to the registry (each file in sltt_kernels/neurons/ calls this once)."""
    if model.name in MODELS:
        raise ValueError(f"neuron model {model.name!r} is registered twice")
    missing = [r for r in model.resets if r not in RESETS]
    if missing:
        raise ValueError(f"neuron model {model.name!r}: unknown resets {missing}")
    MODELS[model.name] = model
    return model


def check_registry() -> None:
    """After every model file registered: the codes are csrc's list positions 0..n-1, and the
    registry is kept in that order (the order error messages list the models in)."""
    ordered = sorted(MODELS.values(), key=lambda m: m.code)
    if [m.code for m in ordered] != list(range(len(ordered))):
        raise ValueError("neuron model codes must be 0..n-1, as csrc/neurons/neurons.h lists them; got "
                         + ", ".join(f"{m.name}={m.code}" for m in ordered))
    MODELS.clear()
    MODELS.update((m.name, m) for m in ordered)


# ---------------------------------------------------------------------------------------------
# Scalars


def number(name: str, value, *, low=None, low_inclusive=True, high=None, high_inclusive=True) -> float:
    """A finite Python float from a real number: a Python int or float, a NumPy scalar or 0-d
    array (np.float32(2.0)), any numbers.Real, or a one-element tensor (read now); else an error
    naming the argument. bool and complex values are refused (TypeError): True is not a time
    constant, and a complex one has no order."""
    given = type(value).__name__
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    elif not isinstance(value, (int, float, torch.SymInt, torch.SymFloat)):
        value = _real_scalar(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.SymInt, torch.SymFloat)):
        raise TypeError(f"{name} must be a real number, got {given} {value!r}")
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


def _real_scalar(name: str, value):
    """A NumPy scalar or 0-d array as the Python value .item() gives (bool and complex stay what
    they are, for number() to refuse), another numbers.Real as a float; anything else unchanged
    (number() names its type). NumPy is not imported: its scalars and arrays are recognised by
    their 0-d shape and .item(), as torch's own one-element tensors are."""
    shape = getattr(value, "shape", None)
    if shape is not None and callable(getattr(value, "item", None)):
        if tuple(shape) != ():
            raise ValueError(f"{name} must be a number, got a {type(value).__name__} of shape {tuple(shape)}")
        return value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def flag(name: str, value) -> bool:
    if not isinstance(value, (bool, int)) or (isinstance(value, int) and value not in (0, 1)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value, options, exact: bool = False) -> str:
    """One of `options`: a wrong type is a TypeError, an unknown string a ValueError. The public
    keywords take any case ('BPTT'); the raw op arguments (exact) only the options' own
    spelling, as the native ops do."""
    expected = ", ".join(repr(o) for o in options)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {expected}; got {type(value).__name__} {value!r}")
    key = value if exact else value.lower()
    if key not in options:
        raise ValueError(f"{name} must be one of {expected}, got {value!r}")
    return key


def surrogate_of(surrogate) -> Tuple[str, float]:
    """(kind, parameter) of a surrogate given as a name, one of our objects or a peer's."""
    sg = _surrogate.resolve(surrogate)
    return sg.kind, sg.param


# ---------------------------------------------------------------------------------------------
# The public functions' keywords -> NeuronArgs: each model's `config` (sltt_kernels/neurons/)
# checks its own keywords, with this cache around it

_PLAIN = (bool, int, float, str, type(None))
_checked: dict = {}


def tensor_or_number(value, placeholder: float):
    """A neuron parameter that may be a tensor (per neuron, or learnable): (the number for the
    checked configuration, the tensor or None). A tensor's configuration holds `placeholder`,
    which the kernels replace with the tensor's values."""
    if isinstance(value, torch.Tensor):
        return placeholder, value
    return value, None


def cached(make):
    """Caches a checked configuration on its arguments' types and values, when every argument is
    a plain immutable value (or an immutable surrogate object): an online loop checks the same
    neuron once per layer and step. A tensor or a foreign surrogate (whose alpha may change) is
    checked afresh each call, so nothing stale is ever used."""

    @functools.wraps(make)
    def checked(**kw):
        if torch.compiler.is_compiling() or not all(
                type(v) in _PLAIN or isinstance(v, _surrogate.SurrogateFunction) for v in kw.values()):
            return make(**kw)
        key = (make.__module__, make.__name__) + tuple((k, type(v), v) for k, v in sorted(kw.items()))
        cfg = _checked.get(key)
        if cfg is None:
            cfg = make(**kw)
            if len(_checked) > 1024:
                _checked.clear()
            _checked[key] = cfg
        return cfg

    return checked


def grad_mode(name: str, value) -> str:
    return choice(name, value, GRAD_MODES)


def __getattr__(name: str):
    # lif_config, if_config, plif_config, leaky_config, ...: kept here by their old names; each
    # lives in its model's file now and comes with its registration
    for model in MODELS.values():
        for fn in model.configs:
            if fn.__name__ == name:
                return fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Raw op arguments (what the Triton ops and the fake kernels are given)


def check_args(args: NeuronArgs, has_k: bool = False, has_threshold: bool = False) -> NeuronArgs:
    """Checks raw op arguments against every rule; returns them as a NeuronArgs of Python values.
    Strings must be spelled as the native ops spell them (lower case). has_k, has_threshold: the
    op was given k or a threshold tensor (either may be learnable: h_v0 serves)."""
    if not isinstance(args, NeuronArgs):
        args = NeuronArgs(*args)
    neuron = choice("neuron", args.neuron, tuple(MODELS), exact=True)
    model = MODELS[neuron]
    decay = number("decay", args.decay, low=0.0, high=1.0)
    input_gain = number("input_gain", args.input_gain, low=0.0, low_inclusive=False)
    decay_input = flag("decay_input", args.decay_input)
    v_threshold = number("v_threshold", args.v_threshold)
    reset = choice("reset", args.reset, model.resets, exact=True)
    v_reset = number("v_reset", args.v_reset)
    detach_reset = flag("detach_reset", args.detach_reset)
    surrogate = choice("surrogate", args.surrogate, SURROGATE_KINDS, exact=True)
    alpha = number("surrogate_alpha", args.surrogate_alpha, low=0.0, low_inclusive=False)
    save = choice("save", args.save, SAVE_KINDS, exact=True)
    grad = choice("grad", args.grad, GRAD_MODES, exact=True)
    cfg = NeuronArgs(neuron, decay, input_gain, decay_input, v_threshold, reset, v_reset, detach_reset, surrogate,
                     alpha, "none", grad)
    model.check_values(cfg)
    if reset != "hard" and v_reset != 0.0:
        raise ValueError(f"v_reset must be 0.0 unless reset='hard', got {v_reset} with reset={reset!r}")
    if has_k and not model.learnable_k:
        raise ValueError(f"k (a learnable time constant) is not supported by neuron={neuron!r}")
    allowed = {"none", cfg.save_kind(True)}
    if has_k or has_threshold:
        allowed.add("h_v0")  # a learnable k or threshold; a constant one serves every save kind
    if model.reset_later:  # the backward from h (h_v0 where the zero reset needs the state)
        allowed.add("h_v0" if reset == "hard" and grad == "bptt" else "h")
    else:
        allowed.add("h")  # the backward from h serves every reset-now configuration
    if "h" in allowed and surrogate != "rect":
        allowed.add("h16")  # h - theta in 16 bits, for float16 / bfloat16 input (checked with x)
    if cfg.spike_state_serves():
        allowed.add("spike_state")  # the step ops only (check_fwd / check_bwd refuse the multi-step ones)
    if save not in allowed:
        raise ValueError(f"save={save!r} cannot serve this configuration (neuron={neuron!r}, reset={reset!r}, "
                         f"surrogate={surrogate!r}, grad={grad!r}{', with k' if has_k else ''}"
                         f"{', with a threshold tensor' if has_threshold else ''}); "
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


def check_param(t, name: str, x: torch.Tensor, state_shape, exact_dtype: bool = False) -> None:
    """A neuron parameter given as a tensor (k, threshold): on x's device, floating, with one
    element or the state's shape `state_shape` (one per neuron); with exact_dtype (the raw ops),
    in the state dtype of x."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    check_device(t, name, x)
    if exact_dtype and t.dtype != state_dtype(x.dtype):
        raise TypeError(f"{name} must be {state_dtype(x.dtype)}, got {t.dtype}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if t.numel() != 1 and tuple(t.shape) != tuple(state_shape):
        raise ValueError(f"{name} must have one element or the state's shape {tuple(state_shape)} (one per neuron), "
                         f"got shape {tuple(t.shape)}")


def check_input_affine(in_scale, in_shift, x: torch.Tensor, state_shape, exact_dtype: bool = True) -> None:
    """The raw forward ops' in_scale and in_shift (the neuron's input is x * in_scale + in_shift,
    docs/design.md, section 4.3): given together or not at all, each in the state dtype of x, on
    x's device, with one element or the state's shape (a per-channel value as an expanded view of
    it, which the kernels read without a copy). exact_dtype=False (the reference): any float dtype."""
    if (in_scale is None) != (in_shift is None):
        given, missing = ("in_scale", "in_shift") if in_shift is None else ("in_shift", "in_scale")
        raise ValueError(f"{given} was given without {missing}: the two are given together (the neuron's input "
                         "is x * in_scale + in_shift)")
    if in_scale is None:
        return
    for name, t in (("in_scale", in_scale), ("in_shift", in_shift)):
        check_param(t, name, x, state_shape, exact_dtype=exact_dtype)


def channel_values(t: torch.Tensor, state_shape) -> Tuple[torch.Tensor, int, int, int]:
    """(values, inner, count, stride) such that neuron n (in the state's row-major order) reads
    the element ((n // inner) % count) * stride places after values' first: how the kernels read
    in_scale and in_shift (values is a view of t, or a contiguous copy of it).
    t has one element or the state's shape; a tensor that varies along one dimension only (a
    per-channel value expanded to the state) is read in place, anything else from a contiguous
    copy. The C++ bindings compute the same (csrc/lif_options.h, channel_tensor).

    Example:
        >>> channel_values(torch.arange(3.0).view(3, 1, 1).expand(2, 3, 4, 4), (2, 3, 4, 4))[1:]
        (16, 3, 1)
    """
    varying = [d for d in range(t.dim()) if t.shape[d] > 1 and t.stride(d) != 0]
    if not varying:  # one element, or one expanded to the state: its first, a view (no copy)
        return t.as_strided((1,), (1,)), 1, 1, 0
    if len(varying) == 1:
        d = varying[0]
        # the elements t holds, from its first: a view of t's storage, no copy
        return t.as_strided((t.shape[d],), (t.stride(d),)), math.prod(state_shape[d + 1:]), t.shape[d], t.stride(d)
    return t.contiguous().reshape(-1), 1, math.prod(state_shape), 1


def mask_words(n: int) -> int:
    return (n + 31) // 32


def saved_shape(save: str, T, N) -> tuple:
    """Shape of the `saved` output for T steps of N neurons (docs/design.md, section 3)."""
    if save in ("sg", "spike_state"):
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
