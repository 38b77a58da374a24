"""snnTorch's neurons on the fused kernels: `Leaky` (its default reset_delay=True, exact) and
`SnnTorchLeaky` (reset_delay=False, as a LIF: exact while no membrane stays above threshold after
its reset), with snnTorch's call convention (`spk, mem = lif(cur, mem)`, `init_hidden`)."""

from __future__ import annotations

from typing import Optional

import torch

from .. import _config
from .. import surrogate as _surrogate
from .neurons import BaseNode, LIFNode, surrogate_or

__all__ = ["Leaky", "SnnTorchLeaky"]


class Leaky(BaseNode):
    """snnTorch's `Leaky` with its default reset_delay=True, on the fused kernels (docs/design.md,
    section 2.3), with its call convention: `spk, mem = lif(cur, mem)`, or `spk = lif(cur)` with
    init_hidden=True (the membrane kept in `mem`). step_mode='m' takes cur [T, B, ...].

    Example:
        >>> lif = Leaky(beta=0.9)
        >>> mem = lif.reset_mem()
        >>> spk, mem = lif(torch.randn(8, 16), mem)
    """

    def __init__(self, beta: float, threshold: float = 1.0, spike_grad=None, init_hidden: bool = False,
                 reset_mechanism: str = "subtract", output: bool = False, step_mode: str = "s",
                 backend: str = "auto", grad_mode: str = "bptt"):
        self_surrogate = surrogate_or(_surrogate.ATan(2.0), spike_grad)  # snnTorch's default
        _config.leaky_config(beta=beta, threshold=threshold, reset_mechanism=reset_mechanism,
                             surrogate=self_surrogate, grad=grad_mode)
        super().__init__(0.0, step_mode, grad_mode, backend, False)
        self.spike_grad = self_surrogate
        self.beta = float(beta)
        self.threshold = float(threshold)
        self.reset_mechanism = reset_mechanism
        self.init_hidden = bool(init_hidden)
        self.output = bool(output)

    @property
    def mem(self):
        return self.v

    @mem.setter
    def mem(self, value):
        self.v = value

    def reset_mem(self):
        """Zeroes the membrane; returns it (snnTorch's reset_mem / init_leaky)."""
        self.reset()
        return torch.zeros(0)

    init_leaky = reset_mem

    def _config_now(self):
        return _config.leaky_config(beta=self.beta, threshold=self.threshold, reset_mechanism=self.reset_mechanism,
                                    surrogate=self.spike_grad, grad=self.grad_mode)

    def forward(self, x: torch.Tensor, mem: Optional[torch.Tensor] = None):
        if mem is not None:
            if self.init_hidden:
                raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
            shape = x.shape if self.step_mode == "s" else x.shape[1:]
            # snnTorch: a membrane of another shape (as reset_mem's empty one) starts from zeros
            self.v = mem if tuple(mem.shape) == tuple(shape) else 0.0
        spk = super().forward(x)
        if self.init_hidden and not self.output:
            return spk
        return spk, self.v

    def extra_repr(self) -> str:
        return (f"beta={self.beta}, threshold={self.threshold}, spike_grad={self.spike_grad!r}, "
                f"reset_mechanism={self.reset_mechanism!r}, init_hidden={self.init_hidden}, "
                f"step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, backend={self.backend!r}")


class SnnTorchLeaky(LIFNode):
    """snnTorch's `Leaky(beta, threshold, reset_delay=False)` on the fused kernels, with its call
    convention: `spk, mem = lif(cur, mem)` (or `spk = lif(cur)` with init_hidden=True).

    Its dynamics are this package's LIF with tau = 1/(1-beta), no input decay, and a reset that
    carries the spike's gradient (`reset_mechanism='subtract'`: soft; 'zero': hard to 0), as long
    as no membrane stays at or above the threshold after its reset: snnTorch then withholds the
    next step's reset (its "avoid double reset"), which this neuron does not. snnTorch fires on
    mem > threshold and this on >=, which differ only when mem equals the threshold exactly.
    (snnTorch's default, reset_delay=True, is the exact `Leaky` of this package.)
    """

    def __init__(self, beta: float, threshold: float, reset_zero: bool, surrogate_function, init_hidden: bool,
                 output: bool, backend: str = "auto"):
        super().__init__(tau=1.0 / (1.0 - beta), decay_input=False, v_threshold=threshold,
                         v_reset=0.0 if reset_zero else None, surrogate_function=surrogate_function,
                         detach_reset=False, step_mode="s", grad_mode="bptt", backend=backend)
        self.init_hidden = init_hidden
        self.output = output

    def forward(self, x: torch.Tensor, mem: Optional[torch.Tensor] = None):
        if mem is not None:
            self.v = mem
        spk = super().forward(x)
        if self.init_hidden and not self.output:
            return spk
        return spk, self.v
