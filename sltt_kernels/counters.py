"""Op-counter formulas for the fused neuron ops, so FLOP / energy counters count them.

Two kinds of counter see a model's torch ops one by one, and both need a formula for ours
(`torch.ops.sltt_kernels.neuron_{multistep,step}_{fwd,bwd}` and their `triton_` twins):

* torch.utils.flop_counter.FlopCounterMode. It counts matmul-class ops only: pointwise ops
  (SpikingJelly's neurons are pointwise aten ops) count zero. Ours are registered with formulas
  that count zero too, so a model counts the same with our neurons as with SpikingJelly's, and
  our ops appear (with 0) in `get_flop_counts()`.
* SpikingJelly's op counters (spikingjelly.activation_based.op_counter: FlopCounter, ACCounter,
  MACCounter, SynOpCounter, MemoryAccessCounter), which keep one rule per op in each counter's
  `rules` and raise (strict=True) or skip an op without one. When SpikingJelly is installed,
  importing this module adds our ops' rules to every such counter made afterwards (an op the
  caller gave in `extra_rules` keeps the caller's rule). The forward counts are SpikingJelly's
  own for the same neuron on its torch backend, per element and step (measured: docs below).

Forward counts per element and step (x.numel() element-steps per call) are each model's `counts`
(sltt_kernels/neurons/<model>.py), by reset: SpikingJelly's FlopCounter / ACCounter counts of its
LIFNode / IFNode / ParametricLIFNode on CPU (FLOPs = adds/subs + muls/divs + the threshold
compare), and for snnTorch's Leaky, which has no SpikingJelly twin, our estimate counted the same
way.

ParametricLIFNode's sigmoid(w) runs in Python before our op, so SpikingJelly's counters count
it themselves. ACCounter counts an add or subtraction of two binary (all 0/1) tensors as their
non-zeros, not as one per element. Where that happens inside a LIF neuron on every sample, ours
count it the same: without input decay SpikingJelly charges h = v - (v - v_r) / tau + x, and from
the reset state v = v_r = 0 its v - (v - v_r) / tau subtracts two zero tensors (0 ACs, where the
per-element count has one per neuron): the first step of a call is counted from the state the op
is given (_first_sub_correction), and a single-step module gives it every step's. The counts then
equal SpikingJelly's, except where a later step of a multi-step call starts from a state that is
all 0/1 again, or where the input x itself is all 0/1 (spikes fed straight into a neuron): ours
count one AC per element there, an upper bound. The backward ops count 2x the forward's FLOPs (a
pointwise op's usual ratio: an estimate, not SpikingJelly's count, which depends on its
surrogate's autograd graph). MACs and
SynOps are 0 (no matmul or convolution inside a neuron), as SpikingJelly counts its neurons.

A counter's `ignore_modules` that names SpikingJelly's LIFNode / IFNode / ParametricLIFNode /
SLTTLIFNode / OTTTLIFNode / BaseNode also ignores ours of the same name (ours are not its
subclasses), so a model after replace_neurons counts as it did before.

Example:
    >>> import sltt_kernels.counters  # registers the formulas (sltt_kernels imports it)
    >>> from spikingjelly.activation_based import op_counter
    >>> counter = op_counter.FlopCounter()
    >>> with op_counter.DispatchCounterMode([counter]):
    ...     net(x)                        # net with sltt_kernels neurons
    >>> counter.get_total()               # as with SpikingJelly's neurons
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Dict, List

import torch
from torch.utils import flop_counter as _torch_flop_counter

from ._config import MODELS, NeuronArgs
from ._registration import OPS, neuron_args_of_call, op

__all__ = ["neuron_flops", "neuron_acs", "spikingjelly_rules", "install_spikingjelly_rules", "FORWARD_OPS",
           "BACKWARD_OPS"]

_BACKWARD_FACTOR = 2

# the op overloads (what a TorchDispatchMode sees: torch.ops.sltt_kernels.neuron_step_fwd.default, ...)
FORWARD_OPS = tuple(op(name, triton).default for name in OPS if name.endswith("_fwd") for triton in (False, True))
BACKWARD_OPS = tuple(op(name, triton).default for name in OPS if name.endswith("_bwd") for triton in (False, True))


def _per_element_step(args: NeuronArgs):
    """(FLOPs, ACs) per element and step of the forward: the model's `counts` (its file in
    sltt_kernels/neurons/ says where each comes from)."""
    model = MODELS.get(args.neuron)
    if model is None or args.reset not in model.counts:
        raise ValueError(f"sltt_kernels.counters: no count for neuron {args.neuron!r} with reset {args.reset!r}")
    return model.counts[args.reset]


def neuron_flops(args: NeuronArgs, element_steps: int, backward: bool = False) -> int:
    """FLOPs of one op call over `element_steps` = x.numel() (T * N for a multi-step call on
    x [T, ...]; N for a step): SpikingJelly's count for the same neuron (forward), 2x for backward.

    Example:
        >>> neuron_flops(lif_config(...).args("none"), 4 * 32 * 128)
    """
    flops = _per_element_step(args)[0] * int(element_steps)
    return flops * _BACKWARD_FACTOR if backward else flops


def neuron_acs(args: NeuronArgs, element_steps: int) -> int:
    """Accumulates (adds and subtracts) of one forward call over `element_steps` = x.numel()."""
    return _per_element_step(args)[1] * int(element_steps)


# ---------------------------------------------------------------------------------------------
# torch.utils.flop_counter


def _torch_zero_flops(*args, **kwargs) -> int:
    # FlopCounterMode counts no pointwise op, so SpikingJelly's neuron (pointwise aten ops) counts
    # 0 there: ours must too for the same model to count the same
    return 0


def _register_torch_formulas() -> None:
    for target in FORWARD_OPS + BACKWARD_OPS:
        packet = target.overloadpacket  # torch registers formulas per packet
        if packet in _torch_flop_counter.flop_registry:  # registering twice raises; importlib.reload
            continue
        _torch_flop_counter.register_flop_formula(packet)(_torch_zero_flops)


# ---------------------------------------------------------------------------------------------
# SpikingJelly's op counters: rules take (args, kwargs, out), args the op's positional ones


def _tensor_bytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


# A rule sees the op's arguments as its caller passed them; the first tensor (x or the spike
# gradient) has the element-steps, the neuron arguments are read by name from the op's schema.


def _element_steps(args, kwargs) -> int:
    return (args[0] if args else next(iter(kwargs.values()))).numel()


def _fwd_flops(args, kwargs, out) -> int:
    return neuron_flops(neuron_args_of_call(args, kwargs, tensors=3), _element_steps(args, kwargs))


def _bwd_flops(args, kwargs, out) -> int:
    return neuron_flops(neuron_args_of_call(args, kwargs, tensors=4), _element_steps(args, kwargs), backward=True)


def _fwd_acs(args, kwargs, out, multistep: bool) -> int:
    nargs = neuron_args_of_call(args, kwargs, tensors=3)
    x = args[0] if args else kwargs["x"]
    state = _tensor_arg(args, kwargs, 1, "v0" if multistep else "v")
    k = _tensor_arg(args, kwargs, 2, "k")
    first = x[0] if multistep and x.dim() > 0 else x
    return neuron_acs(nargs, x.numel()) + _first_sub_correction(nargs, first.numel(), state, k)


def _fwd_acs_multistep(args, kwargs, out) -> int:
    return _fwd_acs(args, kwargs, out, multistep=True)


def _fwd_acs_step(args, kwargs, out) -> int:
    return _fwd_acs(args, kwargs, out, multistep=False)


def _tensor_arg(args, kwargs, position: int, name: str):
    value = kwargs[name] if name in kwargs else (args[position] if len(args) > position else None)
    return value if isinstance(value, torch.Tensor) else None


def _binary_nonzeros(t: torch.Tensor):
    """SpikingJelly's ACCounter test of an operand: its non-zeros when every element is 0 or 1,
    else None."""
    if not bool(((t == 0) | (t == 1)).all()):
        return None
    return int(t.count_nonzero())


def _first_sub_correction(args: NeuronArgs, n: int, state, k) -> int:
    """ACs to add to the per-element count for the first step of a call (n neurons), where
    SpikingJelly's count differs from the per-step one: its LIF without input decay charges
    h = v - (v - v_r) / tau + x, and its ACCounter counts the subtraction v - q (q = (v - v_r) / tau)
    as the non-zeros of v and q when both are all 0 or 1, not as n. That is the case from the
    reset state v = v_r = 0 (both zeros: 0 ACs), every sample's first step. A step op sees its
    state, so each step is counted as SpikingJelly counts it; a multi-step op sees only its
    starting state (v0, or v_r everywhere when v0 is None), so its first step is."""
    if args.neuron != "lif" or args.decay_input or n == 0:
        return 0
    v_r = float(args.v_reset)
    if state is None:  # the kernel starts from v_r: q is 0, v is v_r everywhere (n non-zeros if v_r is 1)
        return -n if v_r == 0.0 else 0
    gain = k if k is not None else 1.0 - float(args.decay)  # 1 / tau
    nonzeros_v = _binary_nonzeros(state)
    nonzeros_q = None if nonzeros_v is None else _binary_nonzeros((state - v_r) * gain)
    counted = n if nonzeros_q is None else nonzeros_v + nonzeros_q
    return counted - n


def _zero(args, kwargs, out) -> int:
    return 0


def _memory_access(args, kwargs, out) -> int:
    # every tensor read once and every output written once: what the fused kernel moves
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)] + list(out)
    return sum(_tensor_bytes(t) for t in tensors)


# counter class name -> (rule for forward ops, rule for backward ops); a backward rule of None:
# the counter counts the forward only (as SpikingJelly's ACCounter)
_SJ_RULES: Dict[str, tuple] = {
    "FlopCounter": (_fwd_flops, _bwd_flops),
    "ACCounter": ({"multistep": _fwd_acs_multistep, "step": _fwd_acs_step}, None),
    "MACCounter": (_zero, _zero),
    "SynOpCounter": (_zero, _zero),
    "MemoryAccessCounter": (_memory_access, _memory_access),
}


def spikingjelly_rules(counter_kind: str) -> Dict[object, Callable]:
    """`extra_rules` for a SpikingJelly op counter class named `counter_kind` ("FlopCounter",
    "ACCounter", "MACCounter", "SynOpCounter", "MemoryAccessCounter"): {op overload: rule}.

    Example:
        >>> counter = op_counter.ACCounter(extra_rules=spikingjelly_rules("ACCounter"))
    """
    if not isinstance(counter_kind, str):
        raise TypeError(f"spikingjelly_rules: counter_kind must be a string, one of {sorted(_SJ_RULES)}; got "
                        f"{type(counter_kind).__name__} {counter_kind!r}")
    if counter_kind not in _SJ_RULES:
        raise ValueError(f"spikingjelly_rules: counter_kind must be one of {sorted(_SJ_RULES)}, got {counter_kind!r}")
    fwd, bwd = _SJ_RULES[counter_kind]
    if isinstance(fwd, dict):  # a rule per op kind: the step op's second argument is v, the multi-step op's v0
        rules = {target: fwd["multistep" if "multistep" in target.name() else "step"] for target in FORWARD_OPS}
    else:
        rules = {target: fwd for target in FORWARD_OPS}
    if bwd is not None:
        rules.update({target: bwd for target in BACKWARD_OPS})
    return rules


def install_spikingjelly_rules() -> List[str]:
    """Makes every SpikingJelly op counter created from now on know our ops (its rules for them
    are added after its own __init__, never replacing a rule the caller gave). Idempotent; a
    no-op without SpikingJelly. Returns the names of the counter classes it covers."""
    if importlib.util.find_spec("spikingjelly") is None:
        return []
    try:
        from spikingjelly.activation_based import op_counter as sj_op_counter
    except Exception:  # a broken or partial SpikingJelly install must not break this package
        return []
    _install_ignore_twins()
    _install_neuron_state_guard()
    covered = []
    for kind in _SJ_RULES:
        cls = getattr(sj_op_counter, kind, None)
        if cls is None:
            continue
        covered.append(kind)
        if getattr(cls.__init__, "_sltt_kernels_rules", False):
            continue
        cls.__init__ = _with_our_rules(cls.__init__, kind)
    return covered


def _stand_in(wrapper, original, flag: str):
    """wrapper, made to stand for original (its docstring, `__wrapped__`), marked with flag so that
    a second install sees it is there."""
    wrapper.__wrapped__ = original
    wrapper.__doc__ = original.__doc__
    setattr(wrapper, flag, True)
    return wrapper


def _with_our_rules(init, kind: str):
    rules = spikingjelly_rules(kind)

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for target, rule in rules.items():
            self.rules.setdefault(target, rule)

    return _stand_in(__init__, init, "_sltt_kernels_rules")


def _install_neuron_state_guard() -> None:
    """SpikingJelly's NeuronStateCounter counts the aten ops inside a neuron's step (its adds,
    multiplies, resets, state reads). Ours run one fused op it cannot read into, and since they are
    instances of its BaseNode it would count only the state reads around that op: a partial
    figure. Each counter made from now on says so for our neurons instead, as it does for what
    it does not support: a ValueError under strict=True, else one warning per neuron and nothing
    counted for it. A no-op where its counter lacks this hook."""
    try:
        neuron_state = importlib.import_module("spikingjelly.activation_based.op_counter.neuron_state")
    except Exception:
        return
    counter = getattr(neuron_state, "NeuronStateCounter", None)
    init = getattr(counter, "__init__", None)
    if init is None or not hasattr(counter, "_warn_or_raise") or getattr(init, "_sltt_kernels_guard", False):
        return

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        from .nn.neurons import BaseNode

        def refuse(module, func, args, kwargs, out, state_keys):
            self._warn_or_raise(module, f"NeuronStateCounter cannot count {type(module).__name__} of sltt_kernels: "
                                        "the neuron runs as one fused op, not the aten ops this counter reads; count "
                                        "the SpikingJelly model (before replace_neurons)")
            return {}  # nothing counted for it

        pending, ours = [BaseNode], []
        while pending:  # its rules are looked up by the module's exact class
            cls = pending.pop()
            ours.append(cls)
            pending.extend(cls.__subclasses__())
        for cls in ours:
            self.extra_state_rules.setdefault(cls, refuse)

    counter.__init__ = _stand_in(__init__, init, "_sltt_kernels_guard")


# SpikingJelly neuron classes whose instances replace_neurons swaps for ours, by class name
_OUR_TWIN_NAMES = ("BaseNode", "LIFNode", "IFNode", "ParametricLIFNode", "SLTTLIFNode", "OTTTLIFNode")


def _our_twins(ignored) -> tuple:
    """Our classes that stand for the SpikingJelly neuron classes in `ignored` (an ignore_modules
    list): a model after replace_neurons is counted as the model was, so ignoring SpikingJelly's
    LIFNode also ignores the LIFNode (and its SLTT/OTTT subclasses) that replaced it."""
    from .nn import neurons as ours

    twins = []
    for cls in ignored:
        if not isinstance(cls, type) or not (cls.__module__ or "").startswith("spikingjelly"):
            continue
        if cls.__name__ in _OUR_TWIN_NAMES:
            twins.append(getattr(ours, cls.__name__))
    return tuple(twins)


def _install_ignore_twins() -> None:
    """SpikingJelly's counter modes skip ops inside modules of a counter's `ignore_modules` types
    (`_CounterMode._should_skip`, an isinstance test). Ours derive from its IFNode, LIFNode and
    ParametricLIFNode only (nn/neurons.py), not from its SLTTLIFNode or OTTTLIFNode, so this adds
    our twins (above) to that test. A no-op where that method is not there."""
    try:
        sj_base = importlib.import_module("spikingjelly.activation_based.op_counter.base")
    except Exception:
        return
    mode = getattr(sj_base, "_CounterMode", None)
    should_skip = getattr(mode, "_should_skip", None)
    if should_skip is None or getattr(should_skip, "_sltt_kernels_twins", False):
        return

    def _should_skip(self, counter, func, active_modules=None):
        twins = _our_twins(getattr(counter, "ignore_modules", ()))
        if twins:
            active = self.module_tracker.active_modules if active_modules is None else active_modules
            if any(isinstance(m, twins) for m in active):
                return True
        return should_skip(self, counter, func, active_modules)

    mode._should_skip = _stand_in(_should_skip, should_skip, "_sltt_kernels_twins")


_register_torch_formulas()
install_spikingjelly_rules()
