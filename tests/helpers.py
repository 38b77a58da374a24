"""Shared test helpers: backends, dtypes, neuron configurations, inputs and oracles.

Imported by the test modules (`from helpers import ...`); the fixtures are in conftest.py."""

from __future__ import annotations

import itertools
import os

import pytest
import torch

# Without a GPU the Triton kernels run on CPU tensors through Triton's interpreter, which must be
# switched on before the kernels are defined (sltt_kernels imports its Triton module lazily).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import sltt_kernels  # noqa: E402
from sltt_kernels import _registration, reference  # noqa: E402
from sltt_kernels.neurons.lif import lif_config  # noqa: E402

HAVE_EXT = sltt_kernels.available_backends()["cpu"] is None
if os.environ.get("SLTT_KERNELS_REQUIRE_EXTENSION", "") not in ("", "0") and not HAVE_EXT:
    raise RuntimeError(
        f"SLTT_KERNELS_REQUIRE_EXTENSION is set but the compiled ops did not load: "
        f"{sltt_kernels.available_backends()['cpu']} (imported from {sltt_kernels.__file__})"
    )
HAVE_CUDA_GPU = torch.cuda.is_available()

needs_ext = pytest.mark.skipif(not HAVE_EXT, reason=f"compiled extension unavailable: {sltt_kernels.available_backends()['cpu']}")

# Kernel backends that run on this machine, with the device their tensors live on.
KERNEL_BACKENDS = [
    pytest.param("cpu", marks=needs_ext, id="cpu"),
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not (HAVE_CUDA_GPU and sltt_kernels.available_backends()["cuda"] is None),
            reason="needs a CUDA GPU and the extension's CUDA ops",
        ),
        id="cuda",
    ),
    pytest.param(
        "triton",
        marks=pytest.mark.skipif(
            sltt_kernels.available_backends()["triton"] is not None,
            reason=f"Triton backend unavailable: {sltt_kernels.available_backends()['triton']}",
        ),
        id="triton",
    ),
]


def backend_op(backend: str, name: str):
    """The torch op `name` (e.g. 'neuron_multistep_fwd') as the backend registers it."""
    if backend == "triton":
        import sltt_kernels.triton.ops  # noqa: F401  (registers the Triton kernels)
    return _registration.op(name, triton=backend == "triton")


# Triton runs on the GPU when there is one, else on CPU tensors under the interpreter.
DEVICE_OF = {"cpu": "cpu", "cuda": "cuda", "triton": "cuda" if HAVE_CUDA_GPU else "cpu"}

SURROGATES = {
    "rect": sltt_kernels.surrogate.Rect(1.0),
    "rect0.5": sltt_kernels.surrogate.Rect(0.5),
    "triangle": sltt_kernels.surrogate.Triangle(1.0),
    "sigmoid": sltt_kernels.surrogate.Sigmoid(4.0),
    "atan": sltt_kernels.surrogate.ATan(2.0),
}
RESETS = {"soft": None, "hard0": 0.0, "hard-0.3": -0.3}


def neuron_kwargs(reset="soft", decay_input=True, detach_reset=False, surrogate="rect", grad="bptt", tau=2.0, v_threshold=1.0):
    return dict(
        tau=tau,
        v_threshold=v_threshold,
        v_reset=RESETS[reset],
        decay_input=decay_input,
        detach_reset=detach_reset,
        surrogate=SURROGATES[surrogate],
        grad=grad,
    )


def _config_id(kw):
    r = [k for k, v in RESETS.items() if v == kw["v_reset"]][0]
    return f"{r}-{'decay' if kw['decay_input'] else 'nodecay'}-{'detach' if kw['detach_reset'] else 'keep'}-{kw['surrogate']!r}-{kw['grad']}"


ALL_CONFIGS = [
    neuron_kwargs(r, d, dr, s, g)
    for r, d, dr, s, g in itertools.product(RESETS, (True, False), (False, True), SURROGATES, ("bptt", "sltt"))
]
# A smaller set that still covers every saved-state kind and every surrogate.
CORE_CONFIGS = [
    neuron_kwargs("soft", False, False, "rect", "sltt"),  # the paper's neuron: 1-bit mask
    neuron_kwargs("soft", False, False, "rect", "bptt"),  # 1-bit mask, BPTT
    neuron_kwargs("soft", True, True, "rect", "bptt"),
    neuron_kwargs("hard0", True, True, "rect", "bptt"),  # 2-bit mask
    neuron_kwargs("hard0", True, False, "rect", "bptt"),  # h saved
    neuron_kwargs("hard-0.3", True, False, "triangle", "bptt", tau=4 / 3),
    neuron_kwargs("soft", True, False, "sigmoid", "bptt"),
    neuron_kwargs("hard0", False, True, "atan", "sltt"),
    neuron_kwargs("soft", True, False, "rect0.5", "sltt", tau=1.0),
]
ALL_CONFIG_IDS = [_config_id(k) for k in ALL_CONFIGS]
CORE_CONFIG_IDS = [_config_id(k) for k in CORE_CONFIGS]

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# Element tolerance of each dtype (its machine epsilon).
EPS = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


# The test row of every registered neuron model (tests/test_registry.py checks each has one):
# checked configurations covering its resets, run through the kernels by the registry tests.
MODEL_CASES = {
    "lif": [lif_config(**kw) for kw in CORE_CONFIGS],
    "if": [sltt_kernels.neurons.if_.if_config(v_threshold=1.0, v_reset=r, detach_reset=False, surrogate="rect",
                                              grad="bptt") for r in (None, 0.0)],
    "leaky": [sltt_kernels.neurons.leaky.leaky_config(beta=0.8, threshold=1.0, reset_mechanism=m, surrogate="rect",
                                                      grad="bptt") for m in ("subtract", "zero", "none")],
}


def config_of(kw):
    """The checked NeuronArgs of LIF keywords (as neuron_kwargs makes them)."""
    return lif_config(**kw)


def make_x(shape, dtype=torch.float32, device="cpu", seed=0, requires_grad=False):
    """Random input that makes the neurons fire often, but not always (never zeros)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.9).to(dtype).to(device)
    return x.requires_grad_(requires_grad)


def make_v0(shape, dtype=torch.float32, device="cpu", seed=1, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    v = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.4).to(dtype).to(device)
    return v.requires_grad_(requires_grad)


def unpack_bits(words: torch.Tensor, n: int) -> torch.Tensor:
    """int32 [T, W] -> bool [T, n]: the inverse of reference.pack_bits."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    bits = (w.unsqueeze(-1) >> torch.arange(32, device=w.device)) & 1
    return bits.reshape(*words.shape[:-1], -1)[..., :n].bool()


def safe_neurons(kw, x: torch.Tensor, v0=None, margin: float = 1e-4) -> torch.Tensor:
    """bool [N]: neurons whose float64 trajectory stays `margin` away from every decision
    boundary (the threshold, and the rect window's edges). On these, a float32 kernel and the
    float64 reference must take the same branches, so spikes and masks must agree exactly."""
    cfg = config_of(kw)
    with torch.no_grad():
        _, h, _ = reference.multistep_states(cfg, x.detach().double().cpu(), None if v0 is None else v0.detach().double().cpu())
    d = (h - cfg.v_threshold).abs().reshape(h.shape[0], -1)
    dist = d
    if cfg.surrogate == "rect":
        dist = torch.minimum(d, (d - cfg.surrogate_alpha / 2).abs())
    return (dist > margin).all(dim=0)


def reference_grads(kw, x, v0, w_spikes, w_v=None):
    """Forward + backward of the float64 reference: (spikes, v_last, grad_x, grad_v0)."""
    x64 = x.detach().double().cpu().requires_grad_(True)
    v64 = None if v0 is None else v0.detach().double().cpu().requires_grad_(True)
    s, v = reference.lif_multistep(x64, v64, **kw)
    loss = (s * w_spikes.double().cpu()).sum()
    if w_v is not None and kw["grad"] == "bptt":
        loss = loss + (v * w_v.double().cpu()).sum()
    inputs = [x64] + ([v64] if v64 is not None else [])
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    gv = grads[1] if v64 is not None else None
    if gv is None and v64 is not None:
        gv = torch.zeros_like(v64)
    return s.detach(), v.detach(), grads[0], gv


