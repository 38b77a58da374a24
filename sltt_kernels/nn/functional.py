"""Whole-network helpers, as SpikingJelly's `functional`: step mode, reset, detach.

They work on networks that mix our neurons with SpikingJelly's modules (ours are SpikingJelly
MemoryModules when it is installed, so its own functional.reset_net / detach_net /
set_step_mode work on ours too).

Example:
    >>> from sltt_kernels.nn import functional
    >>> functional.set_step_mode(net, "m")
    >>> out = net(x_seq); functional.reset_net(net)
"""

from __future__ import annotations

from torch import nn

__all__ = ["set_step_mode", "reset_net", "detach_net"]

# SpikingJelly's containers that fix their children's step mode (a SeqToANNContainer runs its
# children on [T*B, ...]); set_step_mode leaves their children alone, as SpikingJelly's does.
_KEEP_CHILDREN_STEP_MODE = {"StepModeContainer", "MultiStepContainer", "SeqToANNContainer", "TLastMultiStepContainer",
                            "TLastSeqToANNContainer", "ElementWiseRecurrentContainer", "LinearRecurrentContainer"}


def _keeps_children_step_mode(m: nn.Module) -> bool:
    cls = type(m)
    return cls.__name__ in _KEEP_CHILDREN_STEP_MODE and (cls.__module__ or "").startswith("spikingjelly")


def set_step_mode(net: nn.Module, step_mode: str) -> nn.Module:
    """Sets step_mode ('s': x is one step [B, ...]; 'm': x is [T, B, ...]) on every module of
    net that has one, except inside SpikingJelly's step-mode containers (as its function does).
    A module that cannot run in that mode (OTTTLIFNode in 'm') raises ValueError."""
    if step_mode not in ("s", "m"):
        raise ValueError(f"set_step_mode: step_mode must be 's' or 'm', got {step_mode!r}")
    stack = [net]
    while stack:
        m = stack.pop()
        if hasattr(m, "step_mode"):
            m.step_mode = step_mode
        if not _keeps_children_step_mode(m):
            stack.extend(reversed(tuple(m.children())))
    return net


def reset_net(net: nn.Module) -> None:
    """Calls reset() on every module of net that has one (neurons, time-dropout masks)."""
    for m in net.modules():  # includes net itself
        reset = getattr(m, "reset", None)
        if callable(reset):
            reset()


def detach_net(net: nn.Module) -> None:
    """Calls detach() on every stateful module of net (ours and SpikingJelly's): truncated BPTT
    between calls, e.g. `net(x).sum().backward(); detach_net(net)` once per step."""
    from .memory_module import MemoryModule

    for m in net.modules():
        # nn.Module has no detach(); a module with memories and a detach() is a stateful one
        if isinstance(m, MemoryModule) or (hasattr(m, "_memories") and callable(getattr(m, "detach", None))):
            m.detach()
