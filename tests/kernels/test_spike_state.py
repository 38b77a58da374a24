"""The save kind 'spike_state' (issue 27): one SLTT step of a soft-reset, reset-now neuron (LIF,
IF) keeps the spike bit only, and its backward rebuilds d = h - theta from the step's output
state v_new (v = h - theta where it fired, else h: the forward's own subtraction). Gradients
torch.equal to the 'h' save kind's for every continuous surrogate and dtype, on every kernel
backend here (docs/design.md, section 3)."""

import pytest
import torch

from sltt_kernels import _config, reference
from sltt_kernels.memory import SavedTensorMeter
from sltt_kernels.neurons.if_ import if_config
from sltt_kernels.neurons.lif import lif_config

from helpers import DEVICE_OF, KERNEL_BACKENDS, backend_op, unpack_bits

CONTINUOUS = [s for s in _config.SURROGATE_KINDS if s != "rect"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# odd sizes (a partial mask word, a partial CPU block), a 4-d activation, one element
SHAPES = [(3, 37), (2, 3, 5, 7), (1,), (300,)]


def _cfg(neuron, surrogate, decay_input=False, theta=1.0):
    if neuron == "if":
        return if_config(v_threshold=theta, v_reset=None, detach_reset=False, surrogate=surrogate, grad="sltt")
    return lif_config(tau=1.1, v_threshold=theta, v_reset=None, decay_input=decay_input, detach_reset=False,
                      surrogate=surrogate, grad="sltt")


def _inputs(shape, dtype, device, seed, theta=1.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.9).to(dtype)
    v = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.4).to(_config.state_dtype(dtype))
    if x.numel() > 4:
        # states that put h on the threshold or next to it (d = 0 and the smallest d of each sign),
        # where a wrong reconstruction would flip the spike or the surrogate's value
        x.view(-1)[:3] = 0
        v.view(-1)[0] = theta
        v.view(-1)[1] = torch.nextafter(torch.tensor(theta, dtype=v.dtype), torch.tensor(2.0, dtype=v.dtype))
        v.view(-1)[2] = torch.nextafter(torch.tensor(theta, dtype=v.dtype), torch.tensor(0.0, dtype=v.dtype))
    gs = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x.to(device), v.to(device), gs.to(device)


def _both(backend, cfg, x, v, gs):
    """(spike, v_new, saved, grad_x) for save 'h' and for save 'spike_state'."""
    fwd, bwd = backend_op(backend, "neuron_step_fwd"), backend_op(backend, "neuron_step_bwd")
    out = {}
    for save in ("h", "spike_state"):
        args = cfg.args(save)
        s, v_new, saved = fwd(x, v, None, *args)
        extra = (v_new,) if save == "spike_state" else ()
        gx, gv, gk, _ = bwd(gs, None, saved, None, *args, *extra)
        assert torch.equal(gv, torch.zeros_like(gv))  # SLTT: nothing reaches the previous state
        out[save] = (s, v_new, saved, gx)
    return out["h"], out["spike_state"]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("surrogate", CONTINUOUS)
@pytest.mark.parametrize("neuron", ["lif", "lif-decay-input", "if"])
def test_gradients_equal_the_h_save_kinds(backend, dtype, surrogate, neuron):
    dev = DEVICE_OF[backend]
    cfg = _cfg(neuron.split("-")[0], surrogate, decay_input=neuron == "lif-decay-input")
    for i, shape in enumerate(SHAPES):
        x, v, gs = _inputs(shape, dtype, dev, seed=10 * i + DTYPES.index(dtype))
        h_run, bit_run = _both(backend, cfg, x, v, gs)
        assert torch.equal(h_run[0], bit_run[0]) and torch.equal(h_run[1], bit_run[1])
        assert torch.equal(h_run[3], bit_run[3]), (shape, dtype)
        # the bits are the spikes, as the reference packs them
        assert bit_run[2].dtype == torch.int32 and bit_run[2].shape == (1, (x.numel() + 31) // 32)
        want = reference.saved_state(cfg, x.cpu()[None], v.cpu(), "spike_state")
        assert torch.equal(bit_run[2].cpu(), want)
        assert torch.equal(unpack_bits(bit_run[2].cpu(), x.numel()).reshape(x.shape), bit_run[0].cpu() != 0)
        # and the test can fail: the state of the other branch (v rather than v - theta) differs
        if x.numel() > 4 and surrogate == "triangle":
            wrong = backend_op(backend, "neuron_step_bwd")(gs, None, bit_run[2], None, *cfg.args("spike_state"),
                                                            bit_run[1] - cfg.v_threshold)
            assert not torch.equal(wrong[0], h_run[3])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_non_contiguous_and_empty_inputs(backend):
    dev = DEVICE_OF[backend]
    cfg = _cfg("lif", "triangle")
    x, v, gs = _inputs((9, 14), torch.float32, dev, seed=3)
    x, v, gs = x.t(), v.t(), gs.t()  # strided
    h_run, bit_run = _both(backend, cfg, x, v, gs)
    assert torch.equal(h_run[3], bit_run[3])
    # v_new given strided to the backward
    bwd = backend_op(backend, "neuron_step_bwd")
    strided_v = bit_run[1].t().contiguous().t()
    gx = bwd(gs, None, bit_run[2], None, *cfg.args("spike_state"), strided_v)[0]
    assert torch.equal(gx, h_run[3])
    e = torch.empty(0, 3, device=dev)
    h_run, bit_run = _both(backend, cfg, e, e.clone(), e.clone())
    assert bit_run[3].shape == (0, 3) and bit_run[2].shape == (1, 0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_autograd_through_the_public_step_function(backend, dtype):
    """The step function picks 'spike_state' for the paper's neuron under SLTT; its gradients equal
    those of the same op forced to save h."""
    dev = DEVICE_OF[backend]
    from sltt_kernels.neurons.lif import lif_step
    x, v, gs = _inputs((5, 33), dtype, dev, seed=7)
    kw = dict(tau=1.1, v_threshold=1.0, v_reset=None, decay_input=False, surrogate="triangle", grad="sltt",
              backend=backend)
    xa = x.clone().requires_grad_()
    s, v_new = lif_step(xa, v, **kw)
    assert s.grad_fn is not None
    with SavedTensorMeter() as meter:
        xb = x.clone().requires_grad_()
        s2, v_new2 = lif_step(xb, v, **kw)
        saved_bits = 4 * ((x.numel() + 31) // 32)
        assert meter.peak == saved_bits  # the spike bits only
        assert meter.state_peak == v_new2.numel() * v_new2.element_size()  # the live state, apart
        (s2 * gs).sum().backward()
    assert meter.live == 0 and meter.state_live == 0
    cfg = _cfg("lif", "triangle")
    fwd = backend_op(backend, "neuron_step_fwd")
    xc = x.clone().requires_grad_()
    s3, _, _ = fwd(xc, v, None, *cfg.args("h"))
    (s3 * gs).sum().backward()
    assert torch.equal(s2, s3) and torch.equal(xb.grad, xc.grad)
    # the multi-step function keeps h (or h16): its states v[t < T-1] are gone at backward
    assert cfg.save_kind(True, step=False, half=dtype in _config.HALF_DTYPES) in ("h", "h16")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_an_in_place_change_of_the_state_before_backward_is_refused(backend):
    dev = DEVICE_OF[backend]
    cfg = _cfg("lif", "sigmoid")
    x, v, gs = _inputs((40,), torch.float32, dev, seed=5)
    x.requires_grad_()
    s, v_new, _ = backend_op(backend, "neuron_step_fwd")(x, v, None, *cfg.args("spike_state"))
    v_new.add_(1.0)  # the state the backward would read is no longer the forward's
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (s * gs).sum().backward()


def test_save_kind_policy():
    tri = _cfg("lif", "triangle")
    assert tri.save_kind(True, step=True) == "spike_state"
    assert tri.save_kind(True, step=True, half=True) == "spike_state"  # the state is float32: exact
    assert tri.save_kind(True, step=False) == "h"
    assert tri.save_kind(True, learn_k=True, step=True) == "h_v0"
    assert tri.save_kind(False, step=True) == "none"
    assert _cfg("lif", "rect").save_kind(True, step=True) == "sg"  # already 1 bit
    assert _cfg("if", "atan").save_kind(True, step=True) == "spike_state"
    bptt = lif_config(tau=1.1, v_threshold=1.0, v_reset=None, decay_input=False, detach_reset=False,
                      surrogate="triangle", grad="bptt")
    assert bptt.save_kind(True, step=True) == "h"
    hard = lif_config(tau=1.1, v_threshold=1.0, v_reset=0.0, decay_input=False, detach_reset=False,
                      surrogate="triangle", grad="sltt")
    assert hard.save_kind(True, step=True) == "h"  # v_new = v_r holds no d
    from sltt_kernels.neurons.leaky import leaky_config
    leaky = leaky_config(beta=0.8, threshold=1.0, reset_mechanism="subtract", surrogate="atan", grad="sltt")
    assert leaky.save_kind(True, step=True) != "spike_state"  # its reset applies at the next charge
    for cfg in (bptt, hard, leaky):
        with pytest.raises(ValueError, match="save='spike_state' cannot serve"):
            _config.check_args(cfg.args("spike_state"))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_bad_calls_name_the_argument(backend):
    dev = DEVICE_OF[backend]
    cfg = _cfg("lif", "triangle")
    args = cfg.args("spike_state")
    x, v, gs = _inputs((2, 40), torch.float32, dev, seed=1)
    fwd, bwd = backend_op(backend, "neuron_step_fwd"), backend_op(backend, "neuron_step_bwd")
    with pytest.raises(ValueError, match="single-step ops only"):
        backend_op(backend, "neuron_multistep_fwd")(x, None, None, *args)
    s, v_new, saved = fwd(x, v, None, *args)
    with pytest.raises(ValueError, match="single-step ops only"):
        backend_op(backend, "neuron_multistep_bwd")(gs[None], None, saved, None, *args)
    with pytest.raises(ValueError, match="v_new"):
        bwd(gs, None, saved, None, *args)
    with pytest.raises(ValueError, match="v_new must have shape"):
        bwd(gs, None, saved, None, *args, v_new.reshape(-1))
    with pytest.raises(TypeError, match="v_new must be"):
        bwd(gs, None, saved, None, *args, v_new.double())
    _, _, saved_h = fwd(x, v, None, *cfg.args("h"))
    with pytest.raises(ValueError, match="v_new is read only"):
        bwd(gs, None, saved_h, None, *cfg.args("h"), v_new)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck(backend):
    dev = DEVICE_OF[backend]
    cfg = _cfg("lif", "atan")
    args = cfg.args("spike_state")
    x, v, gs = _inputs((3, 35), torch.float32, dev, seed=2)
    fwd, bwd = backend_op(backend, "neuron_step_fwd"), backend_op(backend, "neuron_step_bwd")
    torch.library.opcheck(fwd.default, (x.clone().requires_grad_(), v, None, *args))
    _, v_new, saved = fwd(x, v, None, *args)
    torch.library.opcheck(bwd.default, (gs, None, saved, None, *args, v_new))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_torch_compile_equals_eager(backend):
    dev = DEVICE_OF[backend]
    from sltt_kernels.neurons.lif import lif_step
    x, v, gs = _inputs((4, 33), torch.float32, dev, seed=9)
    kw = dict(tau=1.1, v_threshold=1.0, v_reset=None, decay_input=False, surrogate="triangle", grad="sltt",
              backend=backend)

    def step(x, v):
        s, v_new = lif_step(x, v, **kw)
        return s, v_new

    grads = []
    for fn in (step, torch.compile(step, fullgraph=True, backend="aot_eager")):
        xi = x.clone().requires_grad_()
        s, _ = fn(xi, v)
        (s * gs).sum().backward()
        grads.append(xi.grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("surrogate", CONTINUOUS)
def test_both_cpu_instruction_set_paths(cpu_isa, surrogate):
    cfg = _cfg("lif", surrogate)
    for i, shape in enumerate(SHAPES):
        for dtype in DTYPES:
            x, v, gs = _inputs(shape, dtype, "cpu", seed=100 + i)
            h_run, bit_run = _both("cpu", cfg, x, v, gs)
            assert torch.equal(h_run[3], bit_run[3]), (cpu_isa, shape, dtype)
