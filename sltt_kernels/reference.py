"""The neurons in plain PyTorch: the oracle for every kernel and the benchmarks' baseline.

Each model is docs/design.md, section 2, written out one time step at a time:

    charge  h[t] = model's charge of v[t-1] and x[t]
    fire    s[t] = [h[t] >= theta]  ('leaky': [h[t] > theta]); gradient: the surrogate sg(h - theta)
    reset   v[t] = reset(h[t], s[t])

    LIF    h = v_r + lam (v - v_r) + c x        lam = 1 - 1/tau, c = 1/tau if decay_input else 1
    IF     h = v + x
    leaky  h = beta v + x - theta r  (subtract), beta (r ? 0 : v) + x  (zero), beta v + x  (none)
           with r = [v > theta] of the previous membrane, detached; v[t] = h[t]  (snnTorch's
           Leaky with reset_delay=True)

Autograd of the multi-step functions is BPTT; with grad="sltt", v[t-1] is detached before each
charge, so no gradient flows along time (the SLTT paper's online rule). The state is float32
for every input dtype but float64; spikes come back in x's dtype.

Each model's charge and reset are in its file (sltt_kernels/neurons/<model>.py); this module runs
them. Every public function of a model (lif_multistep, if_step, ...) is here too, running on this
reference (`sltt_kernels.reference.lif_multistep` is `sltt_kernels.lif_multistep` with
backend="reference").

Example:
    >>> x = torch.randn(4, 2, 3, requires_grad=True)          # [T, B, N]
    >>> s, v = lif_multistep(x, tau=2.0, surrogate="rect", grad="sltt")
    >>> s.sum().backward()
"""

from __future__ import annotations

import functools
from typing import Optional

import torch

from . import _config
from ._config import NeuronArgs, check_input, check_input_affine, check_param, check_state, state_dtype
from .surrogate import spike, surrogate_grad

__all__ = [
    "run",
    "hard_reset",
    "multistep_states",
    "multistep_backward",
    "pack_bits",
    "saved_state",
    "store_d16",
]


class _HardReset(torch.autograd.Function):
    """v = s ? v_r : h as a select (exact, and v_r even for an infinite h), with the gradient of
    h - (h - v_r) s: dv/dh = 1 - s, dv/ds = v_r - h."""

    generate_vmap_rule = True  # works under torch.func.grad / vmap

    @staticmethod
    def forward(h, s, v_r):
        return torch.where(s > 0, torch.full_like(h, v_r), h)

    @staticmethod
    def setup_context(ctx, inputs, output):
        h, s, v_r = inputs
        ctx.save_for_backward(h, s)
        ctx.v_r = v_r

    @staticmethod
    def backward(ctx, g):
        h, s = ctx.saved_tensors
        return g * (1 - s), g * (ctx.v_r - h), None


def hard_reset(h: torch.Tensor, s: torch.Tensor, v_r: float) -> torch.Tensor:
    """v = s ? v_r : h, exact, with the gradient of h - (h - v_r) s (docs/design.md, 2.1)."""
    return _HardReset.apply(h, s, v_r)


@functools.lru_cache(maxsize=None)
def _on_reference(fn):
    @functools.wraps(fn)
    def on_reference(*args, **kwargs):
        if "backend" in kwargs:
            raise TypeError(f"sltt_kernels.reference.{fn.__name__} runs on the reference: it takes no backend")
        return fn(*args, backend="reference", **kwargs)

    return on_reference


def __getattr__(name: str):
    # every model's public functions, on the reference (registered by sltt_kernels/neurons/)
    fn = _config.public_function(name)
    if fn is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _on_reference(fn)


def __dir__():
    return sorted(list(globals()) + [fn.__name__ for m in _config.MODELS.values() for fn in m.functions])


def _initial_state(cfg: NeuronArgs, x_step: torch.Tensor, v0: Optional[torch.Tensor]) -> torch.Tensor:
    dtype = state_dtype(x_step.dtype)
    if v0 is None:
        return torch.full(x_step.shape, cfg.v_reset, dtype=dtype, device=x_step.device)
    return v0.to(dtype)


def _param(t, sdt):
    """k or the threshold as the equations read it: one element as a 0-d tensor, else as given
    (the state's shape, or a shape that broadcasts to it)."""
    t = t.to(sdt)
    return t.reshape(()) if t.numel() == 1 else t


def _run(cfg: NeuronArgs, x: torch.Tensor, v0: Optional[torch.Tensor], k, record: bool, threshold=None,
         affine=None):
    model = cfg.model
    v = _initial_state(cfg, x[0], v0)
    sdt = v.dtype
    if k is not None:
        k = _param(k, sdt)
    theta = cfg.v_threshold if threshold is None else _param(threshold, sdt)
    if affine is not None:
        in_scale, in_shift = (_param(t, sdt) for t in affine)
    spikes, hs, vs = [], [], []
    for t in range(x.shape[0]):
        if cfg.grad == "sltt":
            v = v.detach()
        xt = x[t].to(sdt)
        if affine is not None:  # a batch norm's apply: the product rounded, then the sum
            xt = xt * in_scale + in_shift
        h = model.charge(cfg, v, xt, k, theta)
        s = spike(h - theta, cfg.surrogate, cfg.surrogate_alpha, strict=model.strict_fire)
        v = model.reset(cfg, h, s, theta)
        spikes.append(s)
        if record:
            hs.append(h)
            vs.append(v)
    out_spikes = torch.stack(spikes).to(x.dtype)
    v_last = v.detach() if cfg.grad == "sltt" else v
    if record:
        return out_spikes, torch.stack(hs), torch.stack(vs)
    return out_spikes, v_last


def run(cfg: NeuronArgs, x: torch.Tensor, v: Optional[torch.Tensor] = None, k=None, multistep: bool = True,
        threshold=None, in_scale=None, in_shift=None):
    """A checked NeuronArgs on x: [T, ...] (multistep) or one step [...]; returns (spikes, v).
    k (the model's k: LIF 1/tau, leaky beta) and threshold (replacing cfg.v_threshold): tensors
    of one element or of the state's shape. in_scale, in_shift (together or not at all): the
    neuron's input is x * in_scale + in_shift in the state dtype, each of one element or of the
    state's shape (docs/design.md, section 4.3)."""
    check_input(x, "x", multistep=multistep)
    state_shape = x.shape[1:] if multistep else x.shape
    if v is not None:
        check_state(v, "v0" if multistep else "v", x, state_shape)
    if k is not None:
        check_param(k, "k", x, state_shape)
    if threshold is not None:
        check_param(threshold, "threshold", x, state_shape)
    check_input_affine(in_scale, in_shift, x, state_shape, exact_dtype=False)
    affine = None if in_scale is None else (in_scale, in_shift)
    if multistep:
        return _run(cfg, x, v, k, record=False, threshold=threshold, affine=affine)
    s, v_new = _run(cfg, x.unsqueeze(0), v, k, record=False, threshold=threshold, affine=affine)
    return s[0], v_new


def multistep_states(cfg: NeuronArgs, x: torch.Tensor, v0: Optional[torch.Tensor] = None, k=None, threshold=None):
    """The whole trajectory: (spikes [T, ...], h [T, ...], v [T, ...]); h and v in the state dtype."""
    check_input(x, "x", multistep=True)
    return _run(cfg, x, v0, k, record=True, threshold=threshold)


def multistep_backward(cfg: NeuronArgs, h: torch.Tensor, grad_spikes: torch.Tensor,
                       grad_v_last: Optional[torch.Tensor] = None):
    """The backward of docs/design.md, section 2.5, written out from the trajectory h [T, ...]
    (LIF and IF with constant parameters).

    BPTT:  gh[t] = gs[t] sg[t] + gv[t] dv_dh[t];  gv[t-1] = lam gh[t];  gx[t] = c gh[t]
    SLTT:  gx[t] = c gs[t] sg[t]
    Returns (grad_x [T, ...], grad_v0 [...]) in h's dtype; grad_v0 is zero for SLTT.
    """
    if cfg.neuron not in ("lif", "if"):
        raise ValueError(f"multistep_backward is written out for 'lif' and 'if', got {cfg.neuron!r}")
    sg = surrogate_grad(h - cfg.v_threshold, cfg.surrogate, cfg.surrogate_alpha)
    s = (h >= cfg.v_threshold).to(h.dtype)
    gs = grad_spikes.to(h.dtype)
    if cfg.grad == "sltt":
        return cfg.input_gain * gs * sg, torch.zeros_like(h[0])
    if cfg.reset == "soft":
        dv_dh = torch.ones_like(h) if cfg.detach_reset else 1 - cfg.v_threshold * sg
    else:
        dv_dh = (1 - s) if cfg.detach_reset else (1 - s) - (h - cfg.v_reset) * sg
    gv = torch.zeros_like(h[0]) if grad_v_last is None else grad_v_last.to(h.dtype)
    gx = torch.empty_like(h)
    for t in range(h.shape[0] - 1, -1, -1):
        gh = gs[t] * sg[t] + gv * dv_dh[t]
        gx[t] = cfg.input_gain * gh
        gv = cfg.decay * gh
    return gx, gv


def store_d16(d: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """d = h - theta in a 16-bit dtype as the kernels store it (save 'h16'): rounded to nearest
    even, but a nonzero d that would round to zero becomes the smallest subnormal of its sign, so
    d's sign (the spike decision) survives exactly, and a finite d that would round to +-inf
    becomes the largest finite value of its sign (float16: +-65504), so that the backward's
    h - v_r stays finite (an inf there times a zero surrogate is NaN). An inf or NaN d stays.

    >>> store_d16(torch.tensor([-1e5, 3e-9, -float("inf")]), torch.float16)
    tensor([-6.5504e+04,  5.9605e-08,        -inf], dtype=torch.float16)
    """
    q = d.to(dtype)
    tiny = torch.tensor(1, dtype=torch.int16).view(dtype).to(d.dtype)  # the smallest subnormal
    lost = (q == 0) & (d != 0)
    q = torch.where(lost, torch.where(d > 0, tiny, -tiny).to(dtype), q)
    top = torch.finfo(dtype).max
    overflow = q.isinf() & d.isfinite()
    return torch.where(overflow, torch.where(d > 0, top, -top).to(dtype), q)


def pack_bits(flags: torch.Tensor) -> torch.Tensor:
    """Packs bool flags [T, ...] along the flattened neuron axis: int32 [T, ceil(N/32)].

    Bit j of word w at step t is flag (t, 32 w + j); bits past N are 0 (docs/design.md, section 3).
    """
    T = flags.shape[0]
    f = flags.reshape(T, -1).to(torch.int64)
    n = f.shape[1]
    words = (n + 31) // 32
    f = torch.nn.functional.pad(f, (0, words * 32 - n)).reshape(T, words, 32)
    weights = torch.bitwise_left_shift(torch.ones(32, dtype=torch.int64, device=f.device),
                                       torch.arange(32, device=f.device))
    packed = (f * weights).sum(-1)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)  # reinterpret as int32
    return packed.to(torch.int32)


def saved_state(cfg: NeuronArgs, x: torch.Tensor, v0: Optional[torch.Tensor] = None, save: Optional[str] = None,
                k=None):
    """What a kernel saves for the backward, computed from the reference trajectory.

    save defaults to cfg.save_kind(True, k is not None). 'sg': pack_bits(sg != 0); 'sg_spike':
    that and pack_bits(s) stacked [2, T, W]; 'sg_reset': that and the reset flags [v[t-1] > theta];
    'h': h [T, N]; 'h_v0': the initial state, then h [T + 1, N]; 'spike_state' (one SLTT step,
    whose backward also reads the output state): pack_bits(s) [T, W].
    """
    save = save or cfg.save_kind(True, k is not None, half=x.dtype in _config.HALF_DTYPES)
    with torch.no_grad():
        s, h, v = multistep_states(cfg, x, v0, k)
    T = h.shape[0]
    h2 = h.reshape(T, -1)
    if save == "h":
        return h2
    if save == "h16":
        return store_d16(h2 - cfg.v_threshold, x.dtype)
    v_init = _initial_state(cfg, x[0], v0).reshape(1, -1)
    if save == "h_v0":
        return torch.cat([v_init, h2])
    window = (h - cfg.v_threshold).abs() < cfg.surrogate_alpha / 2
    if save == "sg":
        return pack_bits(window)
    if save == "sg_spike":
        return torch.stack([pack_bits(window), pack_bits(s != 0)])
    if save == "spike_state":
        return pack_bits(s != 0)
    if save == "sg_reset":
        v_prev = torch.cat([v_init, v.reshape(T, -1)[:-1]])
        return torch.stack([pack_bits(window), pack_bits(v_prev > cfg.v_threshold)])
    raise ValueError(f"save must be 'sg', 'sg_spike', 'sg_reset', 'spike_state', 'h', 'h16' or 'h_v0', "
                     f"got {save!r}")
