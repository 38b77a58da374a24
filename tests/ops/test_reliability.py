"""Regression tests of the reliability issue: each failed (gave a wrong number, garbage, a crash
or an unclear error) on the code before the fix."""

import copy
import math

import pytest
import torch
from torch import nn

import sltt_kernels
from sltt_kernels import reference

from helpers import HAVE_EXT, KERNEL_BACKENDS, DEVICE_OF, make_x

API_BACKENDS = ["reference", pytest.param("cpu", marks=pytest.mark.skipif(not HAVE_EXT, reason="no extension"))]


# 1. Stale configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", API_BACKENDS)
def test_a_tensor_parameter_changed_in_place_is_used(backend):
    x = make_x((5, 40), torch.float64)
    tau = torch.tensor(2.0)
    s1, v1 = sltt_kernels.lif_multistep(x, tau=tau, backend=backend)
    tau.fill_(50.0)
    s2, v2 = sltt_kernels.lif_multistep(x, tau=tau, backend=backend)
    r2, rv2 = reference.lif_multistep(x, tau=50.0)
    assert torch.equal(s2, r2) and not torch.equal(v1, v2)
    th = torch.tensor(1.0)
    sltt_kernels.lif_multistep(x, v_threshold=th, backend=backend)
    th.fill_(0.2)
    s3, _ = sltt_kernels.lif_multistep(x, v_threshold=th, backend=backend)
    assert torch.equal(s3, reference.lif_multistep(x, v_threshold=0.2)[0])


def test_a_spikingjelly_surrogate_changed_after_use_is_used():
    pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import surrogate as sj_surrogate

    sg = sj_surrogate.Sigmoid(alpha=4.0)
    x = make_x((4, 30), torch.float64, requires_grad=True)

    def grad():
        s, _ = sltt_kernels.lif_multistep(x, surrogate=sg)
        return torch.autograd.grad(s.sum(), x)[0]

    g4 = grad()
    sg.alpha = 1.0
    g1 = grad()
    s, _ = reference.lif_multistep(x, surrogate=sltt_kernels.surrogate.Sigmoid(1.0))
    torch.testing.assert_close(g1, torch.autograd.grad(s.sum(), x)[0])
    assert not torch.allclose(g1, g4)


def test_validation_does_not_depend_on_call_order():
    x = make_x((2, 3))
    sltt_kernels.lif_multistep(x, tau=1)
    with pytest.raises(TypeError, match="tau"):
        sltt_kernels.lif_multistep(x, tau=True)
    with pytest.raises(TypeError, match="decay_input"):
        sltt_kernels.lif_multistep(x, decay_input=2)


def test_our_surrogates_are_immutable():
    sg = sltt_kernels.surrogate.Rect(1.0)
    with pytest.raises(AttributeError, match="immutable"):
        sg.param = 0.5
    assert copy.deepcopy(sg) == sg


# 5. Higher-order and forward-mode autograd: correct, or an error that names what is missing ----


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_higher_order_and_forward_mode_autograd_raise(backend):
    dev = DEVICE_OF[backend]
    x = make_x((4, 6), torch.float64, dev, requires_grad=True)
    s, v = sltt_kernels.lif_multistep(x, backend=backend)
    with pytest.raises(RuntimeError, match="higher-order gradients"):
        torch.autograd.grad((s * s).sum() + v.sum(), x, create_graph=True)
    f = lambda a: sltt_kernels.lif_multistep(a, backend=backend)[1]  # noqa: E731
    with pytest.raises(RuntimeError, match="torch.func"):
        torch.func.jvp(f, (x.detach(),), (torch.ones_like(x),))
    with pytest.raises(RuntimeError, match="torch.func"):
        torch.func.grad(lambda a: f(a).sum())(x.detach())
    with pytest.raises(RuntimeError, match="torch.func"):
        torch.func.vmap(f)(x.detach().reshape(4, 2, 3))
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level(), pytest.raises(RuntimeError, match="forward-mode AD"):
        f(fwAD.make_dual(x.detach(), torch.ones_like(x)))


def test_reference_supports_higher_order_grad_and_func_transforms():
    x = make_x((4, 6), torch.float64, requires_grad=True)
    f = lambda a: reference.lif_multistep(a, surrogate="sigmoid")[1]  # noqa: E731
    g, = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    gg, = torch.autograd.grad(g.sum(), x)
    assert torch.isfinite(gg).all()
    torch.testing.assert_close(torch.func.grad(lambda a: f(a).sum())(x.detach()), g.detach())
    assert torch.func.vmap(f)(x.detach().reshape(4, 2, 3)).shape == (4, 3)
    with pytest.raises(RuntimeError, match="forward-mode AD"):
        torch.func.jvp(f, (x.detach(),), (torch.ones_like(x),))


# 6. torch.compile(dynamic=True) ---------------------------------------------------------------


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_torch_compile_dynamic_shapes(backend):
    dev = DEVICE_OF[backend]
    torch._dynamo.reset()
    f = torch.compile(lambda a: sltt_kernels.lif_multistep(a, tau=2.0, backend=backend)[0], fullgraph=True,
                      dynamic=True)
    g = torch.compile(lambda a, t: sltt_kernels.lif_step(a, tau=t, backend=backend)[0], fullgraph=True, dynamic=True)
    node = sltt_kernels.nn.LIFNode(step_mode="m", backend=backend)
    h = torch.compile(node, fullgraph=True, dynamic=True)
    for shape in [(3, 5), (4, 7)]:
        x = make_x(shape, torch.float32, dev, seed=shape[1]) * 3
        assert torch.equal(f(x), sltt_kernels.lif_multistep(x, tau=2.0, backend=backend)[0])
        for tau in (2.0, 3.0):
            assert torch.equal(g(x[0], tau), sltt_kernels.lif_step(x[0], tau=tau, backend=backend)[0])
        x3 = x.unsqueeze(1).expand(shape[0], 2, shape[1]).contiguous()
        node.reset()
        assert torch.equal(h(x3), sltt_kernels.lif_multistep(x3, backend=backend)[0])


# 10. replace_neurons: shared instances, v_seq, state mid-sequence -------------------------------


def test_replace_keeps_v_seq_and_the_state_mid_sequence():
    pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import neuron

    sj = neuron.LIFNode(step_mode="m", store_v_seq=True)
    net = nn.Sequential(nn.Identity(), sj)
    x = make_x((3, 2, 5))
    net(x)  # holds state now
    ref = copy.deepcopy(net)
    report = sltt_kernels.replace_neurons(net)
    new = net[1]
    assert new.store_v_seq and "carried over" in report.notes["1"]
    torch.testing.assert_close(new.v, ref[1].v.float())
    out_ours, out_sj = net(x), ref(x)
    torch.testing.assert_close(out_ours, out_sj)
    torch.testing.assert_close(new.v_seq, ref[1].v_seq)


# 11. Non-finite input: one semantics in every backend -----------------------------------------


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_non_finite_input_semantics(backend):
    dev = DEVICE_OF.get(backend, "cpu")
    x = torch.tensor([[math.inf, -math.inf, math.nan, 0.5], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64,
                     device=dev, requires_grad=True)
    # hard reset: an infinite input spikes and resets to v_reset exactly
    s, v = sltt_kernels.lif_multistep(x, v_reset=0.0, backend=backend)
    assert s[0].tolist() == [1.0, 0.0, 0.0, 0.0]  # NaN never spikes
    assert v[0].item() == 0.25 and v[1].item() == -math.inf and math.isnan(v[2].item())
    # NaN is never hidden by a surrogate (triangle, sigmoid, atan): its gradient is NaN
    for sg in ("triangle", "sigmoid", "atan"):
        s, _ = sltt_kernels.lif_multistep(x, v_reset=None, surrogate=sg, grad="sltt", backend=backend)
        g, = torch.autograd.grad(s[0].sum(), x)
        assert math.isnan(g[0, 2].item()), sg
    # rect: a 1-bit saved state cannot hold a NaN; its gradient there is 0, in every backend
    s, _ = sltt_kernels.lif_multistep(x, v_reset=None, surrogate="rect", grad="sltt", backend=backend)
    g, = torch.autograd.grad(s[0].sum(), x)
    assert g[0, 2].item() == 0.0


# 12. Bad backends are refused at construction ------------------------------------------------


def test_bad_backend_names_fail_early():
    with pytest.raises(ValueError, match="backend"):
        sltt_kernels.nn.LIFNode(backend="bogus")
    with pytest.raises(ValueError, match="backend"):
        sltt_kernels.nn.Leaky(beta=0.5, backend="gpu")
    pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import neuron

    with pytest.raises(ValueError, match="backend"):
        sltt_kernels.replace_neurons(nn.Sequential(neuron.LIFNode()), backend="gpu")


def test_spikingjelly_backend_names_are_accepted(recwarn):
    n = sltt_kernels.nn.LIFNode(backend="cupy")
    assert n.backend == "auto"
    s, _ = sltt_kernels.lif_multistep(make_x((2, 3)), backend="torch")
    assert s.shape == (2, 3)


def test_new_models_name_their_own_arguments():
    x = make_x((3, 4))
    with pytest.raises(TypeError, match="w must be a torch.Tensor"):
        sltt_kernels.plif_multistep(x, w=0.5)
    with pytest.raises(ValueError, match="w is on meta"):
        sltt_kernels.plif_multistep(x, w=torch.zeros((), device="meta"))
    with pytest.raises(ValueError, match="beta must be <= 1.0"):
        sltt_kernels.leaky_multistep(x, beta=1.5)
    with pytest.raises(ValueError, match="reset_mechanism"):
        sltt_kernels.leaky_multistep(x, beta=0.5, reset_mechanism="half")
    with pytest.raises(ValueError, match="init_tau"):
        sltt_kernels.nn.ParametricLIFNode(init_tau=1.0)
