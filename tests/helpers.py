"""Shared test helpers: backends, dtypes, neuron configurations, inputs and oracles.

Imported by the test modules (`from helpers import ...`); the fixtures are in conftest.py."""

from __future__ import annotations

import inspect
import itertools
import os
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import pytest
import torch

# Without a GPU the Triton kernels run on CPU tensors through Triton's interpreter, which must be
# switched on before the kernels are defined (sltt_kernels imports its Triton module lazily).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import sltt_kernels  # noqa: E402
from sltt_kernels import _config, _registration, reference  # noqa: E402
from sltt_kernels.neurons.if_ import if_config  # noqa: E402
from sltt_kernels.neurons.leaky import leaky_config  # noqa: E402
from sltt_kernels.neurons.lif import lif_config, plif_config  # noqa: E402

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
    "fast_sigmoid": sltt_kernels.surrogate.FastSigmoid(25.0),
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


# ---------------------------------------------------------------------------------------------
# The equivalence suite's rows (tests/kernels/test_kernels.py): one per public function family of each
# registered neuron model, LIF one row like the others.


@dataclass(frozen=True)
class ModelRow:
    """A public function family of a registered neuron model, with the keyword sets the suite runs.

    name: the row's id ('lif', 'plif', ...); model: its name in sltt_kernels._config.MODELS;
    multistep / step: its public functions' names (sltt_kernels.<name>, reference.<name>);
    config: its keywords -> the checked NeuronArgs; all_kw: the full cross product of its keyword
    sets; core_kw: a small subset that still produces every save kind, reset, surrogate and
    gradient mode of the row (LIF: CORE_CONFIGS; the first is the row's plain neuron); vary:
    keyword -> the values the property test draws; learnable_w: takes w (1/tau = sigmoid(w)), a
    one-element tensor whose gradient is checked; tiny_d: (keywords, gain): a hard (or no)
    reset, theta = 0.25 and a continuous surrogate, under which the first step's h is gain * v0
    without input (with k = 0.5 for the parametric LIF): tests/kernels/test_half_saved.py sets h a hair
    off the threshold with it."""

    name: str
    model: str
    multistep: str
    step: str
    config: Callable
    all_kw: Tuple[dict, ...]
    core_kw: Tuple[dict, ...]
    vary: Dict[str, tuple]
    tiny_d: Tuple[dict, float]
    learnable_w: bool = False

    def functions(self, on_reference: bool = False):
        """(multi-step, one-step) public functions, of the kernels' API or of the reference."""
        where = reference if on_reference else sltt_kernels
        return getattr(where, self.multistep), getattr(where, self.step)

    def w(self, dtype=torch.float64, device="cpu", requires_grad=False):
        """The keyword arguments for w (0.3: tau = 1/sigmoid(0.3), about 1.74) or none."""
        if not self.learnable_w:
            return {}
        return {"w": torch.tensor(0.3, dtype=dtype, device=device, requires_grad=requires_grad)}

    def args(self, kw) -> "_config.NeuronArgs":
        """The checked NeuronArgs of these keywords, the public function's defaults filling in."""
        fn = self.functions()[0]
        given = {p.name: p.default for p in inspect.signature(fn).parameters.values()
                 if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name != "backend"}
        given.update(kw)
        return self.config(**given)

    def save_kinds(self, kw, half: bool = False) -> Tuple[str, ...]:
        """The save kinds the public functions produce for these keywords (with w learnable, the
        parametric LIF saves h_v0; with w constant, the kind of its plain configuration)."""
        cfg = self.args(kw)
        kinds = [cfg.save_kind(True, half=half)]
        if self.learnable_w:
            kinds.append(cfg.save_kind(True, learn_k=True, half=half))
        return tuple(dict.fromkeys(kinds))


def _if_kw(reset, detach_reset, surrogate, grad):
    return dict(v_reset=RESETS[reset], detach_reset=detach_reset, surrogate=surrogate, grad=grad)


def _leaky_kw(beta_threshold, reset_mechanism, surrogate, grad):
    beta, threshold = beta_threshold
    return dict(beta=beta, threshold=threshold, reset_mechanism=reset_mechanism, surrogate=surrogate, grad=grad)


def _plif_kw(reset, decay_input, detach_reset, surrogate, grad):
    return dict(v_reset=RESETS[reset], decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate,
                grad=grad)


_LEAKY_PARAMS = ((0.8, 1.0), (1.0, 0.7), (0.0, 1.0))

MODEL_ROWS = {
    "lif": ModelRow(
        "lif", "lif", "lif_multistep", "lif_step", lif_config, tuple(ALL_CONFIGS), tuple(CORE_CONFIGS),
        vary={"tau": (1.0, 1.5, 2.0, 10.0), "v_threshold": (0.5, 1.0)},
        tiny_d=(neuron_kwargs("hard0", False, False, "sigmoid", "bptt", tau=2.0, v_threshold=0.25), 0.5)),
    "plif": ModelRow(
        "plif", "lif", "plif_multistep", "plif_step", plif_config,
        tuple(_plif_kw(*c) for c in itertools.product(("soft", "hard-0.3"), (True, False), (False, True),
                                                     ("rect", "sigmoid"), ("bptt", "sltt"))),
        (_plif_kw("soft", True, False, "rect", "bptt"),        # 1-bit mask (h_v0 with w learnable)
         _plif_kw("hard-0.3", False, True, "rect", "bptt"),    # 2-bit mask
         _plif_kw("soft", False, False, "sigmoid", "sltt"),    # h, SLTT
         _plif_kw("hard-0.3", True, False, "sigmoid", "bptt")),  # h
        vary={"v_threshold": (0.5, 1.0)},
        tiny_d=(dict(v_threshold=0.25, v_reset=0.0, decay_input=False, detach_reset=False, surrogate="sigmoid",
                     grad="bptt"), 0.5),
        learnable_w=True),
    "if": ModelRow(
        "if", "if", "if_multistep", "if_step", if_config,
        tuple(_if_kw(*c) for c in itertools.product(("soft", "hard0", "hard-0.3"), (False, True), ("rect", "atan"),
                                                   ("bptt", "sltt"))),
        (_if_kw("soft", False, "rect", "bptt"),       # 1-bit mask
         _if_kw("hard0", False, "rect", "bptt"),      # h
         _if_kw("hard-0.3", True, "rect", "bptt"),    # 2-bit mask
         _if_kw("soft", True, "atan", "sltt")),       # h, SLTT
        vary={"v_threshold": (0.5, 1.0)},
        tiny_d=(dict(v_threshold=0.25, v_reset=0.0, detach_reset=False, surrogate="atan", grad="bptt"), 1.0)),
    "leaky": ModelRow(
        "leaky", "leaky", "leaky_multistep", "leaky_step", leaky_config,
        tuple(_leaky_kw(*c) for c in itertools.product(_LEAKY_PARAMS, ("subtract", "zero", "none"),
                                                      ("rect", "atan", "triangle"), ("bptt", "sltt"))),
        (_leaky_kw((0.8, 1.0), "subtract", "rect", "bptt"),    # 1-bit mask
         _leaky_kw((0.8, 1.0), "zero", "rect", "bptt"),        # 2-bit mask: the reset flags
         _leaky_kw((0.8, 1.0), "zero", "atan", "bptt"),        # h and the initial state
         _leaky_kw((0.0, 1.0), "subtract", "triangle", "bptt"),  # h
         _leaky_kw((1.0, 0.7), "none", "triangle", "sltt")),   # h, SLTT
        vary={"beta": (0.0, 0.5, 0.9, 1.0), "threshold": (0.5, 1.0)},
        tiny_d=(dict(beta=0.5, threshold=0.25, reset_mechanism="none", surrogate="atan", grad="bptt"), 0.5)),
}


class MissingRow:
    """Stands for a registered model that has no row: every test it reaches fails, naming it."""

    def __init__(self, model: str):
        self.model, self.name = model, f"{model}-has-no-row"
        self.core_kw = self.all_kw = ({},)

    def __getattr__(self, attr):
        raise AssertionError(f"tests/helpers.py MODEL_ROWS has no row for the registered neuron model {self.model!r}")


def model_rows():
    """The suite's rows, in the registry's order (sltt_kernels._config.MODELS): each registered
    model's rows, or a MissingRow that fails."""
    rows = []
    for model in _config.MODELS:
        rows += [r for r in MODEL_ROWS.values() if r.model == model] or [MissingRow(model)]
    return rows


def kw_id(kw) -> str:
    """A short test id of a keyword set: its values in order ('None-True-False-Rect(width=1.0)-bptt')."""
    return "-".join(str(v) for v in kw.values())


def row_cases(which: str = "core", where=None):
    """pytest params (row, kw) over every row's keyword sets ('core' or 'all'), kept if where(row, kw)."""
    out = []
    for row in model_rows():
        for kw in getattr(row, f"{which}_kw"):
            if isinstance(row, MissingRow) or where is None or where(row, kw):
                out.append(pytest.param(row, kw, id=f"{row.name}-{kw_id(kw)}"))
    return out


# The test row of every registered neuron model (tests/ops/test_registry.py checks each has one):
# checked configurations covering its resets (the core keyword sets of its rows with constant
# parameters), run through the kernels by the registry tests.
MODEL_CASES = {
    model: [row.args(kw) for row in MODEL_ROWS.values() if row.model == model and not row.learnable_w
            for kw in row.core_kw]
    for model in dict.fromkeys(row.model for row in MODEL_ROWS.values())
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


def safe_neurons(kw, x: torch.Tensor, v0=None, margin: float = 1e-4, k=None) -> torch.Tensor:
    """bool [N]: neurons whose float64 trajectory stays `margin` away from every decision
    boundary (the threshold, and the rect window's edges). On these, a float32 kernel and the
    float64 reference must take the same branches, so spikes and masks must agree exactly.
    kw: LIF keywords (as neuron_kwargs makes them) or any model's checked NeuronArgs; k: the
    parametric LIF's 1/tau."""
    cfg = kw if isinstance(kw, _config.NeuronArgs) else config_of(kw)
    with torch.no_grad():
        _, h, _ = reference.multistep_states(cfg, x.detach().double().cpu(),
                                             None if v0 is None else v0.detach().double().cpu(),
                                             None if k is None else k.detach().double().cpu())
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




class TwoLeakyLayers(torch.nn.Module):
    """snnTorch's tutorial network: fc1 -> lif1 -> fc2 -> lif2 per time step, the membranes from
    reset_mem(); returns lif2's spikes + membrane per step, [T, B, sizes[2]] for x [T, B, sizes[0]].

    make_lif1, make_lif2: zero-argument callables that build the neurons (snnTorch's Leaky or ours),
    called after the linear layers so that the layers' initial weights do not depend on them."""

    def __init__(self, make_lif1: Callable, make_lif2: Callable, sizes: Tuple[int, int, int] = (8, 10, 3)):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(sizes[0], sizes[1]), torch.nn.Linear(sizes[1], sizes[2])
        self.lif1, self.lif2 = make_lif1(), make_lif2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[t]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2 + mem2)
        return torch.stack(out)
