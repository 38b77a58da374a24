"""SpikingJelly's memory protocol for our stateful modules (`MemoryModule`): named state that
`reset()` restores and `detach()` cuts, and a validated `step_mode`. With SpikingJelly installed
the class derives from its `base.MemoryModule`, so its utilities treat our neurons as its own."""

from __future__ import annotations

import copy
import importlib.util
from typing import Tuple

import torch
from torch import nn

__all__ = ["MemoryModule"]


def _spikingjelly_memory_module():
    """SpikingJelly's `base.MemoryModule` when SpikingJelly is installed, else None.

    SpikingJelly's utilities (functional.set_step_mode / reset_net / detach_net, base.named_memories,
    base.to_functional_forward, its op counters' module filters) decide what is a stateful module
    with `isinstance(m, base.MemoryModule)` / `isinstance(m, base.StepModule)`: plain classes, not
    ABCs, so nothing short of subclassing satisfies them. Deriving from it when it is importable
    keeps SpikingJelly an optional dependency and makes our neurons pass those checks; every
    method of its protocol is overridden below, so our behaviour is the same with or without it.
    """
    if importlib.util.find_spec("spikingjelly") is None:
        return None
    try:
        from spikingjelly.activation_based import base  # only torch and its own small modules
    except Exception:  # a broken or partial install must not break this package
        return None
    root = getattr(base, "MemoryModule", None)
    # SpikingJelly 2.0's protocol (materialize_states) and nothing that refuses our attributes: the
    # 0.0.0.0.14 release's MemoryModule has a `backend` property that refuses 'auto', so no neuron
    # of ours could be built with it installed; there our neurons are plain modules
    if root is None or not hasattr(root, "materialize_states") or hasattr(root, "backend"):
        return None
    return root


_SJ_MEMORY_MODULE = _spikingjelly_memory_module()
_MemoryRoot = _SJ_MEMORY_MODULE if _SJ_MEMORY_MODULE is not None else nn.Module


class MemoryModule(_MemoryRoot):
    """A module with named state ("memories") that `reset()` restores and `detach()` cuts from
    the graph, and a validated `step_mode`: SpikingJelly's protocol, so its functional utilities
    work on our neurons. When SpikingJelly is installed this class derives from its
    `base.MemoryModule` (so `isinstance(ours, spikingjelly...base.MemoryModule)` holds); it
    behaves the same either way.

    Example:
        >>> m = MemoryModule(); m.register_memory("v", 0.0); m.v = torch.ones(3); m.reset(); m.v
        0.0
    """

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "_memories", {})
        object.__setattr__(self, "_memories_rv", {})
        object.__setattr__(self, "_step_mode", "s")

    def supported_step_mode(self) -> Tuple[str, ...]:
        """The step modes this module runs in ('s': one step per call; 'm': [T, ...] per call)."""
        return ("s", "m")

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"{type(self).__name__}: step_mode must be a string, one of {self.supported_step_mode()}; "
                            f"got {type(value).__name__} {value!r}")
        if value not in self.supported_step_mode():
            raise ValueError(f"{type(self).__name__}: step_mode must be one of {self.supported_step_mode()}, "
                             f"got {value!r}")
        object.__setattr__(self, "_step_mode", value)

    def set_reset_value(self, name: str, value) -> None:
        """Sets the value `reset()` restores memory `name` to (deep-copied)."""
        if name not in self._memories:
            raise KeyError(f"{name!r} is not a memory of {type(self).__name__}")
        self._memories_rv[name] = copy.deepcopy(value)

    def get_reset_value(self, name: str):
        """The value `reset()` restores memory `name` to."""
        if name not in self._memories:
            raise KeyError(f"{name!r} is not a memory of {type(self).__name__}")
        return self._memories_rv[name]

    def register_memory(self, name: str, value) -> None:
        """Adds state `name` whose reset value is `value` (deep-copied)."""
        if hasattr(self, name) and name not in self._memories:
            raise AttributeError(f"{name!r} is already an attribute of {type(self).__name__}")
        self._memories[name] = value
        self._memories_rv[name] = copy.deepcopy(value)

    def __getattr__(self, name: str):
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories:
            return memories[name]
        return super().__getattr__(name)

    def __setattr__(self, name: str, value) -> None:
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories:
            memories[name] = value
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._memories:
            del self._memories[name]
            del self._memories_rv[name]
        else:
            super().__delattr__(name)

    def reset(self) -> None:
        """Restores every memory to its reset value (and with it drops the graph through time)."""
        for name, value in self._memories_rv.items():
            self._memories[name] = copy.deepcopy(value)

    def detach(self) -> None:
        """Cuts every tensor memory from the graph (truncated BPTT between calls)."""
        for name, value in self._memories.items():
            if isinstance(value, torch.Tensor):
                self._memories[name] = value.detach()

    # SpikingJelly 2.0's functional form: a step as a pure function (inputs, states) -> (outputs,
    # new states), the states in memory order. Its base.to_functional_forward and memopt call
    # these; our neurons implement the two step functions (nn/neurons.py).

    def materialize_states(self, inputs: tuple, states: tuple, step_mode: str) -> tuple:
        """The states as the step functions take them: unchanged here (ours accept a float v)."""
        return states

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """One step: (outputs tuple, new states tuple); the module's memories untouched."""
        raise NotImplementedError(f"{type(self).__name__} does not implement single_step_functional_forward")

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """T steps (inputs [T, ...]): the single step at each t, outputs stacked along time."""
        per_step = []
        for t in range(inputs[0].shape[0]):
            outputs, states = self.single_step_functional_forward(tuple(x[t] for x in inputs), states, **kwargs)
            per_step.append(outputs)
        return tuple(torch.stack(seq) for seq in zip(*per_step)), states

    def functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """The step function of the current step_mode, after materialize_states.

        Example:
            >>> outputs, states = neuron.functional_forward((x,), tuple(neuron.memories()))
        """
        states = self.materialize_states(inputs, states, self.step_mode)
        if self.step_mode == "s":
            return self.single_step_functional_forward(inputs, states, **kwargs)
        return self.multi_step_functional_forward(inputs, states, **kwargs)

    def memories(self):
        yield from self._memories.values()

    def named_memories(self):
        yield from self._memories.items()

    def _apply(self, fn, *args, **kwargs):  # .to(), .double(), ...: move tensor memories too
        for mems in (self._memories, self._memories_rv):
            for name, value in mems.items():
                if isinstance(value, torch.Tensor):
                    mems[name] = fn(value)
        # nn.Module's directly: SpikingJelly's MemoryModule._apply would convert the memories again
        return nn.Module._apply(self, fn, *args, **kwargs)

    def _replicate_for_data_parallel(self):  # nn.DataParallel: each replica steps its own state
        replica = super()._replicate_for_data_parallel()
        object.__setattr__(replica, "_memories", dict(self._memories))
        return replica
