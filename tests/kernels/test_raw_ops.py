"""The raw ops, called as a hostile user would: every call either raises a clear error or returns
what the reference returns. Parametrised over the native (cpu) and Triton ops."""

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from sltt_kernels import reference
from sltt_kernels._config import NeuronArgs, check_args

from helpers import DEVICE_OF, KERNEL_BACKENDS, backend_op, make_v0, make_x

LIF = NeuronArgs("lif", 0.5, 0.5, True, 1.0, "hard", 0.0, False, "sigmoid", 4.0, "h", "bptt")
SOFT_RECT = LIF._replace(reset="soft", surrogate="rect", surrogate_alpha=1.0, save="sg")
# What a clear error is: our validator's (TypeError / ValueError), or torch's for an argument of
# the wrong Python type (RuntimeError naming the op's argument).
CLEAR = (TypeError, ValueError, RuntimeError)


def _ops(backend):
    return {name: backend_op(backend, name) for name in
            ("neuron_multistep_fwd", "neuron_multistep_bwd", "neuron_step_fwd", "neuron_step_bwd")}


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_mixed_devices_are_rejected_not_garbage(backend):
    """A meta tensor next to a real one used to run the fake kernel and return uninitialised
    memory; every op must say which argument is on which device."""
    ops, dev = _ops(backend), DEVICE_OF[backend]
    x = make_x((3, 40), device=dev)
    with pytest.raises(ValueError, match="v0 is on meta"):
        ops["neuron_multistep_fwd"](x, torch.zeros(40, device="meta"), None, *LIF)
    with pytest.raises(ValueError, match="v is on meta"):
        ops["neuron_step_fwd"](x[0], torch.zeros(40, device="meta"), None, *LIF)
    with pytest.raises(ValueError, match="k is on meta"):
        ops["neuron_multistep_fwd"](x, None, torch.zeros((), device="meta"), *LIF._replace(save="h_v0"))
    _, _, saved = ops["neuron_multistep_fwd"](x, None, None, *LIF)
    with pytest.raises(ValueError, match="saved is on meta"):
        ops["neuron_multistep_bwd"](torch.ones_like(x), None, saved.to("meta"), None, *LIF)
    with pytest.raises(ValueError, match="grad_v_last is on meta"):
        ops["neuron_multistep_bwd"](torch.ones_like(x), torch.zeros(40, device="meta"), saved, None, *LIF)
    _, _, saved1 = ops["neuron_step_fwd"](x[0], torch.zeros(40, device=dev), None, *LIF)
    with pytest.raises(ValueError, match="saved is on meta"):
        ops["neuron_step_bwd"](torch.ones_like(x[0]), None, saved1.to("meta"), None, *LIF)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("args", [LIF, SOFT_RECT], ids=["h", "sg"])
def test_backward_rejects_a_saved_tensor_that_is_not_the_forwards(backend, args):
    ops, dev = _ops(backend), DEVICE_OF[backend]
    x = make_x((4, 64), device=dev)
    gs = torch.ones_like(x)
    _, _, saved = ops["neuron_multistep_fwd"](x, None, None, *args)
    bwd = ops["neuron_multistep_bwd"]
    with pytest.raises(ValueError, match="contiguous"):
        bwd(gs, None, saved.t().contiguous().t(), None, *args)  # strided
    with pytest.raises(ValueError, match="contiguous"):
        bwd(gs, None, saved[:1].expand(saved.shape), None, *args)  # expanded: would read past the buffer
    with pytest.raises(ValueError, match=f"save='{args.save}'"):
        bwd(gs[:, :31], None, saved, None, *args)  # a gradient of another width
    with pytest.raises(TypeError, match="saved must be"):
        bwd(gs, None, saved.to(torch.float64 if args.save == "sg" else torch.int32), None, *args)
    with pytest.raises(ValueError, match="saved nothing"):
        bwd(gs, None, torch.empty(0, dtype=torch.int32, device=dev), None, *args._replace(save="none"))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
def test_state_gradients_of_the_wrong_shape_are_rejected(backend, grad):
    ops, dev = _ops(backend), DEVICE_OF[backend]
    args = LIF._replace(grad=grad)
    x = make_x((4, 8), device=dev)
    _, _, saved = ops["neuron_step_fwd"](x, torch.zeros(4, 8, device=dev), None, *args)
    with pytest.raises(ValueError, match="grad_v_new must have shape"):
        ops["neuron_step_bwd"](torch.ones(4, 8, device=dev), torch.zeros(8, 4, device=dev), saved, None, *args)
    xs = make_x((3, 4, 8), device=dev)
    _, _, saved = ops["neuron_multistep_fwd"](xs, None, None, *args)
    with pytest.raises(ValueError, match="grad_v_last must have shape"):  # SLTT too: a wrong tensor is a mistake
        ops["neuron_multistep_bwd"](torch.ones_like(xs), torch.zeros(5, device=dev), saved, None, *args)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_unknown_names_and_configurations_without_a_kernel(backend):
    ops, dev = _ops(backend), DEVICE_OF[backend]
    x = make_x((3, 40), device=dev)
    fwd, bwd = ops["neuron_multistep_fwd"], ops["neuron_multistep_bwd"]
    for field, bad in [("neuron", "hodgkin"), ("reset", "sideways"), ("surrogate", "gauss"), ("save", "all"),
                       ("grad", "tbptt")]:
        with pytest.raises(ValueError, match=field):
            fwd(x, None, None, *LIF._replace(**{field: bad}))
    with pytest.raises(ValueError, match="sg_reset|kernel"):  # a two-plane leaky mask for a LIF neuron
        fwd(x, None, None, *LIF._replace(save="sg_reset"))
    _, _, saved = fwd(x, None, None, *SOFT_RECT)
    with pytest.raises(ValueError, match="kernel|save="):  # a bit mask cannot serve the sigmoid surrogate
        bwd(torch.ones_like(x), None, saved, None, *SOFT_RECT._replace(surrogate="sigmoid"))
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16"):
        fwd(x.to(torch.int32), None, None, *LIF)
    with pytest.raises(TypeError, match="v0 must be"):
        fwd(x, torch.zeros(40, dtype=torch.float64, device=dev), None, *LIF)
    with pytest.raises(ValueError, match="k must have one element"):
        fwd(x, None, torch.zeros(2, device=dev), *LIF._replace(save="h_v0"))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("neuron", ["if"])
def test_a_learnable_k_is_refused_for_models_without_a_time_constant(backend, neuron):
    """k is the model's time constant (LIF: 1/tau; leaky: beta, docs/design.md, section 2.6); the
    IF model has none. (Before k was beta, the native ops accepted it for the leaky model and
    decayed by 1 - k where the reference decays by beta: found by the property test below.)"""
    ops, dev = _ops(backend), DEVICE_OF[backend]
    args = NeuronArgs(neuron, 1.0 if neuron == "if" else 0.5, 1.0, False, 1.0, "soft", 0.0, neuron == "leaky",
                      "rect", 1.0, "none", "bptt")
    x = make_x((3, 5), torch.float64, dev)
    k = torch.tensor(0.4, dtype=torch.float64, device=dev)
    ops["neuron_multistep_fwd"](x, None, None, *args)  # accepted without k
    with pytest.raises(ValueError, match=f"k .*not supported by neuron='{neuron}'"):
        ops["neuron_multistep_fwd"](x, None, k, *args)
    with pytest.raises(ValueError, match=f"k .*not supported by neuron='{neuron}'"):
        ops["neuron_step_fwd"](x[0], torch.zeros_like(x[0]), k, *args)
    saving = args._replace(save="h")
    _, _, saved = ops["neuron_multistep_fwd"](x, None, None, *saving)
    with pytest.raises(ValueError, match=f"k .*not supported by neuron='{neuron}'"):
        ops["neuron_multistep_bwd"](torch.ones_like(x), None, saved, k, *saving)


def _reference_fwd(x, v0, k, args: NeuronArgs, multistep: bool):
    """What the forward op must return, from the reference, for any arguments it accepts."""
    cfg = args  # the reference ignores the save kind
    xs = x if multistep else x.reshape(1, -1)
    v = v0 if (v0 is None or multistep) else v0.reshape(-1)
    with torch.no_grad():
        s, _, vs = reference.multistep_states(cfg, xs, v, k)
        saved = reference.saved_state(cfg, xs, v, args.save, k) if args.save != "none" else None
    return s.reshape(x.shape), vs[-1].reshape(x.shape[1:] if multistep else x.shape), saved


_NUMBERS = st.sampled_from([0.0, 0.5, 1.0, 0.9, -1.0, 2.5, 1e-3])


@st.composite
def _raw_calls(draw):
    neuron = draw(st.sampled_from(["lif", "if", "leaky", "lif", "bogus"]))
    reset = draw(st.sampled_from(["soft", "hard", "none"]))
    surrogate = draw(st.sampled_from(["rect", "triangle", "sigmoid", "atan", "erf"]))
    save = draw(st.sampled_from(["none", "sg", "sg_spike", "sg_reset", "h", "h_v0", "bits"]))
    args = NeuronArgs(neuron, draw(st.sampled_from([0.0, 0.5, 0.9, 1.0, 1.5])), draw(st.sampled_from([0.5, 1.0])),
                      draw(st.booleans()), draw(_NUMBERS), reset, draw(st.sampled_from([0.0, -0.3])),
                      draw(st.booleans()), surrogate, draw(st.sampled_from([1.0, 0.5, 4.0, -1.0])), save,
                      draw(st.sampled_from(["bptt", "sltt", "online"])))
    multistep = draw(st.booleans())
    T, n = draw(st.integers(1, 4)), draw(st.integers(0, 70))
    dtype = draw(st.sampled_from([torch.float64, torch.float64, torch.float32, torch.int64]))
    v_kind = draw(st.sampled_from(["none", "ok", "ok", "wrong_shape", "wrong_dtype", "meta"]))
    k_kind = draw(st.sampled_from(["none", "none", "ok", "two", "meta"]))
    return args, multistep, T, n, dtype, v_kind, k_kind, draw(st.integers(0, 2**16))


def _tensor_for(kind, shape, sdt, dev, seed):
    if kind == "none":
        return None
    if kind == "wrong_shape":
        return torch.zeros(tuple(shape) + (2,), dtype=sdt, device=dev)
    if kind == "wrong_dtype":
        return torch.zeros(shape, dtype=torch.float16, device=dev)
    if kind == "meta":
        return torch.zeros(shape, dtype=sdt, device="meta")
    return make_v0(shape, sdt, dev, seed=seed)


def _property(backend, case):
    args, multistep, T, n, dtype, v_kind, k_kind, seed = case
    dev = DEVICE_OF[backend]
    shape = (T, n) if multistep else (n,)
    x = (make_x(shape, torch.float64, dev, seed=seed)).to(dtype)
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    state_shape = shape[1:] if multistep else shape
    v = _tensor_for(v_kind, state_shape, sdt, dev, seed + 1)
    if not multistep and v is None:
        v = torch.zeros(state_shape, dtype=sdt, device=dev)
    k = {"none": None, "ok": torch.tensor(0.4, dtype=sdt, device=dev), "two": torch.full((2,), 0.4, device=dev),
         "meta": torch.tensor(0.4, device="meta")}[k_kind]
    op = backend_op(backend, "neuron_multistep_fwd" if multistep else "neuron_step_fwd")
    try:
        spikes, v_new, saved = op(x, v, k, *args)
    except CLEAR as e:
        assert str(e), "an error must say what is wrong"
        event(f"rejected: {type(e).__name__}")
        return
    event("accepted")
    # accepted: then it is what the reference computes, bit for bit in float64
    assert dtype in (torch.float64, torch.float32) and v_kind in ("none", "ok") and k_kind in ("none", "ok")
    rs, rv, rsaved = _reference_fwd(x.cpu(), None if v is None else v.cpu(), None if k is None else k.cpu(), args,
                                    multistep)
    if dtype == torch.float64:
        torch.testing.assert_close(spikes.cpu(), rs, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(v_new.cpu(), rv, rtol=1e-12, atol=1e-12, equal_nan=True)
        if rsaved is not None and args.save in ("h", "h_v0"):
            torch.testing.assert_close(saved.cpu(), rsaved, rtol=1e-12, atol=1e-12, equal_nan=True)
        elif rsaved is not None:
            assert torch.equal(saved.cpu(), rsaved)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_raw_calls())
@pytest.mark.parametrize("backend", [p for p in KERNEL_BACKENDS if p.id == "cpu"])
def test_random_raw_forward_calls_error_or_equal_the_reference(backend, case):
    _property(backend, case)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_raw_calls())
@pytest.mark.parametrize("backend", [p for p in KERNEL_BACKENDS if p.id == "triton"])
def test_random_raw_triton_calls_error_or_equal_the_reference(backend, case):
    _property(backend, case)


def _backward_property(backend, case, with_grad_v):
    """A backward call on what an accepted float64 forward saved: it errors clearly, or its
    gradients are those of autograd through the reference (grad_k too, for a learnable k)."""
    args, multistep, T, n, dtype, v_kind, k_kind, seed = case
    assume(dtype == torch.float64 and v_kind in ("none", "ok") and k_kind in ("none", "ok"))
    dev = DEVICE_OF[backend]
    shape = (T, n) if multistep else (n,)
    state_shape = shape[1:] if multistep else shape
    x = make_x(shape, torch.float64, dev, seed=seed)
    v = _tensor_for(v_kind, state_shape, torch.float64, dev, seed + 1)
    if not multistep and v is None:
        v = torch.zeros(state_shape, dtype=torch.float64, device=dev)
    k = torch.tensor(0.4, dtype=torch.float64, device=dev) if k_kind == "ok" else None
    fwd = backend_op(backend, "neuron_multistep_fwd" if multistep else "neuron_step_fwd")
    bwd = backend_op(backend, "neuron_multistep_bwd" if multistep else "neuron_step_bwd")
    try:
        _, _, saved = fwd(x, v, k, *args)
    except CLEAR:
        assume(False)
    grad_s = make_x(shape, torch.float64, dev, seed=seed + 2)
    grad_v = make_v0(state_shape, torch.float64, dev, seed=seed + 3) if with_grad_v else None
    try:
        grad_x, grad_v0, grad_k, _ = bwd(grad_s, grad_v, saved, k, *args)
    except CLEAR as e:
        assert str(e), "an error must say what is wrong"
        event(f"backward rejected: {type(e).__name__}")
        return
    event(f"backward accepted: save={args.save}")
    cfg = args  # the reference ignores the save kind
    xr = x.cpu().requires_grad_(True)
    vr = None if v is None else v.cpu().requires_grad_(True)
    kr = None if k is None else k.cpu().requires_grad_(True)
    s, v_new = reference.run(cfg, xr, vr, kr, multistep)
    loss = (s * grad_s.cpu()).sum()
    if grad_v is not None and args.grad == "bptt":
        loss = loss + (v_new * grad_v.cpu()).sum()
    leaves = [t for t in (xr, vr, kr) if t is not None]
    # a leaf the loss does not reach (v under SLTT) has gradient zero, which the op returns
    want = {id(t): torch.zeros_like(t) if g is None else g
            for t, g in zip(leaves, torch.autograd.grad(loss, leaves, allow_unused=True))}
    close = dict(rtol=1e-10, atol=1e-10, equal_nan=True)
    torch.testing.assert_close(grad_x.cpu(), want[id(xr)], **close)
    if vr is not None:
        torch.testing.assert_close(grad_v0.cpu(), want[id(vr)], **close)
    if kr is not None and args.save == "h_v0":
        torch.testing.assert_close(grad_k.cpu().reshape(()), want[id(kr)].reshape(()), **close)


@st.composite
def _valid_calls(draw):
    """Raw calls whose model arguments are valid (the save kind and k may still be refused)."""
    neuron = draw(st.sampled_from(["lif", "if", "leaky"]))
    reset = draw(st.sampled_from(["soft", "hard", "none"] if neuron == "leaky" else ["soft", "hard"]))
    decay = 1.0 if neuron == "if" else draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    gain = 1.0 if neuron != "lif" else draw(st.sampled_from([0.5, 1.0]))
    args = NeuronArgs(neuron, decay, gain, draw(st.booleans()), draw(_NUMBERS), reset,
                      draw(st.sampled_from([0.0, -0.3])) if reset == "hard" else 0.0,
                      True if neuron == "leaky" else draw(st.booleans()),
                      draw(st.sampled_from(["rect", "triangle", "sigmoid", "atan"])), draw(st.sampled_from([1.0, 0.5, 4.0])),
                      draw(st.sampled_from(["sg", "sg_spike", "sg_reset", "h", "h_v0"])),
                      draw(st.sampled_from(["bptt", "sltt"])))
    return (args, draw(st.booleans()), draw(st.integers(1, 4)), draw(st.integers(0, 40)), torch.float64,
            draw(st.sampled_from(["none", "ok"])), draw(st.sampled_from(["none", "ok"])), draw(st.integers(0, 2**16)))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(_valid_calls(), st.booleans())
@pytest.mark.parametrize("backend", [p for p in KERNEL_BACKENDS if p.id == "cpu"])
def test_random_raw_backward_calls_error_or_equal_the_reference_gradients(backend, case, with_grad_v):
    _backward_property(backend, case, with_grad_v)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(_raw_calls())
@pytest.mark.parametrize("backend", [p for p in KERNEL_BACKENDS if p.id == "cpu"])
def test_the_native_ops_accept_the_arguments_the_validator_accepts(backend, case):
    """sltt_kernels/_config.py owns the argument rules; the native ops repeat them (csrc/
    lif_options.h). On valid tensors, each accepts exactly the arguments the other accepts.
    save='none' here: which save kinds a configuration may use is the validator's policy (the
    native ops run every kind they have a kernel for, consistently), the rest is shared."""
    args, multistep, T, n, _, _, k_kind, seed = case
    args = args._replace(save="none")
    dev = DEVICE_OF[backend]
    x = make_x((T, n) if multistep else (n,), torch.float64, dev, seed=seed)
    v = None if multistep else torch.zeros(n, dtype=torch.float64, device=dev)
    k = torch.tensor(0.4, dtype=torch.float64, device=dev) if k_kind == "ok" else None
    try:
        check_args(args, has_k=k is not None)
        python_ok = True
    except (TypeError, ValueError):
        python_ok = False
    try:
        backend_op(backend, "neuron_multistep_fwd" if multistep else "neuron_step_fwd")(x, v, k, *args)
        native_ok = True
    except (TypeError, ValueError) as e:
        assert str(e)
        native_ok = False
    event(f"accepted: {python_ok}")
    assert native_ok == python_ok, f"check_args {'accepts' if python_ok else 'refuses'} {args} (k: {k is not None})"
