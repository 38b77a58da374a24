"""The neuron models beyond LIF (IF, snnTorch's Leaky, parametric LIF): every kernel backend equals
the reference, forward and gradients (x, v0 and the learnable w), through the ops (opcheck,
torch.compile) and through replace_neurons on SpikingJelly and snnTorch models."""

import copy
import itertools

import pytest
import torch
from torch import nn

import sltt_kernels
from sltt_kernels import _config, reference

from helpers import DEVICE_OF, KERNEL_BACKENDS, backend_op, make_v0, make_x

# name -> (fused function, reference function, keyword sets)
FAMILIES = {
    "if": (sltt_kernels.if_multistep, reference.if_multistep, [
        dict(v_reset=r, detach_reset=d, surrogate=s, grad=g)
        for r, d, s, g in itertools.product((None, 0.0, -0.3), (False, True), ("rect", "atan"), ("bptt", "sltt"))
    ]),
    "leaky": (sltt_kernels.leaky_multistep, reference.leaky_multistep, [
        dict(beta=b, threshold=th, reset_mechanism=m, surrogate=s, grad=g)
        for (b, th), m, s, g in itertools.product(((0.8, 1.0), (1.0, 0.7), (0.0, 1.0)), ("subtract", "zero", "none"),
                                                 ("rect", "atan", "triangle"), ("bptt", "sltt"))
    ]),
    "plif": (sltt_kernels.plif_multistep, reference.plif_multistep, [
        dict(v_reset=r, decay_input=di, detach_reset=d, surrogate=s, grad=g)
        for r, di, d, s, g in itertools.product((None, -0.3), (True, False), (False, True), ("rect", "sigmoid"),
                                                ("bptt", "sltt"))
    ]),
}
CASES = [(fam, kw) for fam, (_, _, kws) in FAMILIES.items() for kw in kws]
CASE_IDS = [f"{fam}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for fam, kw in CASES]
SHAPES = [(1, 1), (1, 33), (4, 33), (5, 2, 3, 37), (3, 1031)]


def _run(fn, fam, kw, x, v0, w, wv, backend=None):
    """Forward + a backward through spikes and (for BPTT) the last state; grads of x, v0, w."""
    xk = x.detach().clone().requires_grad_(True)
    vk = v0.detach().clone().requires_grad_(True)
    extra, inputs = {}, [xk, vk]
    if fam == "plif":
        wk = torch.tensor(0.3, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                          device=x.device, requires_grad=True)
        extra["w"] = wk
        inputs.append(wk)
    if backend is not None:
        extra["backend"] = backend
    s, v = fn(xk, vk, **kw, **extra)
    loss = (s * w).sum() + ((v * wv).sum() if kw["grad"] == "bptt" else 0.0)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return (s.detach(), v.detach()) + tuple(grads)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=["T1N1", "T1N33", "T4N33", "T5N222", "T3N1031"])
@pytest.mark.parametrize("fam, kw", CASES, ids=CASE_IDS)
def test_family_equals_reference_float64(backend, shape, fam, kw):
    fn, ref, _ = FAMILIES[fam]
    dev = DEVICE_OF[backend]
    x = make_x(shape, torch.float64, dev)
    v0 = make_v0(shape[1:], torch.float64, dev)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(shape, generator=g, dtype=torch.float64).to(dev)
    wv = torch.randn(shape[1:], generator=g, dtype=torch.float64).to(dev)
    got = _run(fn, fam, kw, x, v0, w, wv, backend)
    want = _run(ref, fam, kw, x.cpu(), v0.cpu(), w.cpu(), wv.cpu())
    assert torch.equal(got[0].cpu(), want[0])
    for a, b in zip(got[1:], want[1:]):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a.cpu(), b, rtol=1e-11, atol=1e-12)
    if kw["grad"] == "sltt":
        assert got[3] is None  # SLTT: no gradient reaches the initial state


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("fam", list(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_family_low_precision_close_to_float64(backend, fam, dtype):
    """Spikes in x's dtype, state in float32; nearly every spike as the float64 reference's."""
    fn, ref, kws = FAMILIES[fam]
    kw = kws[0]
    dev = DEVICE_OF[backend]
    x = make_x((6, 3, 41), torch.float64, dev, seed=11)
    s, v = fn(x.to(dtype), **kw, **({"w": torch.tensor(0.3)} if fam == "plif" else {}), backend=backend)
    rs, rv = ref(x.cpu(), **kw, **({"w": torch.tensor(0.3, dtype=torch.float64)} if fam == "plif" else {}))
    assert s.dtype == dtype and v.dtype == torch.float32
    assert (s.cpu().double() == rs).double().mean() > 0.97


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("fam", list(FAMILIES))
def test_family_noncontiguous_empty_and_step_loop(backend, fam):
    fn, ref, kws = FAMILIES[fam]
    kw = next(k for k in kws if k["grad"] == "bptt")
    dev = DEVICE_OF[backend]
    extra = {"w": torch.tensor(0.3, dtype=torch.float64, device=dev)} if fam == "plif" else {}
    x = make_x((3, 40, 6), torch.float64, dev).transpose(1, 2)  # non-contiguous
    s, v = fn(x, **kw, **extra, backend=backend)
    rs, rv = ref(x.cpu(), **kw, **{k: t.cpu() for k, t in extra.items()})
    assert torch.equal(s.cpu(), rs)
    torch.testing.assert_close(v.cpu(), rv, rtol=1e-12, atol=1e-12)
    empty = torch.empty(4, 0, 3, dtype=torch.float64, device=dev)
    se, ve = fn(empty, **kw, **extra, backend=backend)
    assert se.shape == (4, 0, 3) and ve.shape == (0, 3)
    # T single-step calls (the step op) give the multi-step result, BPTT gradients included
    step = getattr(sltt_kernels, f"{fam}_step")
    x2 = make_x((4, 9), torch.float64, dev, seed=5)
    xa, xb = x2.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    s_m, v_m = fn(xa, **kw, **extra, backend=backend)
    v_s, outs = None, []
    for t in range(4):
        o, v_s = step(xb[t], v_s, **kw, **extra, backend=backend)
        outs.append(o)
    s_s = torch.stack(outs)
    assert torch.equal(s_m, s_s)
    torch.testing.assert_close(v_m, v_s, rtol=1e-12, atol=1e-12)
    w = torch.randn(4, 9, dtype=torch.float64, device=dev)
    ((s_m * w).sum() + v_m.sum()).backward()
    ((s_s * w).sum() + v_s.sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)


# The CPU forward without saved state (inference) runs chunks of a cache line of neurons with the
# state in registers (the AVX2 copy), the forward that saves runs blocks with the state in an
# array; both must give the same bits, and the reference's values, for every model, reset, dtype
# and size (whole chunks, a tail, fewer neurons than a chunk, T = 1, a strided input), with
# non-finite inputs. Parameters of -0.0 are 0.0 to the validator; the raw ops below take them.
INFER_CASES = [
    ("lif", sltt_kernels.lif_multistep, reference.lif_multistep, kw) for kw in (
        dict(tau=2.0, v_reset=None, decay_input=False, surrogate="rect"),
        dict(tau=3.0, v_reset=-0.3, decay_input=True, surrogate="sigmoid"),
        dict(tau=2.0, v_reset=-0.0, decay_input=False, surrogate="rect"),
    )
] + [
    ("if", sltt_kernels.if_multistep, reference.if_multistep, dict(v_reset=-0.0, surrogate="rect")),
    ("leaky", sltt_kernels.leaky_multistep, reference.leaky_multistep,
     dict(beta=-0.0, threshold=1.0, reset_mechanism="none", surrogate="rect")),
] + [
    (fam, fn, ref, kw) for fam, (fn, ref, kws) in FAMILIES.items() for kw in kws
    if kw["grad"] == "bptt" and kw["surrogate"] in ("rect", "sigmoid") and kw.get("detach_reset") is not True
]
INFER_SHAPES = [(1, 1), (1, 16), (3, 15), (4, 17), (2, 3, 37), (6, 1031), (5, 64)]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns: torch.equal calls -0.0 and 0.0 equal and NaN unequal to itself."""
    return t.contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


@pytest.mark.parametrize("shape", INFER_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("fam, fn, ref, kw", INFER_CASES,
                         ids=[f"{c[0]}-" + "-".join(f"{k}={v}" for k, v in c[3].items()) for c in INFER_CASES])
def test_cpu_inference_forward_equals_the_saving_forward(cpu_isa, fam, fn, ref, kw, dtype, shape):
    sdt = _config.state_dtype(dtype)
    extra = {"w": torch.tensor(0.3, dtype=sdt)} if fam == "plif" else {}
    x = make_x(shape, torch.float64, seed=sum(shape)).to(dtype)
    if x.numel() > 40:  # one NaN and one infinity (the NaN never fires; the state becomes NaN)
        x.view(-1)[17] = float("nan")
        x.view(-1)[-3] = float("-inf")
    x_strided = make_x(shape[:1] + shape[1:][::-1], torch.float64, seed=7).to(dtype).transpose(1, -1)
    for v0 in (None, make_v0(shape[1:], sdt)):
        for xi in (x, x_strided):
            with torch.no_grad():
                s_inf, v_inf = fn(xi, v0, **kw, **extra, backend="cpu")
            s_sav, v_sav = fn(xi.clone().requires_grad_(True), v0, **kw, **extra, backend="cpu")
            assert torch.equal(_bits(s_inf), _bits(s_sav.detach())), (v0 is None, xi.stride())
            assert torch.equal(_bits(v_inf), _bits(v_sav.detach())), (v0 is None, xi.stride())
            if dtype == torch.float64:
                rs, rv = ref(xi, v0, **kw, **extra)
                assert torch.equal(s_inf, rs)
                torch.testing.assert_close(v_inf, rv, rtol=1e-12, atol=1e-12, equal_nan=True)
                zeros = rv == 0
                assert torch.equal(torch.signbit(v_inf[zeros]), torch.signbit(rv[zeros]))


@pytest.mark.parametrize("n", [16, 17, 1031])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("cfg", [
    _config.lif_config(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=False, detach_reset=False,
                       surrogate="rect", grad="bptt"),
    _config.if_config(v_threshold=1.0, v_reset=0.0, detach_reset=False, surrogate="rect", grad="bptt"),
], ids=["lif-hard", "if-hard"])
def test_raw_inference_keeps_a_negative_zero_reset(cpu_isa, cfg, dtype, n):
    """A raw op may pass v_reset = -0.0 (the validator makes it 0.0): the inference forward keeps
    its sign in the state, as the forward that saves does."""
    x = make_x((3, n), torch.float64, seed=n).to(dtype)
    x[-1, ::2] = 50.0  # half the neurons fire at the last step: their v_last is v_reset itself
    args = cfg.args("none")._replace(v_reset=-0.0)
    fwd = backend_op("cpu", "neuron_multistep_fwd")
    _, v_none, _ = fwd(x, None, None, *args)
    _, v_saved, _ = fwd(x, None, None, *args._replace(save="h"))
    assert torch.equal(_bits(v_none), _bits(v_saved))
    assert torch.signbit(v_none[::2]).all() and not v_none[::2].any()  # -0.0, sign kept


OPCHECK_ARGS = {
    "if": _config.if_config(v_threshold=1.0, v_reset=None, detach_reset=False, surrogate="rect", grad="bptt"),
    "leaky": _config.leaky_config(beta=0.9, threshold=1.0, reset_mechanism="zero", surrogate="rect", grad="bptt"),
    "leaky-atan": _config.leaky_config(beta=0.9, threshold=1.0, reset_mechanism="zero", surrogate="atan",
                                       grad="bptt"),
    "plif": _config.plif_config(v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=False,
                                surrogate="triangle", grad="bptt"),
}


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", list(OPCHECK_ARGS))
def test_family_opcheck(backend, name):
    dev = DEVICE_OF[backend]
    cfg = OPCHECK_ARGS[name]
    k = torch.tensor([0.4], device=dev, requires_grad=True) if name == "plif" else None
    save = cfg.save_kind(True, learn_k=k is not None)
    x = make_x((4, 3, 37), torch.float32, dev, requires_grad=True)
    v0 = make_v0((3, 37), torch.float32, dev, requires_grad=True)
    fwd, bwd = backend_op(backend, "neuron_multistep_fwd"), backend_op(backend, "neuron_multistep_bwd")
    torch.library.opcheck(fwd.default, (x, v0, k, *cfg.args(save)))
    _, _, saved = fwd(x.detach(), v0.detach(), None if k is None else k.detach(), *cfg.args(save))
    gs, gv = torch.randn(4, 3, 37, device=dev), torch.randn(3, 37, device=dev)
    torch.library.opcheck(bwd.default, (gs, gv, saved, None if k is None else k.detach(), *cfg.args(save)))
    step_fwd = backend_op(backend, "neuron_step_fwd")
    torch.library.opcheck(step_fwd.default, (x[0].detach().requires_grad_(True), v0, k, *cfg.args(save)))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("fam", list(FAMILIES))
def test_family_torch_compile_fullgraph(backend, fam):
    fn, _, kws = FAMILIES[fam]
    kw = next(k for k in kws if k["grad"] == "bptt")
    dev = DEVICE_OF[backend]
    torch._dynamo.reset()
    lin = nn.Linear(12, 12).to(dev)
    wp = torch.nn.Parameter(torch.tensor(0.2, device=dev))

    def f(x):
        extra = {"w": wp} if fam == "plif" else {}
        s, v = fn(lin(x), **kw, **extra, backend=backend)
        return s.mean(0), v

    x = make_x((5, 3, 12), torch.float32, dev, seed=4)
    outs = []
    for g in (f, torch.compile(f, fullgraph=True)):
        lin.zero_grad()
        wp.grad = None
        s, v = g(x)
        (s.sum() + v.sum()).backward()
        outs.append((s.detach(), v.detach(), lin.weight.grad.clone(),
                     wp.grad.clone() if fam == "plif" else torch.zeros(())))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# replace_neurons on models built with the other libraries' neurons (float64, 1e-10)


def _grads_equal(m1, m2):
    for (name, p), q in zip(m1.named_parameters(), m2.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-10,
                                       msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_replace_spikingjelly_if_and_plif(step_mode):
    pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Linear(10, 24), neuron.IFNode(surrogate_function=surrogate.ATan()),
        layer.Linear(24, 24), neuron.ParametricLIFNode(init_tau=2.5, surrogate_function=surrogate.Sigmoid()),
        layer.Linear(24, 24), neuron.IFNode(v_reset=None, detach_reset=True, surrogate_function=surrogate.Rect()),
        layer.Linear(24, 24), neuron.ParametricLIFNode(decay_input=False, v_reset=None),
        layer.Linear(24, 3),
    ).double()
    functional.set_step_mode(net, step_mode)
    ours = copy.deepcopy(net)
    report = sltt_kernels.replace_neurons(ours)
    kinds = [(old, type(new).__name__) for _, old, new in report.replaced]
    assert kinds == [("IFNode", "IFNode"), ("ParametricLIFNode", "ParametricLIFNode")] * 2 and not report.skipped
    assert all(type(m).__module__.startswith("sltt_kernels") for _, _, m in report.replaced)
    x = torch.randn(5, 4, 10, dtype=torch.float64) * 1.5
    outs = []
    for model in (net, ours):
        o = model(x) if step_mode == "m" else torch.stack([model(x[t]) for t in range(5)])
        o.square().sum().backward()
        outs.append(o)
        functional.reset_net(model)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-10)
    _grads_equal(net, ours)
    assert ours[3].w.grad is not None and ours[3].w.grad.abs() > 0  # the time constant learns


@pytest.fixture
def snntorch_float64_spikes(monkeypatch):
    """snnTorch's atan surrogate returns float32 spikes whatever the input dtype, which rounds
    every gradient through a spike to float32; for a float64 comparison its forward keeps the
    input's dtype here (the values, 0 and 1, and the backward are snnTorch's own)."""
    snn = pytest.importorskip("snntorch", reason="snnTorch not installed")
    original = snn.surrogate.ATan.forward

    def forward(ctx, input_, alpha):
        return original(ctx, input_, alpha).to(input_.dtype)

    monkeypatch.setattr(snn.surrogate.ATan, "forward", staticmethod(forward))
    return snn


@pytest.mark.parametrize("reset_mechanism", ["subtract", "zero", "none"])
def test_replace_snntorch_default_leaky(reset_mechanism, snntorch_float64_spikes):
    snn = snntorch_float64_spikes

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(10, 16), nn.Linear(16, 4)
            self.lif1 = snn.Leaky(beta=0.8, reset_mechanism=reset_mechanism)  # reset_delay=True: the default
            self.lif2 = snn.Leaky(beta=0.6, threshold=0.7, reset_mechanism=reset_mechanism)

        def forward(self, x):
            mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
            out = []
            for t in range(x.shape[0]):
                spk1, mem1 = self.lif1(self.fc1(x[t]), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                out.append(spk2 + mem2)
            return torch.stack(out)

    torch.manual_seed(0)
    net = Net().double()
    ours = copy.deepcopy(net)
    report = sltt_kernels.replace_neurons(ours)
    assert [(p, o, type(n).__name__) for p, o, n in report.replaced] == [("lif1", "Leaky", "Leaky"),
                                                                        ("lif2", "Leaky", "Leaky")]
    assert not report.skipped and not report.notes  # exact: no caveat
    x = torch.randn(8, 6, 10, dtype=torch.float64)
    o1, o2 = net(x), ours(x)
    torch.testing.assert_close(o2, o1, rtol=1e-10, atol=1e-10)
    o1.square().sum().backward()
    o2.square().sum().backward()
    _grads_equal(net, ours)


def test_replace_reports_what_it_keeps():
    snn = pytest.importorskip("snntorch", reason="snnTorch not installed")
    net = nn.Sequential(nn.Linear(3, 3), snn.Leaky(beta=0.9, learn_beta=True), snn.Leaky(beta=0.5),
                        snn.Leaky(beta=0.5, spike_grad=snn.surrogate.fast_sigmoid()))
    report = sltt_kernels.replace_neurons(net)
    assert [p for p, _, _ in report.replaced] == ["2"]
    kept = {p: why for p, _, why in report.skipped}
    assert "learnable beta" in kept["1"] and "atan" in kept["3"]
    assert "could not replace 2" in str(report)


def test_replace_a_shared_neuron_everywhere():
    pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import neuron

    shared = neuron.IFNode()
    net = nn.Sequential(nn.Linear(4, 4), shared, nn.Linear(4, 4), shared)
    report = sltt_kernels.replace_neurons(net)
    assert len(report.replaced) == 2 and net[1] is net[3]
    assert type(net[1]).__module__.startswith("sltt_kernels")
