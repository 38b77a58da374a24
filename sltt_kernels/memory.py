"""Measuring what autograd keeps for backward, on any device.

    >>> with SavedTensorMeter(model) as meter:
    ...     loss = model(x).sum(); loss.backward()
    >>> meter.peak   # bytes
"""

from __future__ import annotations

import weakref
from typing import Dict, Optional

import torch
from torch import nn

__all__ = ["SavedTensorMeter"]

# The neuron state that an SLTT step saved with save='spike_state' (docs/design.md, section 3):
# the step's output v[t], which the backward reads to rebuild h - theta. It is the neuron's live
# state, which the module keeps until the next step whether or not autograd holds it, and an
# online step runs its backward before the next step replaces it, so autograd's reference adds
# no bytes: SavedTensorMeter counts it apart (state_peak), not in peak. (A loop that runs several
# SLTT steps before one backward keeps each step's state alive through autograd alone; those
# bytes are in state_peak, 4 per neuron-step, as 'h' would have cost in peak.) Recorded by the
# neuron ops' autograd glue (_registration._setup_context) only while a meter is open: data
# pointer -> weak reference.
_step_states: Dict[int, weakref.ref] = {}
_open_meters = 0


def note_step_state(t: torch.Tensor) -> None:
    """Records `t` (a step's output state that autograd saves for save='spike_state') so that an
    open SavedTensorMeter counts it as state rather than as saved bytes. A no-op with no meter
    open."""
    if _open_meters == 0:
        return
    if len(_step_states) > 4096:  # drop the states that died
        for key in [k for k, r in _step_states.items() if r() is None]:
            del _step_states[key]
    _step_states[t.data_ptr()] = weakref.ref(t)


def _is_step_state(t: torch.Tensor) -> bool:
    ref = _step_states.get(t.data_ptr())
    state = ref() if ref is not None else None
    return state is not None and state.numel() == t.numel() and state.dtype == t.dtype


class SavedTensorMeter:
    """Peak bytes of the tensors autograd holds for backward while they are alive (a tensor is
    counted from when it is saved until its graph is freed). Parameters of `model` that are
    saved by reference (a layer's weight) are not extra memory and are not counted. The
    neuron state an SLTT step saves with save='spike_state' is the module's own state (see the
    note at the top of this module): counted in state_live / state_peak, not in peak.

    Attributes: peak (bytes), total (bytes ever saved), live (bytes held now), state_live and
    state_peak (bytes of saved live neuron states, now and at most).
    """

    def __init__(self, model: Optional[nn.Module] = None):
        self.live = 0
        self.peak = 0
        self.total = 0
        self.state_live = 0
        self.state_peak = 0
        self._skip = {p.data_ptr() for p in model.parameters()} if model is not None else set()
        self._ctx = None

    def __enter__(self) -> "SavedTensorMeter":
        meter = self

        class _Held:
            __slots__ = ("t", "n", "state")

            def __init__(self, t: torch.Tensor):
                self.t = t
                self.n = 0 if t.data_ptr() in meter._skip else t.numel() * t.element_size()
                self.state = _is_step_state(t)
                if self.state:
                    meter.state_live += self.n
                    meter.state_peak = max(meter.state_peak, meter.state_live)
                    return
                meter.live += self.n
                meter.total += self.n
                meter.peak = max(meter.peak, meter.live)

            def __del__(self):
                if self.state:
                    meter.state_live -= self.n
                else:
                    meter.live -= self.n

        global _open_meters
        _open_meters += 1
        self._ctx = torch.autograd.graph.saved_tensors_hooks(_Held, lambda held: held.t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        global _open_meters
        _open_meters -= 1
        if _open_meters == 0:
            _step_states.clear()
        self._ctx.__exit__(*exc)
