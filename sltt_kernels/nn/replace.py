"""Swapping the neurons of an existing model for the fused ones, in place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from .. import _config
from .. import surrogate as _surrogate
from .._backend import check_backend_name
from .leaky import RESET_MECHANISMS, Leaky, SnnTorchLeaky, snntorch_surrogate
from .neurons import IFNode, LIFNode, OTTTLIFNode, ParametricLIFNode, SLTTLIFNode

__all__ = ["replace_neurons", "ReplaceReport", "SnnTorchLeaky"]


@dataclass
class ReplaceReport:
    """What replace_neurons did: (module path, old type, new module) and (path, type, reason)."""

    replaced: List[Tuple[str, str, nn.Module]] = field(default_factory=list)
    skipped: List[Tuple[str, str, str]] = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # path -> a caveat on a replacement

    def __str__(self) -> str:
        lines = [f"replaced {len(self.replaced)} neuron(s), could not replace {len(self.skipped)}"]
        lines += [f"  {path}: {old} -> {type(new).__name__}" + (f" ({self.notes[path]})" if path in self.notes else "")
                  for path, old, new in self.replaced]
        lines += [f"  {path}: {old} kept: {why}" for path, old, why in self.skipped]
        return "\n".join(lines)


def _sj_state_note(m: nn.Module, new: nn.Module) -> Optional[str]:
    """Carries a SpikingJelly neuron's state (v, v_seq) over; says so when there was any."""
    v_seq = getattr(m, "v_seq", None)
    if isinstance(v_seq, torch.Tensor) and getattr(new, "store_v_seq", False):
        new.v_seq = v_seq  # the voltages recorded so far (an attribute, as SpikingJelly's)
    v = getattr(m, "v", 0.0)
    if isinstance(v, torch.Tensor):
        new.v = v
        return "its membrane state mid-sequence was carried over"
    if float(v) != float(new.v):
        new.v = float(v)
        return f"its membrane state v = {float(v)} was carried over"
    return None


def _invalidate_spikingjelly_reset_cache(model: nn.Module) -> None:
    """SpikingJelly's reset_net caches, per network, the modules it resets: after a swap it
    would keep resetting the old neurons. Drop the cache when SpikingJelly is in use (loaded)."""
    import sys

    net_config = sys.modules.get("spikingjelly.activation_based.functional.net_config")
    invalidate = getattr(net_config, "invalidate_reset_cache", None)
    if callable(invalidate):
        invalidate(model)


def _from_spikingjelly(m: nn.Module, backend: str):
    name = type(m).__name__
    sg = _surrogate.from_spikingjelly(m.surrogate_function)
    if sg is None:
        return None, (f"its surrogate {type(m.surrogate_function).__name__} has no fused equivalent "
                      "(Sigmoid, ATan, Rect, PiecewiseQuadratic)")
    if isinstance(getattr(m, "v_threshold", None), torch.Tensor) or isinstance(getattr(m, "tau", None), torch.Tensor):
        return None, "learnable tau or threshold"
    common = dict(v_threshold=float(m.v_threshold), v_reset=None if m.v_reset is None else float(m.v_reset),
                  surrogate_function=sg, detach_reset=bool(m.detach_reset), backend=backend)
    step_mode = getattr(m, "step_mode", "s")
    store = bool(getattr(m, "store_v_seq", False))
    if name == "IFNode":
        return IFNode(step_mode=step_mode, store_v_seq=store, grad_mode="bptt", **common), None
    if name == "ParametricLIFNode":
        new = ParametricLIFNode(decay_input=bool(m.decay_input), step_mode=step_mode, store_v_seq=store,
                                grad_mode="bptt", **common)
        new.w = nn.Parameter(m.w.detach().clone(), requires_grad=m.w.requires_grad)  # its dtype and device
        return new, None
    lif = dict(tau=float(m.tau), decay_input=bool(m.decay_input), **common)
    if name == "LIFNode":
        return LIFNode(step_mode=step_mode, store_v_seq=store, grad_mode="bptt", **lif), None
    if name == "SLTTLIFNode":
        return SLTTLIFNode(step_mode=step_mode, store_v_seq=store, grad_mode="sltt", **lif), None
    if name == "OTTTLIFNode":
        if step_mode != "s":
            return None, "OTTTLIFNode in step_mode 'm' (ours is single-step only)"
        return OTTTLIFNode(step_mode="s", store_v_seq=store, **lif), None
    return None, "unsupported SpikingJelly neuron"


def _snntorch_buffer(m: nn.Module, name: str, default):
    """A copy of snnTorch neuron m's buffer `name` (its dtype and device), or `default`."""
    value = getattr(m, name, default)
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _snntorch_param(m: nn.Module, name: str, default):
    """beta or threshold of snnTorch neuron m: a learnable one is the same nn.Parameter (an
    optimizer that holds it keeps training it), a buffer a copy (_snntorch_buffer)."""
    value = getattr(m, name, default)
    return value if isinstance(value, nn.Parameter) else _snntorch_buffer(m, name, default)


def _from_snntorch(m: nn.Module, backend: str):
    if isinstance(getattr(m, "graded_spikes_factor", None), nn.Parameter):
        # kept, as graded spikes are: its parameter stays where the optimizer has it
        return None, "learnable graded_spikes_factor (learn_graded_spikes_factor=True): graded spikes stay snnTorch's"
    if getattr(m, "inhibition", False) or getattr(m, "state_quant", False):
        return None, "inhibition or state quantisation"
    factor = getattr(m, "graded_spikes_factor", 1.0)
    if isinstance(factor, torch.Tensor) and factor.numel() != 1:
        return None, "a per-neuron graded_spikes_factor"
    if float(factor) != 1.0:
        return None, f"graded spikes (graded_spikes_factor={float(factor)})"
    mech = getattr(m, "reset_mechanism", "subtract")
    if mech not in RESET_MECHANISMS:
        return None, f"reset_mechanism={mech!r}"
    disabled = bool(getattr(m, "surrogate_disable", False))
    try:  # surrogate_disable: its spikes have no gradient, whatever the surrogate
        spike_grad = None if disabled else snntorch_surrogate(m.spike_grad)
    except ValueError as err:
        return None, str(err).replace("spike_grad: ", "its surrogate: ", 1)
    if spike_grad is None and not disabled:
        return None, f"its surrogate {m.spike_grad!r} is not one of snnTorch's (atan and fast_sigmoid are fused)"
    beta = _snntorch_param(m, "beta", None)
    delayed = bool(getattr(m, "reset_delay", True))
    if not delayed and (mech == "none" or bool((torch.as_tensor(beta).detach() >= 1.0).any())):
        return None, "reset_delay=False needs reset_mechanism 'subtract' or 'zero' and beta < 1"
    cls = Leaky if delayed else SnnTorchLeaky
    # the buffers copied as they are (dtype, device, shape), so the state_dict stays snnTorch's
    new = cls(beta, _snntorch_param(m, "threshold", 1.0), spike_grad, surrogate_disable=disabled,
              init_hidden=bool(getattr(m, "init_hidden", False)), reset_mechanism=mech,
              output=bool(getattr(m, "output", False)),
              graded_spikes_factor=_snntorch_buffer(m, "graded_spikes_factor", 1.0), reset_delay=delayed,
              backend=backend)
    new.to(device=beta.device)  # the rest of its state (reset_mechanism_val, the empty membrane)
    theirs = getattr(m, "reset_mechanism_val", None)
    if isinstance(theirs, torch.Tensor):  # its dtype and device; the value from reset_mechanism
        new.reset_mechanism_val = new.reset_mechanism_val.to(dtype=theirs.dtype, device=theirs.device)
    mem = getattr(m, "mem", None)
    if isinstance(mem, torch.Tensor):
        new.mem = mem  # its membrane, empty or mid-sequence
    return new, None


def _candidate(m: nn.Module) -> Optional[Callable]:
    mod = type(m).__module__ or ""
    name = type(m).__name__
    if mod.startswith("spikingjelly") and name in ("LIFNode", "SLTTLIFNode", "OTTTLIFNode", "IFNode",
                                                   "ParametricLIFNode"):
        return _from_spikingjelly
    if mod.startswith("snntorch") and name == "Leaky":
        return _from_snntorch
    return None


_OTTT_SEQUENTIAL_FOR_OURS = {}  # SpikingJelly's OTTTSequential class -> its subclass that knows our OTTTLIFNode


def _ottt_sequential_for_ours(sj_cls: type) -> type:
    """A subclass of SpikingJelly's OTTTSequential whose forward also treats our OTTTLIFNode as an
    OTTT neuron. SpikingJelly's forward tests `isinstance(module, its OTTTLIFNode)` to call the
    neuron on the spike alone; ours is not its subclass, so without this a replaced OTTTLIFNode
    would be run on the trace too. Every other step is SpikingJelly's own."""
    if sj_cls in _OTTT_SEQUENTIAL_FOR_OURS:
        return _OTTT_SEQUENTIAL_FOR_OURS[sj_cls]
    import importlib

    sj_layer = importlib.import_module(sj_cls.__module__)
    sj_ottt = importlib.import_module("spikingjelly.activation_based.neuron.online_learning").OTTTLIFNode

    def on_both(module, pair):
        helper = getattr(sj_layer, "_apply_to_spike_and_trace", None)
        return helper(module, pair) if helper is not None else sj_layer.SpikeTraceOp(module)(pair)

    def with_trace(module, pair):
        helper = getattr(sj_layer, "_grad_with_trace", None)
        return helper(module, pair) if helper is not None else sj_layer.GradwithTrace(module)(pair)

    def forward(self, input):
        for module in self:
            if isinstance(input, list):
                if isinstance(module, (OTTTLIFNode, sj_ottt)):
                    input = module(input[0])
                elif next(module.parameters(), None) is None:
                    input = on_both(module, input)
                else:
                    input = with_trace(module, input)
                continue
            input = module(input)
        return input

    cls = type(sj_cls.__name__, (sj_cls,), {"forward": forward, "__module__": __name__,
                                              "__qualname__": "_OTTTSequentialForOurs"})
    _OTTT_SEQUENTIAL_FOR_OURS[sj_cls] = cls
    globals()["_OTTTSequentialForOurs"] = cls  # pickle finds the class under its qualname
    return cls


def __getattr__(name: str):
    # unpickling in a fresh process: the class is made on first use (PEP 562)
    if name == "_OTTTSequentialForOurs":
        import importlib

        sj_layer = importlib.import_module("spikingjelly.activation_based.layer.online_learning")
        return _ottt_sequential_for_ours(sj_layer.OTTTSequential)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _adapt_ottt_sequentials(model: nn.Module) -> None:
    """SpikingJelly's OTTTSequential containers that now hold our OTTTLIFNode take the subclass
    above (in place, by __class__; still instances of OTTTSequential)."""
    for m in model.modules():
        cls = type(m)
        if not ((cls.__module__ or "").startswith("spikingjelly") and cls.__name__ == "OTTTSequential"):
            continue
        if any(isinstance(c, OTTTLIFNode) for c in m.children()):
            m.__class__ = _ottt_sequential_for_ours(cls)


def replace_neurons(model: nn.Module, backend: str = "auto", verbose: bool = False) -> ReplaceReport:
    """Replaces, in place, the neurons of `model` with fused ones of the same dynamics.

    Replaced: SpikingJelly's LIFNode, IFNode, ParametricLIFNode (BPTT), SLTTLIFNode (grad_mode='sltt')
    and OTTTLIFNode, with surrogate Sigmoid, ATan, Rect or PiecewiseQuadratic; snnTorch's Leaky
    (its default reset_delay=True exactly; reset_delay=False as SnnTorchLeaky, exact under the
    condition the report notes) with surrogate atan() or fast_sigmoid(), its buffers (beta,
    threshold, graded_spikes_factor, reset_mechanism_val) copied as they are, so its state_dict
    keys and checkpoints still fit (surrogate_disable too); a learnable beta or threshold
    (learn_beta / learn_threshold) is the same nn.Parameter in the new neuron, and a per-neuron
    one is fused too; snnTorch's neurons with a learnable or per-neuron spike factor, graded
    spikes, inhibition, state quantisation or another surrogate are kept. A neuron used in several places is replaced in all of them by
    one new module; state held mid-sequence and `store_v_seq` carry over. Anything else that
    looks like a neuron is left in place and listed, with the reason, in the report. Raises
    ValueError if the model has none of these neurons. SpikingJelly's reset_net cache for
    `model` is invalidated (it would otherwise keep resetting the old neurons). A SpikingJelly
    OTTTSequential that now holds our OTTTLIFNode becomes a subclass of itself that runs ours
    on the spike alone, as it runs its own (its check is isinstance of its OTTTLIFNode).

    Example:
        >>> report = replace_neurons(model)
        >>> print(report)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"replace_neurons: model must be an nn.Module, got {type(model).__name__}")
    backend = check_backend_name(backend)
    verbose = _config.flag("verbose", verbose)
    report = ReplaceReport()
    targets = []
    for path, m in model.named_modules(remove_duplicate=False):
        conv = _candidate(m)
        if conv is not None:
            targets.append((path, m, conv))
    if not targets:
        raise ValueError(
            "replace_neurons: the model has no SpikingJelly LIFNode / IFNode / ParametricLIFNode / SLTTLIFNode / "
            "OTTTLIFNode or snnTorch Leaky to replace"
        )
    made = {}  # id(old) -> (new, why): a shared instance is converted once
    for path, m, conv in targets:
        if path == "":
            report.skipped.append((path, type(m).__name__, "the model itself is the neuron: replace it directly"))
            continue
        if id(m) not in made:
            new, why = conv(m, backend)
            note = None
            if new is not None:
                new.train(m.training)
                if isinstance(new, (LIFNode, IFNode, ParametricLIFNode)) and not isinstance(new, SnnTorchLeaky):
                    note = _sj_state_note(m, new)
                if isinstance(new, SnnTorchLeaky):
                    note = "exact while no membrane stays >= threshold after its reset"
            made[id(m)] = (new, why, note)
        new, why, note = made[id(m)]
        if new is None:
            report.skipped.append((path, type(m).__name__, why))
            continue
        parent = model
        *parents, leaf = path.split(".")
        for p in parents:
            parent = getattr(parent, p)
        setattr(parent, leaf, new)
        report.replaced.append((path, type(m).__name__, new))
        if note:
            report.notes[path] = note
    _adapt_ottt_sequentials(model)
    _invalidate_spikingjelly_reset_cache(model)
    if verbose:
        print(report)
    return report
