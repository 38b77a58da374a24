"""Measuring what autograd keeps for backward, on any device.

    >>> with SavedTensorMeter(model) as meter:
    ...     loss = model(x).sum(); loss.backward()
    >>> meter.peak   # bytes
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["SavedTensorMeter"]


class SavedTensorMeter:
    """Peak bytes of the tensors autograd holds for backward while they are alive (a tensor is
    counted from when it is saved until its graph is freed). Parameters of `model` that are
    saved by reference (a layer's weight) are not extra memory and are not counted.

    Attributes: peak (bytes), total (bytes ever saved), live (bytes held now).
    """

    def __init__(self, model: Optional[nn.Module] = None):
        self.live = 0
        self.peak = 0
        self.total = 0
        self._skip = {p.data_ptr() for p in model.parameters()} if model is not None else set()
        self._ctx = None

    def __enter__(self) -> "SavedTensorMeter":
        meter = self

        class _Held:
            __slots__ = ("t", "n")

            def __init__(self, t: torch.Tensor):
                self.t = t
                self.n = 0 if t.data_ptr() in meter._skip else t.numel() * t.element_size()
                meter.live += self.n
                meter.total += self.n
                meter.peak = max(meter.peak, meter.live)

            def __del__(self):
                meter.live -= self.n

        self._ctx = torch.autograd.graph.saved_tensors_hooks(_Held, lambda held: held.t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)
