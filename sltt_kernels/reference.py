"""The LIF neuron in plain PyTorch: the oracle for every kernel and the benchmarks' baseline.

Each function is DESIGN.md section 2 written out, one time step at a time:

    charge  h[t] = v_r + lam * (v[t-1] - v_r) + c * x[t]
    fire    s[t] = [h[t] >= theta]                 (gradient: the surrogate sg(h[t] - theta))
    reset   soft: v[t] = h[t] - theta * s[t]     hard: v[t] = h[t] - (h[t] - v_r) * s[t]

Autograd of `lif_multistep` is BPTT; with grad="sltt", v[t-1] is detached before each charge,
so no gradient flows along time (the SLTT paper's online rule). The state is float32 for every
input dtype but float64; spikes come back in x's dtype.

Example:
    >>> x = torch.randn(4, 2, 3, requires_grad=True)          # [T, B, N]
    >>> s, v = lif_multistep(x, tau=2.0, surrogate="rect", grad="sltt")
    >>> s.sum().backward()
"""

from __future__ import annotations

from typing import Optional

import torch

from ._config import LIFConfig, check_input, check_state, make_config, state_dtype
from .surrogate import spike, surrogate_grad

__all__ = [
    "lif_multistep",
    "lif_step",
    "lif_multistep_states",
    "lif_multistep_backward",
    "pack_bits",
    "saved_state",
]


def _charge(cfg: LIFConfig, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return cfg.v_r + cfg.lam * (v - cfg.v_r) + cfg.c * x


def _reset(cfg: LIFConfig, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    if cfg.detach_reset:
        s = s.detach()
    if cfg.soft_reset:
        return h - cfg.v_threshold * s
    return h - (h - cfg.v_r) * s


def _initial_state(cfg: LIFConfig, x_step: torch.Tensor, v0: Optional[torch.Tensor]) -> torch.Tensor:
    dtype = state_dtype(x_step.dtype)
    if v0 is None:
        return torch.full(x_step.shape, cfg.v_r, dtype=dtype, device=x_step.device)
    return v0.to(dtype)


def _run(cfg: LIFConfig, x: torch.Tensor, v0: Optional[torch.Tensor], record: bool):
    v = _initial_state(cfg, x[0], v0)
    sdt = v.dtype
    spikes, hs, vs = [], [], []
    for t in range(x.shape[0]):
        if cfg.grad == "sltt":
            v = v.detach()
        h = _charge(cfg, v, x[t].to(sdt))
        s = spike(h - cfg.v_threshold, cfg.surrogate, cfg.surrogate_param)
        v = _reset(cfg, h, s)
        spikes.append(s)
        if record:
            hs.append(h)
            vs.append(v)
    out_spikes = torch.stack(spikes).to(x.dtype)
    v_last = v.detach() if cfg.grad == "sltt" else v
    if record:
        return out_spikes, torch.stack(hs), torch.stack(vs)
    return out_spikes, v_last


def lif_multistep(
    x: torch.Tensor,
    v0: Optional[torch.Tensor] = None,
    *,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate="rect",
    grad: str = "bptt",
):
    """Multi-step LIF neuron.

    x: [T, ...] float32/float64/float16/bfloat16; v0: [...] (default v_r).
    Returns (spikes [T, ...] in x's dtype, v_last [...] float32, float64 for float64 x).
    With grad="sltt", v_last carries no gradient.
    """
    cfg = make_config(
        tau=tau,
        v_threshold=v_threshold,
        v_reset=v_reset,
        decay_input=decay_input,
        detach_reset=detach_reset,
        surrogate=surrogate,
        grad=grad,
    )
    return lif_multistep_cfg(cfg, x, v0)


def lif_multistep_cfg(cfg: LIFConfig, x: torch.Tensor, v0: Optional[torch.Tensor] = None):
    """lif_multistep with an already checked LIFConfig."""
    check_input(x, "x", multistep=True)
    if v0 is not None:
        check_state(v0, "v0", x, x.shape[1:])
    return _run(cfg, x, v0, record=False)


def lif_step(
    x: torch.Tensor,
    v: Optional[torch.Tensor] = None,
    *,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate="rect",
    grad: str = "bptt",
):
    """One time step. x: [...]; v: [...] (default v_r). Returns (spike [...], v_new [...]).

    With grad="sltt", v gets no gradient and v_new carries none.
    """
    cfg = make_config(
        tau=tau,
        v_threshold=v_threshold,
        v_reset=v_reset,
        decay_input=decay_input,
        detach_reset=detach_reset,
        surrogate=surrogate,
        grad=grad,
    )
    return lif_step_cfg(cfg, x, v)


def lif_step_cfg(cfg: LIFConfig, x: torch.Tensor, v: Optional[torch.Tensor] = None):
    """lif_step with an already checked LIFConfig."""
    check_input(x, "x", multistep=False)
    if v is not None:
        check_state(v, "v", x, x.shape)
    s, v_new = _run(cfg, x.unsqueeze(0), v, record=False)
    return s[0], v_new


def lif_multistep_states(cfg: LIFConfig, x: torch.Tensor, v0: Optional[torch.Tensor] = None):
    """The whole trajectory: (spikes [T, ...], h [T, ...], v [T, ...]); h and v in the state dtype."""
    check_input(x, "x", multistep=True)
    return _run(cfg, x, v0, record=True)


def lif_multistep_backward(
    cfg: LIFConfig,
    h: torch.Tensor,
    grad_spikes: torch.Tensor,
    grad_v_last: Optional[torch.Tensor] = None,
):
    """The backward of DESIGN.md section 2 written out, from the trajectory h [T, ...].

    BPTT:  gh[t] = gs[t] sg[t] + gv[t] dv_dh[t];  gv[t-1] = lam gh[t];  gx[t] = c gh[t]
    SLTT:  gx[t] = c gs[t] sg[t]
    Returns (grad_x [T, ...], grad_v0 [...]) in h's dtype; grad_v0 is zero for SLTT.
    """
    sg = surrogate_grad(h - cfg.v_threshold, cfg.surrogate, cfg.surrogate_param)
    s = (h >= cfg.v_threshold).to(h.dtype)
    gs = grad_spikes.to(h.dtype)
    if cfg.grad == "sltt":
        return cfg.c * gs * sg, torch.zeros_like(h[0])
    if cfg.soft_reset:
        dv_dh = torch.ones_like(h) if cfg.detach_reset else 1 - cfg.v_threshold * sg
    else:
        dv_dh = (1 - s) if cfg.detach_reset else (1 - s) - (h - cfg.v_r) * sg
    gv = torch.zeros_like(h[0]) if grad_v_last is None else grad_v_last.to(h.dtype)
    gx = torch.empty_like(h)
    for t in range(h.shape[0] - 1, -1, -1):
        gh = gs[t] * sg[t] + gv * dv_dh[t]
        gx[t] = cfg.c * gh
        gv = cfg.lam * gh
    return gx, gv


def pack_bits(flags: torch.Tensor) -> torch.Tensor:
    """Packs bool flags [T, ...] along the flattened neuron axis: int32 [T, ceil(N/32)].

    Bit j of word w at step t is flag (t, 32 w + j); bits past N are 0 (DESIGN.md section 3).
    """
    T = flags.shape[0]
    f = flags.reshape(T, -1).to(torch.int64)
    n = f.shape[1]
    words = (n + 31) // 32
    f = torch.nn.functional.pad(f, (0, words * 32 - n)).reshape(T, words, 32)
    weights = torch.bitwise_left_shift(torch.ones(32, dtype=torch.int64, device=f.device), torch.arange(32, device=f.device))
    packed = (f * weights).sum(-1)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)  # reinterpret as int32
    return packed.to(torch.int32)


def saved_state(cfg: LIFConfig, x: torch.Tensor, v0: Optional[torch.Tensor] = None, save: Optional[str] = None):
    """What a kernel saves for the backward, computed from the reference trajectory.

    save defaults to cfg.save_kind(True). 'sg': pack_bits(sg != 0); 'sg_spike': that and
    pack_bits(s) stacked [2, T, W]; 'h': h [T, N].
    """
    save = save or cfg.save_kind(True)
    with torch.no_grad():
        s, h, _ = lif_multistep_states(cfg, x, v0)
    if save == "h":
        return h.reshape(h.shape[0], -1)
    window = (h - cfg.v_threshold).abs() < cfg.surrogate_param / 2
    if save == "sg":
        return pack_bits(window)
    if save == "sg_spike":
        return torch.stack([pack_bits(window), pack_bits(s != 0)])
    raise ValueError(f"save must be 'sg', 'sg_spike' or 'h', got {save!r}")
