"""Neuron modules and layers: step modes, state, reset, errors."""

import pytest
import torch
from torch import nn

import sltt_kernels
from sltt_kernels.nn import PaperLIFNode, FoldTime, LIFNode, OTTTLIFNode, ScaledWSConv2d, SLTTLIFNode, StepBatchNorm2d, TimeDropout
from sltt_kernels.nn import reset_net, set_step_mode

from helpers import HAVE_EXT, make_x

BACKENDS = ["reference", pytest.param("cpu", marks=pytest.mark.skipif(not HAVE_EXT, reason="no extension"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grad_mode", ["bptt", "sltt"])
@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_lifnode_single_step_equals_multi_step(backend, grad_mode, v_reset):
    x = make_x((5, 3, 17), torch.float64, requires_grad=True)
    m = LIFNode(tau=1.5, v_reset=v_reset, step_mode="m", grad_mode=grad_mode, backend=backend)
    s = LIFNode(tau=1.5, v_reset=v_reset, step_mode="s", grad_mode=grad_mode, backend=backend)
    out_m = m(x)
    out_s = torch.stack([s(x[t]) for t in range(5)])
    assert torch.equal(out_m, out_s)
    torch.testing.assert_close(m.v, s.v, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(out_m)
    (g_m,) = torch.autograd.grad((out_m * w).sum(), x)
    (g_s,) = torch.autograd.grad((out_s * w).sum(), x)
    torch.testing.assert_close(g_m, g_s, rtol=1e-12, atol=1e-12)


def test_lifnode_defaults_and_repr():
    n = LIFNode()
    assert (n.tau, n.decay_input, n.v_threshold, n.v_reset, n.detach_reset, n.step_mode) == (2.0, True, 1.0, 0.0, False, "s")
    assert n.surrogate_function == sltt_kernels.surrogate.Sigmoid(4.0)
    assert "grad_mode='bptt'" in repr(n)
    p = SLTTLIFNode()  # SpikingJelly's defaults for the class of that name
    assert (p.v_reset, p.decay_input, p.detach_reset, p.grad_mode) == (0.0, True, True, "sltt")
    assert p.surrogate_function == sltt_kernels.surrogate.Sigmoid(4.0)
    q = PaperLIFNode()  # the official SLTT code's neuron
    assert (q.tau, q.v_reset, q.decay_input, q.grad_mode) == (1.1, None, False, "sltt")
    assert q.surrogate_function == sltt_kernels.surrogate.Triangle(1.0)


def test_state_is_kept_and_reset():
    n = SLTTLIFNode()
    x = make_x((4, 6))
    n(x)
    v1 = n.v.clone()
    n(x)
    assert not torch.equal(n.v, v1)
    n.reset()
    assert n.v == 0.0 and not isinstance(n.v, torch.Tensor)  # SpikingJelly: v_reset after reset()
    net = nn.Sequential(nn.Linear(6, 6), SLTTLIFNode(), nn.Linear(6, 2), SLTTLIFNode())
    net(x)
    reset_net(net)
    assert all(not isinstance(m.v, torch.Tensor) for m in net.modules() if isinstance(m, LIFNode))


def test_multi_step_input_to_single_step_module_is_an_error():
    n = LIFNode(step_mode="s")
    n(make_x((8, 16)))
    with pytest.raises(ValueError, match="multi-step input"):
        n(make_x((4, 8, 16)))
    with pytest.raises(ValueError, match="reset"):
        n(make_x((7, 16)))
    with pytest.raises(ValueError, match="step_mode"):
        LIFNode(step_mode="x")
    with pytest.raises(ValueError, match="tau"):
        LIFNode(tau=0.5)


def test_spikingjelly_functions_work_on_our_modules():
    functional = pytest.importorskip("spikingjelly.activation_based.functional")
    net = nn.Sequential(FoldTime(nn.Linear(6, 6)), LIFNode(), FoldTime(nn.Linear(6, 2)), SLTTLIFNode())
    functional.set_step_mode(net, "m")
    assert all(m.step_mode == "m" for m in net.modules() if hasattr(m, "step_mode"))
    out = net(make_x((3, 4, 6)))
    assert out.shape == (3, 4, 2)
    functional.reset_net(net)
    assert all(not isinstance(m.v, torch.Tensor) for m in net.modules() if isinstance(m, LIFNode))


def test_otttlifnode_returns_spike_and_trace():
    n = OTTTLIFNode(tau=2.0)
    x = make_x((3, 5))
    s1, tr1 = n(x)
    s2, tr2 = n(x)
    torch.testing.assert_close(tr2, tr1 * 0.5 + s2)
    n.eval()
    assert isinstance(n(x), torch.Tensor)


def test_step_batchnorm_multi_step_equals_per_step_calls():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6, 6) * 2 + 1
    a = StepBatchNorm2d(5, step_mode="m")
    b = StepBatchNorm2d(5, step_mode="s")
    b.load_state_dict(a.state_dict())
    ya = a(x)
    yb = torch.stack([b(x[t]) for t in range(3)])
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(a.running_mean, b.running_mean)
    torch.testing.assert_close(a.running_var, b.running_var)
    assert a.num_batches_tracked == 3
    # each step normalised with its own statistics
    torch.testing.assert_close(ya[1].mean(dim=(0, 2, 3)), torch.zeros(5), atol=1e-5, rtol=0)


def test_scaled_ws_conv():
    conv = ScaledWSConv2d(4, 6, 3, padding=1)
    w = conv.standardized_weight()
    fan_in = 4 * 9
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(w.var(dim=(1, 2, 3), unbiased=False) * fan_in, torch.ones(6), atol=1e-3, rtol=0)
    x = torch.randn(2, 3, 4, 8, 8)
    conv.step_mode = "m"
    y = conv(x)
    conv.step_mode = "s"
    torch.testing.assert_close(y, torch.stack([conv(x[t]) for t in range(2)]))
    assert conv.gain.requires_grad


def test_fold_time():
    lin = nn.Linear(5, 3)
    f = FoldTime(lin, step_mode="m")
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(f(x), lin(x))
    assert "step_mode='m'" in repr(f)


def test_time_dropout_keeps_its_mask_across_steps():
    d = TimeDropout(0.5)
    x = torch.ones(4, 100)
    m1 = d(x)
    m2 = d(x)
    assert torch.equal(m1, m2) and (m1 == 0).any()
    d.reset()
    d.eval()
    assert torch.equal(d(x), x)
    d.train()
    set_step_mode(d, "m")
    y = d(torch.ones(3, 4, 100))
    assert torch.equal(y[0], y[2])
