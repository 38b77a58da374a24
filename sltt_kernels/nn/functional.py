"""Whole-network helpers, as SpikingJelly's `functional`: step mode, reset, detach.

Example:
    >>> from sltt_kernels.nn import functional
    >>> functional.set_step_mode(net, "m")
    >>> out = net(x_seq); functional.reset_net(net)
"""

from __future__ import annotations

from torch import nn

__all__ = ["set_step_mode", "reset_net", "detach_net"]


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


def detach_net(net: nn.Module) -> None:
    """Calls detach() on every stateful module of net: truncated BPTT between calls."""
    from .neurons import MemoryModule

    for m in net.modules():
        if isinstance(m, MemoryModule):
            m.detach()
