"""Swapping the LIF neurons of an existing model for the fused ones, in place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from .. import surrogate as _surrogate
from .neurons import LIFNode, OTTTLIFNode, SLTTLIFNode

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


class SnnTorchLeaky(LIFNode):
    """snnTorch's `Leaky(beta, threshold, reset_delay=False)` on the fused kernels, with its call
    convention: `spk, mem = lif(cur, mem)` (or `spk = lif(cur)` with init_hidden=True).

    Its dynamics are this package's LIF with tau = 1/(1-beta), no input decay, and a reset that
    carries the spike's gradient (`reset_mechanism='subtract'`: soft; 'zero': hard to 0), as long
    as no membrane stays at or above the threshold after its reset: snnTorch then withholds the
    next step's reset (its "avoid double reset"), which this neuron does not. snnTorch fires on
    mem > threshold and this on >=, which differ only when mem equals the threshold exactly.
    """

    def __init__(self, beta: float, threshold: float, reset_zero: bool, surrogate_function, init_hidden: bool,
                 output: bool, backend: str = "auto"):
        tau = 1.0 / (1.0 - beta) if beta < 1.0 else float("inf")
        super().__init__(tau=tau, decay_input=False, v_threshold=threshold, v_reset=0.0 if reset_zero else None,
                         surrogate_function=surrogate_function, detach_reset=False, step_mode="s",
                         grad_mode="bptt", backend=backend)
        self.init_hidden = init_hidden
        self.output = output

    def forward(self, x: torch.Tensor, mem: Optional[torch.Tensor] = None):
        if mem is not None:
            self.v = mem
        spk = super().forward(x)
        if self.init_hidden and not self.output:
            return spk
        return spk, self.v


def _from_spikingjelly(m: nn.Module, backend: str):
    name = type(m).__name__
    sg = _surrogate.from_spikingjelly(m.surrogate_function)
    if sg is None:
        return None, f"its surrogate {type(m.surrogate_function).__name__} has no fused equivalent (Sigmoid, ATan, Rect)"
    kw = dict(tau=float(m.tau), decay_input=bool(m.decay_input), v_threshold=float(m.v_threshold),
              v_reset=None if m.v_reset is None else float(m.v_reset), surrogate_function=sg,
              detach_reset=bool(m.detach_reset), backend=backend)
    if isinstance(m.tau, torch.Tensor) or isinstance(m.v_threshold, torch.Tensor):
        return None, "learnable tau or threshold"
    step_mode = getattr(m, "step_mode", "s")
    if name == "LIFNode":
        return LIFNode(step_mode=step_mode, grad_mode="bptt", **kw), None
    if name == "SLTTLIFNode":
        return SLTTLIFNode(step_mode="s", grad_mode="sltt", **kw), None
    if name == "OTTTLIFNode":
        return OTTTLIFNode(step_mode="s", **kw), None
    return None, "unsupported SpikingJelly neuron"


def _from_snntorch(m: nn.Module, backend: str):
    if getattr(m, "reset_delay", True):
        return None, ("reset_delay=True subtracts the previous step's spike after the decay, a different neuron; "
                      "build it with Leaky(..., reset_delay=False) to have it replaced")
    if getattr(m, "learn_beta", False) or getattr(m, "learn_threshold", False):
        return None, "learnable beta or threshold"
    if getattr(m, "inhibition", False) or getattr(m, "state_quant", False) or float(m.graded_spikes_factor) != 1.0:
        return None, "inhibition, state quantisation or graded spikes"
    beta = m.beta.detach().flatten()
    if beta.numel() != 1 or not 0.0 <= float(beta) < 1.0:
        return None, "beta must be one number in [0, 1)"
    mech = getattr(m, "reset_mechanism", "subtract")
    if mech not in ("subtract", "zero"):
        return None, f"reset_mechanism={mech!r}"
    grad_fn = m.spike_grad
    alpha = None
    # snnTorch's default surrogate is atan with alpha 2; other ones are opaque closures.
    if getattr(grad_fn, "__qualname__", "").startswith("atan") or grad_fn.__class__.__name__ == "ATan":
        alpha = 2.0
        closure = getattr(grad_fn, "__closure__", None) or ()
        for cell in closure:
            if isinstance(cell.cell_contents, (int, float)):
                alpha = float(cell.cell_contents)
    if alpha is None:
        return None, "only snnTorch's atan surrogate has a fused equivalent"
    new = SnnTorchLeaky(float(beta), float(m.threshold), mech == "zero", _surrogate.ATan(alpha),
                        bool(getattr(m, "init_hidden", False)), bool(getattr(m, "output", False)), backend)
    return new, None


def _candidate(m: nn.Module) -> Optional[Callable]:
    mod = type(m).__module__ or ""
    name = type(m).__name__
    if mod.startswith("spikingjelly") and name in ("LIFNode", "SLTTLIFNode", "OTTTLIFNode"):
        return _from_spikingjelly
    if mod.startswith("snntorch") and name == "Leaky":
        return _from_snntorch
    return None


def replace_neurons(model: nn.Module, backend: str = "auto", verbose: bool = False) -> ReplaceReport:
    """Replaces, in place, the LIF neurons of `model` with fused ones of the same dynamics.

    Replaced: SpikingJelly's LIFNode (BPTT), SLTTLIFNode (grad_mode='sltt') and OTTTLIFNode, with
    surrogate Sigmoid, ATan or Rect; snnTorch's Leaky built with reset_delay=False (see
    SnnTorchLeaky for when it is exact; the report notes it). Anything
    else that looks like a neuron is left in place and listed, with the reason, in the report.
    Raises ValueError if the model has no neuron of these kinds. Call SpikingJelly's
    functional.invalidate_reset_cache (if you use reset_net) after replacing.

    Example:
        >>> report = replace_neurons(model)
        >>> print(report)
    """
    report = ReplaceReport()
    targets = []
    for path, m in model.named_modules():
        conv = _candidate(m)
        if conv is not None:
            targets.append((path, m, conv))
    if not targets:
        raise ValueError(
            "replace_neurons: the model has no SpikingJelly LIFNode / SLTTLIFNode / OTTTLIFNode or snnTorch "
            "Leaky to replace"
        )
    for path, m, conv in targets:
        if path == "":
            report.skipped.append((path, type(m).__name__, "the model itself is the neuron: replace it directly"))
            continue
        new, why = conv(m, backend)
        if new is None:
            report.skipped.append((path, type(m).__name__, why))
            continue
        new.train(m.training)
        parent = model
        *parents, leaf = path.split(".")
        for p in parents:
            parent = getattr(parent, p)
        setattr(parent, leaf, new)
        report.replaced.append((path, type(m).__name__, new))
        if isinstance(new, SnnTorchLeaky):
            report.notes[path] = "exact while no membrane stays >= threshold after its reset"
    if verbose:
        print(report)
    return report
