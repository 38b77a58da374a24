"""Half-precision saved state (save 'h16'): for float16 / bfloat16 input, the non-rect surrogates
keep d = h - theta in 16 bits instead of h in float32. The backward's decisions stay exact (the
store keeps d's sign) and its error against the float64 reference stays within the bound of
docs/design.md, section 3: for every registered model (tests/helpers.py MODEL_ROWS)."""

import pytest
import torch

import sltt_kernels
from sltt_kernels import _config, reference
from sltt_kernels.memory import SavedTensorMeter

from helpers import (
    DEVICE_OF,
    EPS,
    KERNEL_BACKENDS,
    MissingRow,
    backend_op,
    config_of,
    kw_id,
    make_v0,
    make_x,
    model_rows,
    neuron_kwargs,
)

HALF = [torch.float16, torch.bfloat16]
# unit roundoff of the stored d: 2^-11 (float16), 2^-8 (bfloat16)
ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
CONFIGS = [
    neuron_kwargs("soft", False, False, "triangle", "sltt", tau=1.1),  # the paper's neuron
    neuron_kwargs("soft", False, False, "triangle", "bptt", tau=1.1),
    neuron_kwargs("hard0", True, False, "sigmoid", "bptt"),
    neuron_kwargs("hard-0.3", True, True, "atan", "bptt"),
]
IDS = ["paper-sltt", "paper-bptt", "hard-sigmoid", "hard-detach-atan"]


def _h16_cases():
    """LIF's four configurations above; for the other rows, each core keyword set that saves h16
    (the parametric LIF with a constant w: a learnable one saves h and the initial state)."""
    cases = []
    for row in model_rows():
        if isinstance(row, MissingRow):
            cases.append(pytest.param(row, {}, id=row.name))
        elif row.name == "lif":
            cases += [pytest.param(row, kw, id=f"lif-{i}") for kw, i in zip(CONFIGS, IDS)]
        else:
            cases += [pytest.param(row, kw, id=f"{row.name}-{kw_id(kw)}") for kw in row.core_kw
                      if row.args(kw).save_kind(True, half=True) == "h16"]
    return cases


def _k(row, device):
    """The raw ops' k of a constant w (float32, as the public path makes it for 16-bit input)."""
    w = row.w(torch.float32, device).get("w")
    return None if w is None else torch.sigmoid(w)


def test_save_kind_is_h16_only_where_h_would_be_saved():
    cfg = config_of(CONFIGS[0])
    assert cfg.save_kind(True, half=True) == "h16" and cfg.save_kind(True) == "h"
    rect = config_of(neuron_kwargs("soft", False, False, "rect", "sltt"))
    assert rect.save_kind(True, half=True) == "sg"  # the bit is smaller still
    assert cfg.save_kind(True, learn_k=True, half=True) == "h_v0"  # a learnable k needs v exactly
    with pytest.raises(TypeError, match="h16"):
        _config.saved_dtype("h16", torch.float32)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("row, kw", _h16_cases())
def test_h16_matches_the_reference_within_the_bound(backend, dtype, row, kw):
    dev = DEVICE_OF[backend]
    x = make_x((6, 3, 77), torch.float64, dev, seed=2).to(dtype)
    cfg = row.args(kw)
    k = _k(row, dev)
    # the saved tensor is the reference's, bit for bit
    _, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, None, k, *cfg.args("h16"))
    assert saved.dtype == dtype and saved.shape == (6, 3 * 77)
    expect = reference.saved_state(cfg, x.cpu(), None, "h16", k=None if k is None else k.cpu())
    if row.learnable_w:
        # the reference's plain (1 - k)(v - v_r) + k x rounds the float32 h differently from the
        # kernels' fused multiply-adds with a tensor k in a few elements (a constant lam is exact):
        # d within 1 ulp, of the same sign
        ulps = saved.cpu().view(torch.int16).int() - expect.view(torch.int16).int()
        assert ulps.abs().max() <= 1 and torch.equal(saved.cpu().signbit(), expect.signbit())
    elif backend != "triton" or dtype == torch.float16:
        assert torch.equal(saved.cpu().view(torch.int16), expect.view(torch.int16))
    else:  # the interpreter rounds the float32 h itself differently in rare cases; d within 1 ulp
        torch.testing.assert_close(saved.cpu().float(), expect.float(), rtol=2**-7, atol=0)
    # gradients against float64 autograd of the reference on the same input (a constant w: the
    # public path saves h16 too)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xk = x.clone().requires_grad_(True)
    s, v = row.functions()[0](xk, **kw, **row.w(torch.float32, dev), backend=backend)
    loss = (s * w.to(dev, dtype)).sum() + (v.sum() if kw["grad"] == "bptt" else 0)
    gk, = torch.autograd.grad(loss, xk)
    x64 = x.cpu().double().requires_grad_(True)
    # the float64 oracle's w: the float32 one's value
    rs, rv = row.functions(on_reference=True)[0](x64, **kw, **{n: t.double() for n, t in row.w(torch.float32).items()})
    assert torch.equal(s.cpu().double(), rs)
    gr, = torch.autograd.grad((rs * w.to(dtype).double()).sum() + (rv.sum() if kw["grad"] == "bptt" else 0), x64)
    # d's rounding moves each sg by at most alpha * roundoff (section 3), the output's by its own
    # roundoff; along time the errors add up over T = 6 steps
    scale = gr.abs().max()
    err = (gk.cpu().double() - gr).abs().max() / scale
    assert err <= 8 * ROUNDOFF[dtype] * 6, err


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
def test_h16_keeps_the_sign_of_a_tiny_d(backend, dtype, row):
    """h a hair below and above the threshold: d would round to zero in 16 bits; the store keeps
    its sign, so the backward's spike (and with it a hard reset's dv/dh) is the forward's."""
    dev = DEVICE_OF[backend]
    kw, gain = row.tiny_d
    cfg = row.args(kw)
    k = torch.tensor([0.5], dtype=torch.float32, device=dev) if row.learnable_w else None
    # h = gain v0 (no input): d = -2^-26 and +2^-25, both below float16's smallest subnormal (2^-24)
    h = torch.tensor([0.25 - 2.0**-26, 0.25 + 2.0**-25, 0.25, 0.0625], dtype=torch.float32)
    v0 = (h / gain).to(dev)
    x = torch.zeros(1, 4, dtype=dtype, device=dev)
    spikes, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, v0, k, *cfg.args("h16"))
    d = saved.float().cpu()[0]
    at_theta = 0.0 if cfg.model.strict_fire else 1.0  # 'leaky' fires on h > theta
    assert spikes.cpu()[0].tolist() == [0.0, 1.0, at_theta, 0.0]
    assert d[0] < 0 < d[1] and d[2] == 0 and d[3] < 0
    expect = reference.saved_state(cfg, x.cpu(), v0.cpu(), "h16", k=None if k is None else k.cpu())
    assert torch.equal(saved.cpu().view(torch.int16), expect.view(torch.int16))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_h16_halves_the_saved_bytes(dtype):
    if sltt_kernels.available_backends()["cpu"] is not None:
        pytest.skip("needs the compiled CPU kernel")
    T, n = 6, 4096
    x = make_x((T, n), torch.float64).to(dtype).requires_grad_(True)
    kw = neuron_kwargs("soft", False, False, "triangle", "sltt", tau=1.1)
    with SavedTensorMeter() as m16:
        sltt_kernels.lif_multistep(x, backend="cpu", **kw)
    x32 = x.detach().float().requires_grad_(True)
    with SavedTensorMeter() as m32:
        sltt_kernels.lif_multistep(x32, backend="cpu", **kw)
    assert m16.peak <= T * n * 2 + 64 and m32.peak >= T * n * 4


# ---------------------------------------------------------------------------------------------
# A membrane far from the threshold: d beyond the 16-bit range (float16: |d| > 65504) is stored as
# the largest finite value of its sign, not +-inf. An inf d made the backward's h - v_r times a
# zero surrogate a NaN, and the NaN spread along time to every gradient of the sequence.

CONTINUOUS = [s for s in _config.SURROGATE_KINDS if s != "rect"]
# beyond the range: float16 from 65520 (half an ulp above 65504), bfloat16 from float32's
# 3.3961776e38 (half an ulp above its largest finite 3.3895314e38)
BEYOND = {torch.float16: 1e5, torch.bfloat16: 3.4e38}


def test_store_d16_saturates_a_finite_d_beyond_the_range():
    f32max = torch.finfo(torch.float32).max
    inf, nan = float("inf"), float("nan")
    for dtype, top in ((torch.float16, 65504.0), (torch.bfloat16, torch.finfo(torch.bfloat16).max)):
        # rounds to top, rounds to inf, far beyond, float32's largest, inf and NaN themselves
        d = torch.tensor([top, 65519.0, 65520.0, 1e5, f32max, inf, nan, 0.75], dtype=torch.float32)
        d = torch.cat([d, -d])
        q = reference.store_d16(d, dtype)
        assert q.dtype == dtype
        if dtype == torch.float16:
            expect = [top, top, top, top, top, inf, nan, 0.75]
        else:  # bfloat16 has float32's exponent: only values above its largest finite one round to inf
            expect = [top, 65536.0, 65536.0, 99840.0, top, inf, nan, 0.75]
        expect = torch.tensor(expect + [-e for e in expect], dtype=torch.float64)
        torch.testing.assert_close(q.double(), expect, rtol=0, atol=0, equal_nan=True)
        number = ~d.isnan()  # a NaN's sign bit decides nothing (and torch's bfloat16 cast sets it)
        assert torch.equal(q.signbit()[number], d.signbit()[number])  # the spike decision: d's sign
    # float64 d (the reference's state for float64 x never saves h16, but the store takes any d)
    q = reference.store_d16(torch.tensor([-1e300, 1e300], dtype=torch.float64), torch.float16)
    assert q.tolist() == [-65504.0, 65504.0]


def _store_cases():
    """Each row's tiny_d configuration (h = gain v0 at the first step without input) in float16;
    in bfloat16 only where the gain reaches 1: with a gain of 0.5, v0 = 2 h overflows float32 before
    h leaves bfloat16's range."""
    cases = []
    for row in model_rows():
        if isinstance(row, MissingRow):
            cases.append(pytest.param(row, torch.float16, id=row.name))
            continue
        for dtype in HALF:
            if dtype == torch.float16 or row.tiny_d[1] >= 1.0:
                cases.append(pytest.param(row, dtype, id=f"{row.name}-{dtype}"))
    return cases


# the Triton interpreter's numpy warns of the overflows the kernels then correct
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row, dtype", _store_cases())
def test_h16_store_saturates_in_the_kernels(backend, row, dtype):
    """The kernels' 16-bit store of d, bit for bit the reference's store_d16: a finite d beyond the
    range becomes the largest finite value of its sign; an inf or NaN d stays what it is."""
    dev = DEVICE_OF[backend]
    kw, gain = row.tiny_d
    cfg = row.args(kw)
    k = torch.tensor([0.5], dtype=torch.float32, device=dev) if row.learnable_w else None
    top = torch.finfo(dtype).max
    beyond = BEYOND[dtype]
    inf = float("inf")
    # h = gain v0 (x = 0); theta = 0.25
    h = torch.tensor([-beyond, beyond, -top, top, 0.75, -inf, inf, float("nan")], dtype=torch.float32)
    v0 = (h / gain).to(dev)
    assert torch.isfinite(v0[:5]).all()
    x = torch.zeros(1, h.numel(), dtype=dtype, device=dev)
    expect = reference.saved_state(cfg, x.cpu(), v0.cpu(), "h16", k=None if k is None else k.cpu())
    finite = torch.isfinite(expect[0])
    # both instruction-set paths of the C++ kernels (the AVX2 copy may convert with F16C)
    for isa in (["avx2", "generic"] if backend == "cpu" else [None]):
        try:
            before = torch.ops.sltt_kernels._cpu_isa(isa) if isa else None
        except RuntimeError:  # a CPU without AVX2+FMA: its generic path alone
            continue
        try:
            _, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, v0, k, *cfg.args("h16"))
        finally:
            if isa:
                torch.ops.sltt_kernels._cpu_isa("auto" if before == "auto" else before)
        d = saved.cpu()[0].double()
        assert d[:2].tolist() == [-top, top], isa  # saturated, not +-inf
        assert d[2:4].abs().tolist() == [top, top] and d[4] == 0.5, isa
        assert d[5:7].tolist() == [-inf, inf] and d[7].isnan(), isa
        assert torch.equal(saved.cpu()[0][finite].view(torch.int16), expect[0][finite].view(torch.int16)), isa


def _deep_input(dtype, device):
    """x [5, 5, 13] and a float32 v0 [5, 13]: random neurons (rows 2, 4), neurons driven beyond d's
    16-bit range by the input (row 0: float16 only, x = -+60000 at every step), neurons that
    start there (row 1: v0 = -+BEYOND) and both (row 3: beyond at the first step even where a
    hard reset brings the firing ones back). Half of each row below the threshold, half above."""
    x = make_x((5, 5, 13), torch.float64, seed=4)
    v0 = make_v0((5, 13), torch.float64, seed=5)
    sign = torch.where(torch.arange(13) < 6, -1.0, 1.0).double()
    x[:, 0] = x[:, 3] = 60000.0 * sign
    v0[1] = v0[3] = BEYOND[dtype] * sign
    return x.to(dtype).to(device), v0.float().to(device)


# the Triton interpreter's numpy warns of the overflows the kernels then correct
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("surrogate", CONTINUOUS)
@pytest.mark.parametrize("reset, detach", [("soft", False), ("hard0", False), ("hard-0.3", True)])
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
def test_h16_deep_membrane_gives_finite_gradients(backend, dtype, surrogate, reset, detach, grad):
    """LIF far below (and above) the threshold with 16-bit input: the gradients are finite and
    those of the float64 backward (reference.multistep_backward) from the d the reference's
    store_d16 keeps. tau = 2 for float16 (the issue's case); bfloat16 spans float32's range, so
    only a decay close to 1 (tau = 1e4) keeps h beyond it (a float32 h twice as deep is inf)."""
    dev = DEVICE_OF[backend]
    kw = neuron_kwargs(reset, False, detach, surrogate, grad, tau=2.0 if dtype == torch.float16 else 1e4)
    cfg = config_of(kw)
    x, v0 = _deep_input(dtype, dev)
    # the forward keeps d beyond the range as the largest finite value of its sign
    _, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, v0, None, *cfg.args("h16"))
    expect = reference.saved_state(cfg, x.cpu(), v0.cpu(), "h16")
    top = torch.finfo(dtype).max
    assert saved.dtype == dtype and torch.isfinite(saved).all()
    assert (expect.double() == -top).any() and (expect.double() == top).any()
    if backend != "triton" or dtype == torch.float16:
        assert torch.equal(saved.cpu().view(torch.int16), expect.view(torch.int16))
    else:  # the interpreter rounds the float32 h itself differently in rare cases; d within 1 ulp
        torch.testing.assert_close(saved.cpu().float(), expect.float(), rtol=2**-7, atol=0)
    # the public function's gradients (it saves h16 for this input)
    g = torch.Generator().manual_seed(6)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
    w_v = torch.randn(v0.shape, generator=g, dtype=torch.float32)
    xk = x.clone().requires_grad_(True)
    vk = v0.clone().requires_grad_(True)
    s, v = sltt_kernels.lif_multistep(xk, vk, **kw, backend=backend)
    loss = (s * w.to(dev)).sum() + ((v * w_v.to(dev)).sum() if grad == "bptt" else 0)
    gx, gv0 = torch.autograd.grad(loss, [xk, vk], allow_unused=True)
    assert torch.isfinite(gx).all() and (gv0 is None or torch.isfinite(gv0).all())
    # the float64 backward from the reference's saved d (h = d + theta is exact in float64 but
    # for a bfloat16 |d| below 2^-45, which this input does not reach)
    h64 = expect.double().reshape(x.shape) + cfg.v_threshold
    rx, rv0 = reference.multistep_backward(cfg, h64, w.double(), w_v.double() if grad == "bptt" else None)
    # the kernels compute in float32 (gs sg and gv dv/dh may cancel: float32's rounding of the
    # larger terms, a few 2^-24 of the gradient's scale) and round gx once to x's dtype
    scale = rx.abs().max().item()
    torch.testing.assert_close(gx.cpu().double(), rx.to(dtype).double(), rtol=2 * EPS[dtype],
                               atol=2.0**-24 + 16 * 2.0**-24 * scale)
    if grad == "bptt":
        torch.testing.assert_close(gv0.cpu().double(), rv0, rtol=1e-5, atol=1e-6)
