"""replace_neurons on models built with the other libraries' neurons beyond SpikingJelly's LIFNode
(IF and parametric LIF from SpikingJelly, Leaky from snnTorch): the same outputs and gradients in
float64 to 1e-10, and a report of what it keeps. (The kernels' equivalence for every model is
tests/kernels/test_kernels.py.)"""

import copy

import pytest
import torch
from torch import nn

import sltt_kernels
from helpers import TwoLeakyLayers


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

    def net_of_snntorch():
        return TwoLeakyLayers(lambda: snn.Leaky(beta=0.8, reset_mechanism=reset_mechanism),  # reset_delay=True
                              lambda: snn.Leaky(beta=0.6, threshold=0.7, reset_mechanism=reset_mechanism),
                              sizes=(10, 16, 4))

    torch.manual_seed(0)
    net = net_of_snntorch().double()
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
    net = nn.Sequential(nn.Linear(3, 3), snn.Leaky(beta=0.9, learn_graded_spikes_factor=True), snn.Leaky(beta=0.5),
                        snn.Leaky(beta=0.5, spike_grad=snn.surrogate.sigmoid()))
    report = sltt_kernels.replace_neurons(net)
    assert [p for p, _, _ in report.replaced] == ["2"]
    kept = {p: why for p, _, why in report.skipped}
    assert "learnable graded_spikes_factor" in kept["1"] and "sigmoid()" in kept["3"]
    assert "could not replace 2" in str(report)


def test_replace_a_shared_neuron_everywhere():
    pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import neuron

    shared = neuron.IFNode()
    net = nn.Sequential(nn.Linear(4, 4), shared, nn.Linear(4, 4), shared)
    report = sltt_kernels.replace_neurons(net)
    assert len(report.replaced) == 2 and net[1] is net[3]
    assert type(net[1]).__module__.startswith("sltt_kernels")
