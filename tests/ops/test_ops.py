"""The torch ops: opcheck (schema, fake, autograd registration), gradcheck, torch.compile."""

import pytest
import torch

import sltt_kernels

from helpers import CORE_CONFIG_IDS, CORE_CONFIGS, DEVICE_OF, KERNEL_BACKENDS, backend_op, config_of, make_v0, make_x, neuron_kwargs

def _fwd_args(kw, x, v0, save):
    return (x, v0, None) + tuple(config_of(kw).args(save))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kw", CORE_CONFIGS, ids=CORE_CONFIG_IDS)
def test_opcheck_multistep(backend, dtype, kw):
    dev = DEVICE_OF[backend]
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    cfg = config_of(kw)
    x = make_x((4, 3, 37), dtype, dev, requires_grad=True)
    v0 = make_v0((3, 37), sdt, dev, requires_grad=cfg.grad == "bptt")
    save = cfg.save_kind(True)
    fwd, bwd = backend_op(backend, "neuron_multistep_fwd"), backend_op(backend, "neuron_multistep_bwd")
    torch.library.opcheck(fwd.default, _fwd_args(kw, x, v0, save))
    torch.library.opcheck(fwd.default, _fwd_args(kw, x.detach(), None, "none"))
    _, _, saved = fwd(*_fwd_args(kw, x.detach(), v0.detach(), save))
    gs = torch.randn(4, 3, 37, device=dev).to(dtype)
    gv = torch.randn(3, 37, device=dev, dtype=sdt)
    torch.library.opcheck(bwd.default, (gs, gv, saved, None) + tuple(cfg.args(save)))
    torch.library.opcheck(bwd.default, (gs, None, saved, None) + tuple(cfg.args(save)))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kw", CORE_CONFIGS, ids=CORE_CONFIG_IDS)
def test_opcheck_step(backend, kw):
    dev = DEVICE_OF[backend]
    cfg = config_of(kw)
    x = make_x((5, 7), torch.float32, dev, requires_grad=True)
    v = make_v0((5, 7), torch.float32, dev, requires_grad=cfg.grad == "bptt")
    save = cfg.save_kind(True)
    fwd, bwd = backend_op(backend, "neuron_step_fwd"), backend_op(backend, "neuron_step_bwd")
    torch.library.opcheck(fwd.default, _fwd_args(kw, x, v, save))
    _, _, saved = fwd(*_fwd_args(kw, x.detach(), v.detach(), save))
    gs = torch.randn(5, 7, device=dev)
    torch.library.opcheck(bwd.default, (gs, torch.randn(5, 7, device=dev), saved, None) + tuple(cfg.args(save)))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("reset", ["soft", "hard0", "hard-0.3"])
@pytest.mark.parametrize("decay_input", [True, False])
def test_gradcheck_membrane_path(backend, reset, decay_input):
    """gradcheck in float64 where the true derivative exists: v_last with detach_reset is
    piecewise linear in x and v0 (the spike is a constant of the reset), so the fused BPTT
    backward along time must equal finite differences exactly."""
    dev = DEVICE_OF[backend]
    kw = neuron_kwargs(reset, decay_input, True, "sigmoid", "bptt", tau=1.7)
    x = make_x((5, 13), torch.float64, dev, requires_grad=True)
    v0 = make_v0((13,), torch.float64, dev, requires_grad=True)

    def multistep(x, v0):
        return sltt_kernels.lif_multistep(x, v0, backend=backend, **kw)[1]

    def step(x, v0):
        return sltt_kernels.lif_step(x, v0, backend=backend, **kw)[1]

    assert torch.autograd.gradcheck(multistep, (x, v0), eps=1e-7, atol=1e-8)
    assert torch.autograd.gradcheck(step, (x[0], v0), eps=1e-7, atol=1e-8)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
def test_torch_compile_fullgraph_matches_eager(backend, grad):
    dev = DEVICE_OF[backend]
    torch._dynamo.reset()
    w = torch.nn.Linear(24, 24, dtype=torch.float32).to(dev)

    def f(x):
        spikes, v = sltt_kernels.lif_multistep(
            w(x), tau=2.0, v_reset=None, decay_input=False, surrogate="rect", grad=grad, backend=backend
        )
        return spikes.mean(dim=0), v

    compiled = torch.compile(f, fullgraph=True)
    x = make_x((6, 8, 24), torch.float32, dev, seed=4)
    outs = []
    for fn in (f, compiled):
        w.zero_grad()
        xx = x.clone().requires_grad_(True)
        s, v = fn(xx)
        (s.sum() * 1.0).backward()
        outs.append((s.detach(), v.detach(), xx.grad, w.weight.grad.clone()))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_torch_compile_step_loop(backend):
    """The online (single-step) form compiles too, with the state carried between calls."""
    dev = DEVICE_OF[backend]
    torch._dynamo.reset()

    def f(x):
        v = None
        out = []
        for t in range(x.shape[0]):
            s, v = sltt_kernels.lif_step(x[t], v, surrogate="triangle", grad="sltt", backend=backend)
            out.append(s)
        return torch.stack(out)

    x = make_x((3, 4, 10), torch.float32, dev, seed=8)
    xe = x.clone().requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    se = f(xe)
    sc = torch.compile(f, fullgraph=True)(xc)
    assert torch.equal(se, sc)
    se.sum().backward()
    sc.sum().backward()
    torch.testing.assert_close(xe.grad, xc.grad)
