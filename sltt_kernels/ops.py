"""The public functions: one multi-step and one single-step function per neuron model.

Each checks its keywords (the one validator, _config.py), picks a backend (_backend.py) and
calls the reference or the model's op in torch.ops.sltt_kernels (_registration.py).
Defaults match the modules of sltt_kernels.nn (SpikingJelly's: Sigmoid surrogate, hard reset to
0; snnTorch's for the leaky model: ATan); pass surrogate="rect" for the 1-bit saved state.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _config, _registration, reference
from ._backend import select_backend
from ._config import NeuronConfig, check_input, check_k, check_state, state_dtype

__all__ = [
    "lif_multistep",
    "lif_step",
    "if_multistep",
    "if_step",
    "leaky_multistep",
    "leaky_step",
    "plif_multistep",
    "plif_step",
]


def run_neuron(cfg: NeuronConfig, x: torch.Tensor, v: Optional[torch.Tensor], *, multistep: bool,
               backend: str = "auto", k: Optional[torch.Tensor] = None):
    """A validated neuron on x ([T, ...] if multistep, else one step [...]) from state v.

    Returns (spikes in x's dtype, the new state in the state dtype)."""
    check_input(x, "x", multistep=multistep)
    state_shape = x.shape[1:] if multistep else x.shape
    if v is not None:
        check_state(v, "v0" if multistep else "v", x, state_shape)
    if k is not None:
        check_k(k, x)
    which = select_backend(x, backend)
    if which == "reference":
        return reference.run(cfg, x, v, k, multistep)
    if not torch.compiler.is_compiling():
        _refuse_transforms(x, v, k)
    sdt = state_dtype(x.dtype)
    if v is not None:
        v = v.to(sdt)
        if cfg.grad == "sltt":  # SLTT: v[t-1] is a constant of the step
            v = v.detach()
    elif not multistep:
        v = torch.full(x.shape, cfg.v_reset, dtype=sdt, device=x.device)
    if k is not None:
        k = k.to(sdt)
    grad_on = torch.is_grad_enabled()
    learn_k = grad_on and k is not None and k.requires_grad
    needs_grad = grad_on and (x.requires_grad or (v is not None and v.requires_grad) or learn_k)
    save = cfg.save_kind(needs_grad, learn_k, half=x.dtype in _config.HALF_DTYPES)
    if which == "triton":
        from .triton import ops as _triton_ops  # noqa: F401  (registers the Triton kernels on first use)
    fwd = _registration.op("neuron_multistep_fwd" if multistep else "neuron_step_fwd", triton=which == "triton")
    spikes, v_new, _ = fwd(x, v, k, *cfg.args(save))
    return spikes, v_new


def _refuse_transforms(*tensors) -> None:
    """The fused ops have a backward only: under forward-mode AD or a torch.func transform
    (grad, vmap, jvp, ...) they would give zeros or fail obscurely, so say so instead."""
    for t in tensors:
        if t is None:
            continue
        if torch._C._functorch.is_functorch_wrapped_tensor(t) or torch._C._functorch.is_batchedtensor(t):
            raise RuntimeError("sltt_kernels: torch.func transforms (grad, vmap, jvp, ...) are not supported by the "
                               "fused ops; use backend='reference' under them")
        if torch.autograd.forward_ad.unpack_dual(t).tangent is not None:
            raise RuntimeError("sltt_kernels: forward-mode AD is not supported by the fused ops (a spike has no "
                               "forward derivative); use backward-mode autograd")


def lif_multistep(x: torch.Tensor, v0: Optional[torch.Tensor] = None, *, tau: float = 2.0,
                  v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, decay_input: bool = True,
                  detach_reset: bool = False, surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """Fused multi-step LIF neuron (SpikingJelly's LIFNode; docs/design.md, section 2.1).

    x: [T, ...] (time first, as SpikingJelly's step_mode='m'), float32/float64/float16/bfloat16.
    v0: [...] initial membrane potential (default v_reset, or 0 for soft reset).
    tau >= 1; v_reset=None is a soft reset; surrogate: 'rect' | 'triangle' | 'sigmoid' | 'atan'
    or an object of sltt_kernels.surrogate; grad: 'bptt' or 'sltt' (no gradient along time,
    none to v0, and v_last carries none); backend: 'auto' | 'cpu' | 'cuda' | 'triton' | 'reference'.

    Returns (spikes [T, ...] in x's dtype, v_last [...] float32 (float64 for float64 x)).

    Example:
        >>> x = torch.randn(6, 32, 128, requires_grad=True)
        >>> spikes, v = lif_multistep(x, tau=2.0, v_reset=None, decay_input=False, surrogate="rect", grad="sltt")
        >>> spikes.sum().backward()
    """
    cfg = _config.lif_config(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                             detach_reset=detach_reset, surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v0, multistep=True, backend=backend)


def lif_step(x: torch.Tensor, v: Optional[torch.Tensor] = None, *, tau: float = 2.0, v_threshold: float = 1.0,
             v_reset: Optional[float] = 0.0, decay_input: bool = True, detach_reset: bool = False,
             surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """One LIF time step: the same keywords as `lif_multistep`.

    x: [...]; v: [...] membrane potential before the step (default v_reset, or 0 for soft reset).
    Returns (spike [...] in x's dtype, v_new [...] float32 (float64 for float64 x)).
    With grad="sltt", v gets no gradient and v_new carries none: the online SLTT step.

    Example:
        >>> v = None
        >>> for x_t in torch.randn(4, 8, 16).unbind(0):
        ...     s, v = lif_step(x_t, v, surrogate="rect", grad="sltt")
    """
    cfg = _config.lif_config(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                             detach_reset=detach_reset, surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v, multistep=False, backend=backend)


def if_multistep(x: torch.Tensor, v0: Optional[torch.Tensor] = None, *, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, detach_reset: bool = False, surrogate="sigmoid",
                 grad: str = "bptt", backend: str = "auto"):
    """Fused multi-step integrate-and-fire neuron (SpikingJelly's IFNode): h = v + x, no leak.

    x: [T, ...]; v0: [...]. Returns (spikes [T, ...] in x's dtype, v_last [...] in the state dtype).

    Example:
        >>> spikes, v = if_multistep(torch.randn(4, 8, 16), v_reset=None, surrogate="rect")
    """
    cfg = _config.if_config(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                            surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v0, multistep=True, backend=backend)


def if_step(x: torch.Tensor, v: Optional[torch.Tensor] = None, *, v_threshold: float = 1.0,
            v_reset: Optional[float] = 0.0, detach_reset: bool = False, surrogate="sigmoid", grad: str = "bptt",
            backend: str = "auto"):
    """One IF time step: x, v: [...]. Returns (spike, v_new)."""
    cfg = _config.if_config(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                            surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v, multistep=False, backend=backend)


def leaky_multistep(x: torch.Tensor, mem0: Optional[torch.Tensor] = None, *, beta: float, threshold: float = 1.0,
                    reset_mechanism: str = "subtract", surrogate="atan", grad: str = "bptt",
                    backend: str = "auto"):
    """Fused multi-step snnTorch `Leaky` with its default reset_delay=True (docs/design.md, 2.3).

    mem[t] = beta mem[t-1] + x[t] - threshold r[t] ('subtract'; 'zero' zeroes mem[t-1] instead;
    'none' does neither), r[t] = [mem[t-1] > threshold] detached; spike[t] = [mem[t] > threshold].
    x: [T, ...]; mem0: [...] (default 0). Returns (spikes [T, ...], mem [...]).

    Example:
        >>> spk, mem = leaky_multistep(torch.randn(4, 8, 16), beta=0.9)
    """
    cfg = _config.leaky_config(beta=beta, threshold=threshold, reset_mechanism=reset_mechanism,
                               surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, mem0, multistep=True, backend=backend)


def leaky_step(x: torch.Tensor, mem: Optional[torch.Tensor] = None, *, beta: float, threshold: float = 1.0,
               reset_mechanism: str = "subtract", surrogate="atan", grad: str = "bptt", backend: str = "auto"):
    """One step of snnTorch's Leaky (reset_delay=True): x, mem: [...]. Returns (spk, mem)."""
    cfg = _config.leaky_config(beta=beta, threshold=threshold, reset_mechanism=reset_mechanism,
                               surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, mem, multistep=False, backend=backend)


def plif_multistep(x: torch.Tensor, v0: Optional[torch.Tensor] = None, *, w: torch.Tensor,
                   v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, decay_input: bool = True,
                   detach_reset: bool = False, surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """Fused multi-step parametric LIF (SpikingJelly's ParametricLIFNode): 1/tau = sigmoid(w),
    with w a learnable one-element tensor whose gradient the fused backward computes.

    x: [T, ...]; v0: [...]; w: [] or [1]. Returns (spikes [T, ...], v_last [...]).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor(0.0))    # tau = 2
        >>> spikes, v = plif_multistep(torch.randn(4, 8, 16), w=w)
        >>> spikes.sum().backward()                         # w.grad
    """
    cfg = _config.plif_config(v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                              detach_reset=detach_reset, surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v0, multistep=True, backend=backend, k=_plif_k(w, x))


def plif_step(x: torch.Tensor, v: Optional[torch.Tensor] = None, *, w: torch.Tensor, v_threshold: float = 1.0,
              v_reset: Optional[float] = 0.0, decay_input: bool = True, detach_reset: bool = False,
              surrogate="sigmoid", grad: str = "bptt", backend: str = "auto"):
    """One parametric-LIF step: x, v: [...]; w as plif_multistep. Returns (spike, v_new)."""
    cfg = _config.plif_config(v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                              detach_reset=detach_reset, surrogate=surrogate, grad=grad)
    return run_neuron(cfg, x, v, multistep=False, backend=backend, k=_plif_k(w, x))


def _plif_k(w, x) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor (1/tau = sigmoid(w)), got {type(w).__name__}")
    if w.numel() != 1 or not w.is_floating_point():
        raise ValueError(f"w must be one floating-point number, got shape {tuple(w.shape)} {w.dtype}")
    if isinstance(x, torch.Tensor):
        _config.check_device(w, "w", x)  # named as the caller passed it (the ops see k = sigmoid(w))
    return torch.sigmoid(w)
