"""Every kernel backend equals the reference: forward, gradients, saved state.

Parametrised over backend x dtype x shape x neuron configuration. float64 is compared
exactly (gradients to 1e-12); float32/float16/bfloat16 on the neurons whose trajectory stays
away from the decision boundaries (see conftest.safe_neurons), since the float32 reference
rounds differently from the kernels' fused multiply-adds.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sltt_kernels
from sltt_kernels import reference

from helpers import (
    ALL_CONFIG_IDS,
    ALL_CONFIGS,
    CORE_CONFIG_IDS,
    CORE_CONFIGS,
    DEVICE_OF,
    EPS,
    KERNEL_BACKENDS,
    RESETS,
    SURROGATES,
    backend_op,
    config_of,
    make_v0,
    make_x,
    neuron_kwargs,
    reference_grads,
    safe_neurons,
    unpack_bits,
)

SHAPES = [(1, 1), (1, 33), (4, 33), (6, 2, 3, 37), (3, 1031)]
SHAPE_IDS = ["T1N1", "T1N33", "T4N33", "T6N222", "T3N1031"]


def _kernel_run(backend, kw, x, v0, w, wv):
    """Forward + backward through the public API on `backend`."""
    xk = x.detach().clone().requires_grad_(True)
    vk = None if v0 is None else v0.detach().clone().requires_grad_(True)
    s, v = sltt_kernels.lif_multistep(xk, vk, backend=backend, **kw)
    loss = (s * w).sum()
    if kw["grad"] == "bptt":
        loss = loss + (v * wv).sum()
    inputs = [xk] + ([vk] if vk is not None else [])
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    gv = grads[1] if vk is not None else None
    return s.detach(), v.detach(), grads[0], gv


def _weights(shape, dtype, device, seed=5):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)
    wv = torch.randn(shape[1:], generator=g, dtype=torch.float64).to(device)
    return w, wv


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=ALL_CONFIG_IDS)
def test_float64_equals_reference(backend, shape, kw):
    dev = DEVICE_OF[backend]
    x = make_x(shape, torch.float64, dev)
    v0 = make_v0(shape[1:], torch.float64, dev)
    w, wv = _weights(shape, torch.float64, dev)
    s, v, gx, gv = _kernel_run(backend, kw, x, v0, w, wv.double())
    rs, rv, rgx, rgv = reference_grads(kw, x, v0, w, wv)
    assert s.dtype == torch.float64 and v.dtype == torch.float64
    assert torch.equal(s.cpu(), rs)
    torch.testing.assert_close(v.cpu(), rv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx.cpu(), rgx, rtol=1e-12, atol=1e-12)
    if kw["grad"] == "bptt":
        torch.testing.assert_close(gv.cpu(), rgv, rtol=1e-12, atol=1e-12)
    else:
        assert gv is None  # SLTT: v0 gets no gradient


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(1, 33), (5, 3, 67), (8, 1031)], ids=["T1N33", "T5N201", "T8N1031"])
@pytest.mark.parametrize("kw", CORE_CONFIGS, ids=CORE_CONFIG_IDS)
def test_low_precision_equals_reference(backend, dtype, shape, kw):
    dev = DEVICE_OF[backend]
    x = make_x(shape, dtype, dev, seed=3)
    v0 = make_v0(shape[1:], torch.float32, dev)
    w, wv = _weights(shape, dtype, dev)
    safe = safe_neurons(kw, x, v0)
    assert safe.float().mean() > 0.8, "too few neurons away from the boundaries: the test would prove little"
    s, v, gx, gv = _kernel_run(backend, kw, x, v0, w, wv.float())
    assert s.dtype == dtype and v.dtype == torch.float32 and gx.dtype == dtype
    # The oracle: the float64 reference on the same (upcast) input values.
    rs, rv, rgx, rgv = reference_grads(kw, x, v0, w, wv)
    T = shape[0]
    flat = lambda t: t.detach().cpu().double().reshape(T, -1)[:, safe]  # noqa: E731
    assert torch.equal(flat(s), flat(rs))
    torch.testing.assert_close(v.cpu().double().reshape(-1)[safe], rv.reshape(-1)[safe], rtol=1e-5, atol=1e-5)
    # Gradients: at most 2x the error of the reference itself in this dtype (+ float32 rounding).
    xr = x.detach().cpu().requires_grad_(True)
    s_lp, v_lp = reference.lif_multistep(xr, v0.cpu(), **kw)
    loss = (s_lp * w.cpu()).sum() + ((v_lp * wv.float()).sum() if kw["grad"] == "bptt" else 0)
    (rgx_lp,) = torch.autograd.grad(loss, xr)
    own_err = (flat(rgx_lp) - flat(rgx)).abs().max()
    scale = flat(rgx).abs().max()
    err = (flat(gx) - flat(rgx)).abs().max()
    assert err <= 2 * max(own_err, EPS[dtype] * scale) + 1e-6 * scale
    if kw["grad"] == "bptt":
        # with h - theta saved in 16 bits (save 'h16'), dv/dh carries that rounding: the bound of
        # docs/design.md, section 3, over the T steps
        half = config_of(kw).save_kind(True, half=dtype in (torch.float16, torch.bfloat16)) == "h16"
        tol = 8 * T * EPS[dtype] if half else 1e-4
        torch.testing.assert_close(
            gv.cpu().double().reshape(-1)[safe], rgv.reshape(-1)[safe], rtol=tol, atol=tol * float(scale)
        )


def _op_saved(kw, x, v0, save=None, backend="cpu"):
    cfg = config_of(kw)
    save = save or cfg.save_kind(True)
    v = None if v0 is None else v0.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return backend_op(backend, "neuron_multistep_fwd")(x, v, None, *cfg.args(save)), save


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("n", [1, 31, 33, 255, 257, 1000])
@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=ALL_CONFIG_IDS)
def test_saved_state_equals_reference(backend, n, kw):
    """The packed masks (and saved h) equal those computed from the reference, bit for bit."""
    dev = DEVICE_OF[backend]
    x = make_x((4, n), torch.float64, dev, seed=n)
    v0 = make_v0((n,), torch.float64, dev)
    (spikes, v_last, saved), save = _op_saved(kw, x, v0, backend=backend)
    expect = reference.saved_state(config_of(kw), x.cpu(), v0.cpu(), save)
    if save == "h":
        torch.testing.assert_close(saved.cpu(), expect, rtol=1e-13, atol=1e-13)
    else:
        assert saved.dtype == torch.int32 and saved.shape == expect.shape
        assert torch.equal(saved.cpu(), expect)
        # bits past N stay zero
        words = saved.cpu().reshape(-1, saved.shape[-1]).to(torch.int64) & 0xFFFFFFFF
        if n % 32:
            assert (words[:, -1] >> (n % 32)).eq(0).all()


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kw", [k for k in CORE_CONFIGS if config_of(k).save_kind(True) != "h"],
                         ids=[i for k, i in zip(CORE_CONFIGS, CORE_CONFIG_IDS) if config_of(k).save_kind(True) != "h"])
def test_float32_masks_on_safe_neurons(backend, kw):
    dev = DEVICE_OF[backend]
    n = 3 * 97
    x = make_x((7, n), torch.float32, dev, seed=11)
    (spikes, _, saved), save = _op_saved(kw, x, None, backend=backend)
    expect = reference.saved_state(config_of(kw), x.cpu().double(), None, save)
    safe = safe_neurons(kw, x)
    got = unpack_bits(saved.cpu(), n)
    want = unpack_bits(expect, n)
    assert torch.equal(got[..., safe], want[..., safe])


def test_cpu_isa_paths_are_bit_identical():
    """The AVX2+FMA and generic copies of the CPU kernels round identically."""
    if sltt_kernels.available_backends()["cpu"] is not None:
        pytest.skip("compiled extension unavailable")
    try:
        torch.ops.sltt_kernels._cpu_isa("avx2")
    except RuntimeError as e:
        pytest.skip(str(e))
    try:
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            for kw in CORE_CONFIGS:
                x = make_x((5, 2049), dtype, seed=2)
                v0 = make_v0((2049,), torch.float32 if dtype != torch.float64 else torch.float64, requires_grad=False)
                w, wv = _weights((5, 2049), dtype, "cpu")
                wv = wv.to(v0.dtype)
                outs = []
                for isa in ("avx2", "generic"):
                    torch.ops.sltt_kernels._cpu_isa(isa)
                    (_, _, saved), _ = _op_saved(kw, x, v0)
                    outs.append(_kernel_run("cpu", kw, x, v0, w, wv) + (saved,))
                for a, b in zip(*outs):
                    if a is not None:
                        assert torch.equal(a, b), (dtype, kw)
    finally:
        torch.ops.sltt_kernels._cpu_isa("auto")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kw", CORE_CONFIGS, ids=CORE_CONFIG_IDS)
def test_step_equals_multistep(backend, kw):
    """lif_step looped over T gives the multi-step spikes, state and gradients."""
    dev = DEVICE_OF[backend]
    x = make_x((5, 3, 29), torch.float64, dev, requires_grad=True)
    v0 = make_v0((3, 29), torch.float64, dev, requires_grad=True)
    w, _ = _weights((5, 3, 29), torch.float64, dev)
    s_m, v_m = sltt_kernels.lif_multistep(x, v0, backend=backend, **kw)
    g_m = torch.autograd.grad((s_m * w).sum() + v_m.sum() * (kw["grad"] == "bptt"), [x, v0], allow_unused=True)
    v = v0
    steps = []
    for t in range(5):
        s, v = sltt_kernels.lif_step(x[t], v, backend=backend, **kw)
        steps.append(s)
    s_s = torch.stack(steps)
    assert torch.equal(s_s, s_m)
    torch.testing.assert_close(v, v_m, rtol=1e-12, atol=1e-12)
    g_s = torch.autograd.grad((s_s * w).sum() + v.sum() * (kw["grad"] == "bptt"), [x, v0], allow_unused=True)
    torch.testing.assert_close(g_s[0], g_m[0], rtol=1e-12, atol=1e-12)
    if kw["grad"] == "bptt":
        torch.testing.assert_close(g_s[1], g_m[1], rtol=1e-12, atol=1e-12)
    else:
        assert g_s[1] is None and g_m[1] is None
        assert not v.requires_grad and not v_m.requires_grad


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kw", CORE_CONFIGS[:5], ids=CORE_CONFIG_IDS[:5])
def test_non_contiguous_input(backend, kw):
    dev = DEVICE_OF[backend]
    base = make_x((3, 41, 6, 2), torch.float64, dev)
    x = base.permute(0, 2, 1, 3)[:, :, ::2]  # [3, 6, 21, 2], strided
    assert not x.is_contiguous()
    v0 = make_v0((2, 21, 6), torch.float64, dev).permute(2, 1, 0)
    w, wv = _weights(tuple(x.shape), torch.float64, dev)
    s, v, gx, gv = _kernel_run(backend, kw, x, v0, w, wv)
    rs, rv, rgx, rgv = reference_grads(kw, x.contiguous(), v0.contiguous(), w, wv)
    assert torch.equal(s.cpu(), rs)
    torch.testing.assert_close(v.cpu(), rv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx.cpu(), rgx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", [(3, 0), (2, 4, 0, 5)], ids=["T3N0", "T2N0"])
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
def test_empty_input(backend, shape, grad):
    dev = DEVICE_OF[backend]
    x = torch.randn(shape, device=dev, requires_grad=True)
    s, v = sltt_kernels.lif_multistep(x, backend=backend, grad=grad)
    assert s.shape == x.shape and v.shape == x.shape[1:]
    (s.sum() + v.sum() * (grad == "bptt")).backward()
    assert x.grad.shape == x.shape
    s1, v1 = sltt_kernels.lif_step(x[0], backend=backend, grad=grad)
    assert s1.shape == x.shape[1:] and v1.shape == x.shape[1:]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_no_grad_forward_saves_nothing_and_matches(backend):
    dev = DEVICE_OF[backend]
    x = make_x((4, 100), torch.float64, dev)
    kw = neuron_kwargs("hard0", True, False, "sigmoid", "bptt")
    cfg = config_of(kw)
    s0, v0_, saved = backend_op(backend, "neuron_multistep_fwd")(x, None, None, *cfg.args("none"))
    assert saved.numel() == 0
    with torch.no_grad():
        s1, v1 = sltt_kernels.lif_multistep(x, backend=backend, **kw)
    rs, rv = reference.lif_multistep(x.cpu(), **kw)
    assert torch.equal(s0.cpu(), rs) and torch.equal(s1.cpu(), rs)
    torch.testing.assert_close(v1.cpu(), rv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_nan_propagates_like_the_reference(backend):
    """NaN policy: a NaN input never fires, and the neuron's v becomes NaN, as in the reference."""
    dev = DEVICE_OF[backend]
    x = make_x((4, 40), torch.float64, dev)
    x[1, 3] = float("nan")
    x[0, 7] = float("inf")
    s, v = sltt_kernels.lif_multistep(x, backend=backend, v_reset=None)
    rs, rv = reference.lif_multistep(x.cpu(), v_reset=None)
    assert torch.equal(s.cpu(), rs)
    assert torch.equal(v.isnan().cpu(), rv.isnan())
    assert s[1:, 3].eq(0).all() and v[3].isnan()


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_large_odd_n(backend):
    dev = DEVICE_OF[backend]
    kw = neuron_kwargs("soft", False, False, "rect", "sltt")
    n = 300_007
    x = make_x((3, n), torch.float64, dev, seed=9)
    w, wv = _weights((3, n), torch.float64, dev)
    s, v, gx, _ = _kernel_run(backend, kw, x, None, w, wv)
    rs, rv, rgx, _ = reference_grads(kw, x, None, w, wv)
    assert torch.equal(s.cpu(), rs)
    torch.testing.assert_close(gx.cpu(), rgx, rtol=1e-12, atol=1e-12)


@st.composite
def _cases(draw):
    T = draw(st.integers(1, 7))
    dims = draw(st.lists(st.integers(1, 9), min_size=0, max_size=3))
    reset = draw(st.sampled_from(sorted(RESETS)))
    sg = draw(st.sampled_from(sorted(SURROGATES)))
    kw = neuron_kwargs(
        reset,
        draw(st.booleans()),
        draw(st.booleans()),
        sg,
        draw(st.sampled_from(["bptt", "sltt"])),
        tau=draw(st.sampled_from([1.0, 1.5, 2.0, 10.0])),
        v_threshold=draw(st.sampled_from([0.5, 1.0])),
    )
    transpose = draw(st.booleans()) and len(dims) >= 2
    with_v0 = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return T, dims, kw, transpose, with_v0, seed


@pytest.mark.skipif(sltt_kernels.available_backends()["cpu"] is not None, reason="compiled extension unavailable")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_random_shapes_and_configs_cpu(case):
    T, dims, kw, transpose, with_v0, seed = case
    x = make_x((T, *dims), torch.float64, seed=seed)
    if transpose:
        x = x.transpose(1, 2)
    v0 = make_v0(tuple(x.shape[1:]), torch.float64, seed=seed + 1) if with_v0 else None
    w, wv = _weights(tuple(x.shape), torch.float64, "cpu", seed=seed + 2)
    s, v, gx, gv = _kernel_run("cpu", kw, x, v0, w, wv)
    rs, rv, rgx, rgv = reference_grads(kw, x, v0, w, wv)
    assert torch.equal(s, rs)
    torch.testing.assert_close(v, rv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, rgx, rtol=1e-12, atol=1e-12)
    if with_v0 and kw["grad"] == "bptt":
        torch.testing.assert_close(gv, rgv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [(1 << 19) + 5, 1 << 19])
def test_large_inference_output_equals_the_saving_path(cpu_isa, n):
    """A large inference forward (nothing saved; rows not 32-byte aligned when n is odd) gives the
    same spikes and state as the forward that saves, on both instruction-set paths."""
    x = make_x((2, n), torch.float32, seed=9)
    kw = neuron_kwargs("soft", False, False, "rect", "sltt")
    with torch.no_grad():
        s_inf, v_inf = sltt_kernels.lif_multistep(x, backend="cpu", **kw)
    s_grad, v_grad = sltt_kernels.lif_multistep(x.clone().requires_grad_(True), backend="cpu", **kw)
    assert torch.equal(s_inf, s_grad.detach()) and torch.equal(v_inf, v_grad)
