"""The equivalence suite: every kernel backend equals the pure-PyTorch reference, for every
registered neuron model.

Parametrised over model x backend x dtype x shape x configuration. The model rows come from the
registry (sltt_kernels._config.MODELS) and tests/helpers.py's MODEL_ROWS (LIF, the parametric LIF,
IF, snnTorch's Leaky: LIF is one row like the others; a registered model without a row fails).
float64 is compared exactly (spikes and masks bit for bit, state and gradients of x, v0 and the
parametric LIF's w to 1e-12); float32/float16/bfloat16 on the neurons whose trajectory stays away
from the decision boundaries (helpers.safe_neurons), since the float32 reference rounds
differently from the kernels' fused multiply-adds.

The full keyword cross product of each row runs on one shape (and one packing width); its core
subset (every save kind, reset and surrogate of the row) on all of them. Inputs come from the
`seed` fixture: each case has its own, the same on every run.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sltt_kernels
from sltt_kernels import _config, reference

from helpers import (
    DEVICE_OF,
    EPS,
    HAVE_CUDA_GPU,
    KERNEL_BACKENDS,
    MODEL_ROWS,
    MissingRow,
    backend_op,
    kw_id,
    make_v0,
    make_x,
    model_rows,
    row_cases,
    safe_neurons,
    unpack_bits,
)

# float64 state and gradients against the reference (every model: the strictest the old tests used)
TOL = dict(rtol=1e-12, atol=1e-12)

SHAPES = {"T1N1": (1, 1), "T1N33": (1, 33), "T4N33": (4, 33), "T6N222": (6, 2, 3, 37), "T3N1031": (3, 1031)}
# the shape the full keyword cross product runs on (T > 1, a multi-dim state, 222 neurons: a partial
# mask word and a tail in every backend's blocks)
ALL_KW_SHAPES = ("T6N222",)
# neuron counts of the saved-state test: around the 32-bit mask words; the full cross product on
# 257 (several words and a one-bit tail)
SAVED_N = (1, 31, 33, 255, 257, 1000)
ALL_KW_SAVED_N = (257,)
MASK_KINDS = ("sg", "sg_spike", "sg_reset")


def _float64_cases():
    cases = [pytest.param(row, kw, SHAPES[s], id=f"{s}-{row.name}-{kw_id(kw)}")
             for s in ALL_KW_SHAPES for row, kw in (p.values for p in row_cases("all"))]
    cases += [pytest.param(row, kw, SHAPES[s], id=f"{s}-{row.name}-{kw_id(kw)}")
              for s in SHAPES if s not in ALL_KW_SHAPES for row, kw in (p.values for p in row_cases("core"))]
    return cases


def _saved_cases():
    cases = [pytest.param(row, kw, n, id=f"N{n}-{row.name}-{kw_id(kw)}")
             for n in ALL_KW_SAVED_N for row, kw in (p.values for p in row_cases("all"))]
    cases += [pytest.param(row, kw, n, id=f"N{n}-{row.name}-{kw_id(kw)}")
              for n in SAVED_N if n not in ALL_KW_SAVED_N for row, kw in (p.values for p in row_cases("core"))]
    return cases


def _weights(shape, dtype, device, seed):
    """Loss weights: [T, ...] on the spikes (in x's dtype), [...] float64 on the last state."""
    g = torch.Generator().manual_seed(seed)
    ws = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)
    wv = torch.randn(shape[1:], generator=g, dtype=torch.float64).to(device)
    return ws, wv


def _run(fn, kw, x, v0, ws, wv, w=None, **extra):
    """Forward through `fn` and a backward of (spikes * ws).sum() (+ (v_last * wv).sum() for
    BPTT): (spikes, v_last, grad x, grad v0, grad w); a gradient is None where none flows."""
    xk = x.detach().clone().requires_grad_(True)
    vk = None if v0 is None else v0.detach().clone().requires_grad_(True)
    inputs = [xk] + ([vk] if vk is not None else [])
    wkw = {}
    if w is not None:
        wkw["w"] = w.detach().clone().requires_grad_(True)
        inputs.append(wkw["w"])
    s, v = fn(xk, vk, **kw, **wkw, **extra)
    loss = (s * ws).sum()
    if kw["grad"] == "bptt":
        loss = loss + (v * wv).sum()
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    gv = grads[1] if vk is not None else None
    gw = grads[-1] if w is not None else None
    return s.detach(), v.detach(), grads[0], gv, gw


def _kernel(row, kw, x, v0, ws, wv, backend):
    """_run on the kernels of `backend`; w (the parametric LIF's) in the state dtype of x."""
    w = row.w(_config.state_dtype(x.dtype), x.device).get("w")
    return _run(row.functions()[0], kw, x, v0, ws, wv, w, backend=backend)


def _oracle(row, kw, x, v0, ws, wv, w_dtype=torch.float64):
    """_run on the float64 reference, on CPU, from the same (upcast) input values; w_dtype: the
    dtype whose w (the parametric LIF's) the kernel was given."""
    w = row.w(w_dtype).get("w")
    return _run(row.functions(on_reference=True)[0], kw, x.detach().double().cpu(),
                None if v0 is None else v0.detach().double().cpu(), ws.double().cpu(), wv.double().cpu(),
                None if w is None else w.double())


def _k(row, dtype, device="cpu"):
    """The raw ops' k = 1/tau = sigmoid(w) of the parametric LIF's w (as the public path makes it), or None."""
    w = row.w(dtype, device).get("w")
    return None if w is None else torch.sigmoid(w)


def _assert_float64_equal(got, want, kw, row):
    s, v, gx, gv, gw = got
    rs, rv, rgx, rgv, rgw = want
    assert s.dtype == torch.float64 and v.dtype == torch.float64
    assert torch.equal(s.cpu(), rs)
    torch.testing.assert_close(v.cpu(), rv, **TOL)
    torch.testing.assert_close(gx.cpu(), rgx, **TOL)
    if kw["grad"] == "sltt":
        assert gv is None, "SLTT: the initial state gets no gradient"
    elif gv is not None or rgv is not None:  # BPTT with a given v0 (the reference's None: zeros)
        torch.testing.assert_close(gv.cpu(), torch.zeros_like(rv) if rgv is None else rgv, **TOL)
    if row.learnable_w:
        torch.testing.assert_close(gw.cpu(), rgw, **TOL)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row, kw, shape", _float64_cases())
def test_float64_equals_reference(backend, row, kw, shape, seed):
    dev = DEVICE_OF[backend]
    x = make_x(shape, torch.float64, dev, seed=seed)
    v0 = make_v0(shape[1:], torch.float64, dev, seed=seed + 1)
    ws, wv = _weights(shape, torch.float64, dev, seed + 2)
    got = _kernel(row, kw, x, v0, ws, wv, backend)
    _assert_float64_equal(got, _oracle(row, kw, x, v0, ws, wv), kw, row)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(1, 33), (5, 3, 67), (8, 1031)], ids=["T1N33", "T5N201", "T8N1031"])
@pytest.mark.parametrize("row, kw", row_cases("core"))
def test_low_precision_equals_reference(backend, dtype, shape, row, kw, seed):
    dev = DEVICE_OF[backend]
    cfg = row.args(kw)
    x = make_x(shape, dtype, dev, seed=seed)
    v0 = make_v0(shape[1:], torch.float32, dev, seed=seed + 1)
    ws, wv = _weights(shape, dtype, dev, seed + 2)
    safe = safe_neurons(cfg, x, v0, k=_k(row, torch.float32))
    assert safe.float().mean() > 0.8, "too few neurons away from the boundaries: the test would prove little"
    s, v, gx, gv, _ = _kernel(row, kw, x, v0, ws, wv.float(), backend)
    assert s.dtype == dtype and v.dtype == torch.float32 and gx.dtype == dtype
    # The oracle: the float64 reference on the same (upcast) input values.
    rs, rv, rgx, rgv, _ = _oracle(row, kw, x, v0, ws, wv, w_dtype=torch.float32)
    T = shape[0]
    flat = lambda t: t.detach().cpu().double().reshape(T, -1)[:, safe]  # noqa: E731
    assert torch.equal(flat(s), flat(rs))
    assert (s.cpu().double() == rs).double().mean() > 0.97  # and nearly every spike elsewhere
    torch.testing.assert_close(v.cpu().double().reshape(-1)[safe], rv.reshape(-1)[safe], rtol=1e-5, atol=1e-5)
    # Gradients: at most 2x the error of the reference itself in this dtype (+ float32 rounding).
    _, _, rgx_lp, _, _ = _run(row.functions(on_reference=True)[0], kw, x.cpu(), v0.cpu(), ws.cpu(),
                              wv.float().cpu(), row.w(torch.float32).get("w"))
    own_err = (flat(rgx_lp) - flat(rgx)).abs().max()
    scale = flat(rgx).abs().max()
    err = (flat(gx) - flat(rgx)).abs().max()
    assert err <= 2 * max(own_err, EPS[dtype] * scale) + 1e-6 * scale
    if kw["grad"] == "bptt":
        # with h - theta saved in 16 bits (save 'h16'), dv/dh carries that rounding: the bound of
        # docs/design.md, section 3, over the T steps
        half = cfg.save_kind(True, learn_k=row.learnable_w, half=dtype in _config.HALF_DTYPES) == "h16"
        tol = 8 * T * EPS[dtype] if half else 1e-4
        torch.testing.assert_close(
            gv.cpu().double().reshape(-1)[safe], rgv.reshape(-1)[safe], rtol=tol, atol=tol * float(scale)
        )


def _op_saved(row, kw, x, v0, save, backend="cpu"):
    """The raw multi-step forward with save kind `save`: (spikes, v_last, saved)."""
    cfg = row.args(kw)
    v = None if v0 is None else v0.to(_config.state_dtype(x.dtype))
    return backend_op(backend, "neuron_multistep_fwd")(x, v, _k(row, _config.state_dtype(x.dtype), x.device),
                                                       *cfg.args(save))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row, kw, n", _saved_cases())
def test_saved_state_equals_reference(backend, row, kw, n, seed):
    """For every save kind the row's public functions produce, the saved state equals the one
    computed from the reference: packed masks bit for bit, h (h_v0: the initial state, then h) to
    1e-13."""
    dev = DEVICE_OF[backend]
    x = make_x((4, n), torch.float64, dev, seed=seed)
    v0 = make_v0((n,), torch.float64, dev, seed=seed + 1)
    for save in row.save_kinds(kw):
        _, _, saved = _op_saved(row, kw, x, v0, save, backend)
        expect = reference.saved_state(row.args(kw), x.cpu(), v0.cpu(), save, k=_k(row, torch.float64))
        if save in ("h", "h_v0"):
            assert saved.dtype == torch.float64 and saved.shape == expect.shape, save
            torch.testing.assert_close(saved.cpu(), expect, rtol=1e-13, atol=1e-13)
        else:
            assert saved.dtype == torch.int32 and saved.shape == expect.shape, save
            assert torch.equal(saved.cpu(), expect), save
            # bits past N stay zero
            words = saved.cpu().reshape(-1, saved.shape[-1]).to(torch.int64) & 0xFFFFFFFF
            if n % 32:
                assert (words[:, -1] >> (n % 32)).eq(0).all(), save


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row, kw", row_cases("core", where=lambda row, kw: set(row.save_kinds(kw)) & set(MASK_KINDS)))
def test_float32_masks_on_safe_neurons(backend, row, kw, seed):
    dev = DEVICE_OF[backend]
    n = 3 * 97
    x = make_x((7, n), torch.float32, dev, seed=seed)
    cfg = row.args(kw)
    safe = safe_neurons(cfg, x, k=_k(row, torch.float64))
    for save in set(row.save_kinds(kw)) & set(MASK_KINDS):
        _, _, saved = _op_saved(row, kw, x, None, save, backend)
        expect = reference.saved_state(cfg, x.cpu().double(), None, save, k=_k(row, torch.float64))
        got, want = unpack_bits(saved.cpu(), n), unpack_bits(expect, n)
        assert torch.equal(got[..., safe], want[..., safe]), save


def test_cpu_isa_paths_are_bit_identical(seed):
    """The AVX2+FMA and generic copies of the CPU kernels round identically, for every model."""
    if sltt_kernels.available_backends()["cpu"] is not None:
        pytest.skip("compiled extension unavailable")
    try:
        torch.ops.sltt_kernels._cpu_isa("avx2")
    except RuntimeError as e:
        pytest.skip(str(e))
    try:
        for row in model_rows():
            for dtype in (torch.float32, torch.float64, torch.bfloat16):
                sdt = _config.state_dtype(dtype)
                for kw in row.core_kw:
                    x = make_x((5, 2049), dtype, seed=seed)
                    v0 = make_v0((2049,), sdt, seed=seed + 1)
                    ws, wv = _weights((5, 2049), dtype, "cpu", seed + 2)
                    outs = []
                    for isa in ("avx2", "generic"):
                        torch.ops.sltt_kernels._cpu_isa(isa)
                        saved = [_op_saved(row, kw, x, v0, save)[2]
                                 for save in row.save_kinds(kw, half=dtype in _config.HALF_DTYPES)]
                        outs.append(_kernel(row, kw, x, v0, ws, wv.to(sdt), "cpu") + tuple(saved))
                    for a, b in zip(*outs):
                        if a is not None:
                            assert torch.equal(a, b), (row.name, dtype, kw)
    finally:
        torch.ops.sltt_kernels._cpu_isa("auto")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row, kw", row_cases("core"))
def test_step_equals_multistep(backend, row, kw, seed):
    """The step function looped over T gives the multi-step spikes, state and gradients (x, v0,
    w), from a given initial state and from the default one."""
    dev = DEVICE_OF[backend]
    multistep, step = row.functions()
    x = make_x((5, 3, 29), torch.float64, dev, seed=seed, requires_grad=True)
    v0 = make_v0((3, 29), torch.float64, dev, seed=seed + 1, requires_grad=True)
    ws, _ = _weights((5, 3, 29), torch.float64, dev, seed + 2)
    wkw = row.w(torch.float64, dev, requires_grad=True)
    bptt = kw["grad"] == "bptt"
    for start in (v0, None):
        inputs = [x] + ([start] if start is not None else []) + list(wkw.values())
        s_m, v_m = multistep(x, start, **kw, **wkw, backend=backend)
        g_m = torch.autograd.grad((s_m * ws).sum() + v_m.sum() * bptt, inputs, allow_unused=True)
        v = start
        steps = []
        for t in range(5):
            s, v = step(x[t], v, **kw, **wkw, backend=backend)
            steps.append(s)
        s_s = torch.stack(steps)
        assert torch.equal(s_s, s_m)
        torch.testing.assert_close(v, v_m, **TOL)
        g_s = torch.autograd.grad((s_s * ws).sum() + v.sum() * bptt, inputs, allow_unused=True)
        torch.testing.assert_close(g_s[0], g_m[0], **TOL)
        if row.learnable_w:
            torch.testing.assert_close(g_s[-1], g_m[-1], **TOL)
        if start is not None:
            if bptt:
                torch.testing.assert_close(g_s[1], g_m[1], **TOL)
            else:
                assert g_s[1] is None and g_m[1] is None
                assert not v.requires_grad and not v_m.requires_grad


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row, kw", row_cases("core", where=lambda row, kw: row.core_kw.index(kw) < 5))
def test_non_contiguous_input(backend, row, kw, seed):
    dev = DEVICE_OF[backend]
    base = make_x((3, 41, 6, 2), torch.float64, dev, seed=seed)
    x = base.permute(0, 2, 1, 3)[:, :, ::2]  # [3, 6, 21, 2], strided
    assert not x.is_contiguous()
    v0 = make_v0((2, 21, 6), torch.float64, dev, seed=seed + 1).permute(2, 1, 0)
    assert not v0.is_contiguous()
    ws, wv = _weights(tuple(x.shape), torch.float64, dev, seed + 2)
    got = _kernel(row, kw, x, v0, ws, wv, backend)
    _assert_float64_equal(got, _oracle(row, kw, x.contiguous(), v0.contiguous(), ws, wv), kw, row)
    # a transposed x from the default initial state
    xt = make_x((3, 40, 6), torch.float64, dev, seed=seed + 3).transpose(1, 2)
    s, v = row.functions()[0](xt, **kw, **row.w(torch.float64, dev), backend=backend)
    rs, rv = row.functions(on_reference=True)[0](xt.cpu(), **kw, **row.w(torch.float64))
    assert torch.equal(s.cpu(), rs)
    torch.testing.assert_close(v.cpu(), rv, **TOL)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", [(3, 0), (2, 4, 0, 5), (4, 0, 3)], ids=["T3N0", "T2N0", "T4N0"])
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
def test_empty_input(backend, shape, grad, row):
    dev = DEVICE_OF[backend]
    multistep, step = row.functions()
    kw = dict(row.core_kw[0], grad=grad)
    wkw = row.w(torch.float32, dev, requires_grad=True)
    x = torch.randn(shape, device=dev, requires_grad=True)
    s, v = multistep(x, **kw, **wkw, backend=backend)
    assert s.shape == x.shape and v.shape == x.shape[1:]
    (s.sum() + v.sum() * (grad == "bptt")).backward()
    assert x.grad.shape == x.shape
    if row.learnable_w:
        assert wkw["w"].grad is not None and not wkw["w"].grad.any()
    s1, v1 = step(x[0], **kw, **wkw, backend=backend)
    assert s1.shape == x.shape[1:] and v1.shape == x.shape[1:]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
def test_no_grad_forward_saves_nothing_and_matches(backend, row, seed):
    dev = DEVICE_OF[backend]
    x = make_x((4, 100), torch.float64, dev, seed=seed)
    for kw in row.core_kw:
        s0, _, saved = _op_saved(row, kw, x, None, "none", backend)
        assert saved.numel() == 0
        with torch.no_grad():
            s1, v1 = row.functions()[0](x, **kw, **row.w(torch.float64, dev), backend=backend)
        rs, rv = row.functions(on_reference=True)[0](x.cpu(), **kw, **row.w(torch.float64))
        assert torch.equal(s0.cpu(), rs) and torch.equal(s1.cpu(), rs), kw
        torch.testing.assert_close(v1.cpu(), rv, **TOL)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
def test_nan_propagates_like_the_reference(backend, row, seed):
    """NaN policy: a NaN input never fires, and the neuron's v becomes NaN, as in the reference."""
    dev = DEVICE_OF[backend]
    x = make_x((4, 40), torch.float64, dev, seed=seed)
    x[1, 3] = float("nan")
    x[0, 7] = float("inf")
    for kw in row.core_kw:
        s, v = row.functions()[0](x, **kw, **row.w(torch.float64, dev), backend=backend)
        rs, rv = row.functions(on_reference=True)[0](x.cpu(), **kw, **row.w(torch.float64))
        assert torch.equal(s.cpu(), rs), kw
        assert torch.equal(v.isnan().cpu(), rv.isnan()), kw
        assert s[1:, 3].eq(0).all() and v[3].isnan(), kw


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
def test_large_odd_n(backend, row, seed):
    """Many blocks and an odd tail. Triton's interpreter (no GPU) takes 15-25 s per row here and
    emulates every model's launch geometry alike, so there it runs the first row only."""
    if backend == "triton" and not HAVE_CUDA_GPU and row is not model_rows()[0]:
        pytest.skip("Triton interpreter: the launch geometry is checked on the first row")
    dev = DEVICE_OF[backend]
    kw = row.core_kw[0]  # LIF: the paper's neuron
    n = 300_007
    x = make_x((3, n), torch.float64, dev, seed=seed)
    ws, wv = _weights((3, n), torch.float64, dev, seed + 2)
    s, v, gx, _, _ = _kernel(row, kw, x, None, ws, wv, backend)
    rs, rv, rgx, _, _ = _oracle(row, kw, x, None, ws, wv)
    assert torch.equal(s.cpu(), rs)
    torch.testing.assert_close(gx.cpu(), rgx, **TOL)


@st.composite
def _cases(draw, row):
    T = draw(st.integers(1, 7))
    dims = draw(st.lists(st.integers(1, 9), min_size=0, max_size=3))
    kw = dict(draw(st.sampled_from(row.all_kw)))
    for name, values in row.vary.items():
        kw[name] = draw(st.sampled_from(values))
    transpose = draw(st.booleans()) and len(dims) >= 2
    with_v0 = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return T, dims, kw, transpose, with_v0, seed


def _random_case_test(row):
    @pytest.mark.skipif(sltt_kernels.available_backends()["cpu"] is not None, reason="compiled extension unavailable")
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_cases(row))
    def test(case):
        T, dims, kw, transpose, with_v0, seed = case
        x = make_x((T, *dims), torch.float64, seed=seed)
        if transpose:
            x = x.transpose(1, 2)
        v0 = make_v0(tuple(x.shape[1:]), torch.float64, seed=seed + 1) if with_v0 else None
        ws, wv = _weights(tuple(x.shape), torch.float64, "cpu", seed + 2)
        got = _kernel(row, kw, x, v0, ws, wv, "cpu")
        _assert_float64_equal(got, _oracle(row, kw, x, v0, ws, wv), kw, row)

    return test


# one property test per row (hypothesis draws its keywords from the row's cross product)
for _row in model_rows():
    if not isinstance(_row, MissingRow):
        globals()[f"test_random_shapes_and_configs_cpu_{_row.name}"] = _random_case_test(_row)


@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
@pytest.mark.parametrize("n", [(1 << 19) + 5, 1 << 19])
def test_large_inference_output_equals_the_saving_path(cpu_isa, n, row, seed):
    """A large inference forward (nothing saved; rows not 32-byte aligned when n is odd) gives the
    same spikes and state as the forward that saves, on both instruction-set paths."""
    x = make_x((2, n), torch.float32, seed=seed)
    kw = row.core_kw[0]  # LIF: the paper's neuron
    fn, wkw = row.functions()[0], row.w(torch.float32)
    with torch.no_grad():
        s_inf, v_inf = fn(x, **kw, **wkw, backend="cpu")
    s_grad, v_grad = fn(x.clone().requires_grad_(True), **kw, **wkw, backend="cpu")
    assert torch.equal(s_inf, s_grad.detach()) and torch.equal(v_inf, v_grad)


# The CPU forward without saved state (inference) runs chunks of a cache line of neurons with the
# state in registers (the AVX2 copy), the forward that saves runs blocks with the state in an
# array; both must give the same bits, and the reference's values, for every model, reset, dtype
# and size (whole chunks, a tail, fewer neurons than a chunk, T = 1, a strided input), with
# non-finite inputs. Parameters of -0.0 are 0.0 to the validator; the raw ops below take them.
INFER_EXTRA = {
    "lif": [dict(tau=2.0, v_reset=None, decay_input=False, surrogate="rect"),
            dict(tau=3.0, v_reset=-0.3, decay_input=True, surrogate="sigmoid"),
            dict(tau=2.0, v_reset=-0.0, decay_input=False, surrogate="rect")],
    "if": [dict(v_reset=-0.0, surrogate="rect")],
    "leaky": [dict(beta=-0.0, threshold=1.0, reset_mechanism="none", surrogate="rect")],
}
INFER_SHAPES = [(1, 1), (1, 16), (3, 15), (4, 17), (2, 3, 37), (6, 1031), (5, 64)]


def _infer_cases():
    """Each row's extra cases, then its BPTT keyword sets with a rect or sigmoid surrogate that
    keep the reset's gradient (for LIF: its core set; for the others: their cross product)."""
    def wanted(row, kw):
        cfg = row.args(kw)
        return cfg.grad == "bptt" and cfg.surrogate in ("rect", "sigmoid") and kw.get("detach_reset") is not True

    cases = []
    for row in model_rows():
        if isinstance(row, MissingRow):
            cases.append(pytest.param(row, {}, id=row.name))
            continue
        kws = INFER_EXTRA.get(row.name, []) + [kw for kw in (row.core_kw if row.name == "lif" else row.all_kw)
                                               if wanted(row, kw)]
        cases += [pytest.param(row, kw, id=f"{row.name}-{kw_id(kw)}") for kw in kws]
    return cases


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns: torch.equal calls -0.0 and 0.0 equal and NaN unequal to itself."""
    return t.contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


@pytest.mark.parametrize("shape", INFER_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("row, kw", _infer_cases())
def test_cpu_inference_forward_equals_the_saving_forward(cpu_isa, row, kw, dtype, shape, seed):
    fn, ref = row.functions()[0], row.functions(on_reference=True)[0]
    sdt = _config.state_dtype(dtype)
    wkw = row.w(sdt)
    x = make_x(shape, torch.float64, seed=seed).to(dtype)
    if x.numel() > 40:  # one NaN and one infinity (the NaN never fires; the state becomes NaN)
        x.view(-1)[17] = float("nan")
        x.view(-1)[-3] = float("-inf")
    x_strided = make_x(shape[:1] + shape[1:][::-1], torch.float64, seed=seed + 1).to(dtype).transpose(1, -1)
    for v0 in (None, make_v0(shape[1:], sdt, seed=seed + 2)):
        for xi in (x, x_strided):
            with torch.no_grad():
                s_inf, v_inf = fn(xi, v0, **kw, **wkw, backend="cpu")
            s_sav, v_sav = fn(xi.clone().requires_grad_(True), v0, **kw, **wkw, backend="cpu")
            assert torch.equal(_bits(s_inf), _bits(s_sav.detach())), (v0 is None, xi.stride())
            assert torch.equal(_bits(v_inf), _bits(v_sav.detach())), (v0 is None, xi.stride())
            if dtype == torch.float64:
                rs, rv = ref(xi, v0, **kw, **wkw)
                assert torch.equal(s_inf, rs)
                torch.testing.assert_close(v_inf, rv, rtol=1e-12, atol=1e-12, equal_nan=True)
                zeros = rv == 0
                assert torch.equal(torch.signbit(v_inf[zeros]), torch.signbit(rv[zeros]))


def _hard_zero_reset_cases():
    """Per row of a model that resets at the step that fires (its state can be v_reset itself):
    its first keyword set with a hard reset to 0.0, rect, BPTT, no detach, no input decay."""
    cases = []
    for row in model_rows():
        if isinstance(row, MissingRow):
            cases.append(pytest.param(None, id=row.name, marks=pytest.mark.skip(reason="no row")))
            continue
        if _config.MODELS[row.model].reset_later or row.learnable_w:
            continue
        cfg = next(c for c in map(row.args, row.all_kw)
                   if (c.reset, c.v_reset, c.surrogate, c.surrogate_alpha, c.grad, c.detach_reset, c.decay_input)
                   == ("hard", 0.0, "rect", 1.0, "bptt", False, False))
        cases.append(pytest.param(cfg, id=f"{row.name}-hard"))
    return cases


@pytest.mark.parametrize("n", [16, 17, 1031])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("cfg", _hard_zero_reset_cases())
def test_raw_inference_keeps_a_negative_zero_reset(cpu_isa, cfg, dtype, n, seed):
    """A raw op may pass v_reset = -0.0 (the validator makes it 0.0): the inference forward keeps
    its sign in the state, as the forward that saves does."""
    x = make_x((3, n), torch.float64, seed=seed).to(dtype)
    x[-1, ::2] = 50.0  # half the neurons fire at the last step: their v_last is v_reset itself
    args = cfg.args("none")._replace(v_reset=-0.0)
    fwd = backend_op("cpu", "neuron_multistep_fwd")
    _, v_none, _ = fwd(x, None, None, *args)
    _, v_saved, _ = fwd(x, None, None, *args._replace(save="h"))
    assert torch.equal(_bits(v_none), _bits(v_saved))
    assert torch.signbit(v_none[::2]).all() and not v_none[::2].any()  # -0.0, sign kept


# ---------------------------------------------------------------------------------------------
# The ops of every model: opcheck (schema, fake kernel, autograd registration) and torch.compile


def _opcheck_cases():
    """Per row, one core keyword set for each save kind it produces (for the parametric LIF, with
    w learnable: h_v0), and the parametric LIF with a triangle surrogate and a hard reset to 0."""
    cases = []
    for row in model_rows():
        if isinstance(row, MissingRow):
            cases.append(pytest.param(row, {}, id=row.name))
            continue
        seen = set()
        for kw in row.core_kw:
            kind = row.save_kinds(kw)[-1]
            if kind not in seen:
                seen.add(kind)
                cases.append(pytest.param(row, kw, id=f"{row.name}-{kind}"))
    plif = MODEL_ROWS.get("plif")
    if plif is not None:
        cases.append(pytest.param(plif, dict(v_reset=0.0, decay_input=True, detach_reset=False, surrogate="triangle",
                                             grad="bptt"), id="plif-triangle-hard0"))
    return cases


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row, kw", _opcheck_cases())
def test_opcheck(backend, row, kw, seed):
    dev = DEVICE_OF[backend]
    cfg = row.args(kw)
    k = _k(row, torch.float32, dev)
    if k is not None:
        k = k.detach().reshape(1).requires_grad_(True)
    save = cfg.save_kind(True, learn_k=k is not None)
    x = make_x((4, 3, 37), torch.float32, dev, seed=seed, requires_grad=True)
    v0 = make_v0((3, 37), torch.float32, dev, seed=seed + 1, requires_grad=True)
    fwd, bwd = backend_op(backend, "neuron_multistep_fwd"), backend_op(backend, "neuron_multistep_bwd")
    torch.library.opcheck(fwd.default, (x, v0, k, *cfg.args(save)))
    _, _, saved = fwd(x.detach(), v0.detach(), None if k is None else k.detach(), *cfg.args(save))
    g = torch.Generator().manual_seed(seed + 2)
    gs = torch.randn(4, 3, 37, generator=g).to(dev)
    gv = torch.randn(3, 37, generator=g).to(dev)
    torch.library.opcheck(bwd.default, (gs, gv, saved, None if k is None else k.detach(), *cfg.args(save)))
    step_fwd = backend_op(backend, "neuron_step_fwd")
    torch.library.opcheck(step_fwd.default, (x[0].detach().requires_grad_(True), v0, k, *cfg.args(save)))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
def test_torch_compile_fullgraph(backend, row, seed):
    """The multi-step function under torch.compile(fullgraph=True) gives eager's spikes, state and
    gradients (of a layer before it and of the parametric LIF's w)."""
    kw = next(k for k in row.core_kw if k["grad"] == "bptt")
    fn = row.functions()[0]
    dev = DEVICE_OF[backend]
    torch._dynamo.reset()
    lin = torch.nn.Linear(12, 12).to(dev)
    wp = torch.nn.Parameter(torch.tensor(0.2, device=dev))

    def f(x):
        extra = {"w": wp} if row.learnable_w else {}
        s, v = fn(lin(x), **kw, **extra, backend=backend)
        return s.mean(0), v

    x = make_x((5, 3, 12), torch.float32, dev, seed=seed)
    outs = []
    for g in (f, torch.compile(f, fullgraph=True)):
        lin.zero_grad()
        wp.grad = None
        s, v = g(x)
        (s.sum() + v.sum()).backward()
        outs.append((s.detach(), v.detach(), lin.weight.grad.clone(),
                     wp.grad.clone() if row.learnable_w else torch.zeros(())))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
