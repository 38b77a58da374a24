"""snnTorch's Leaky with per-neuron and learnable beta and threshold (issue 22, item 14) on the
fused kernels: the numbers and gradients of snnTorch's own Leaky, its state_dict, replace_neurons
keeping the learnable parameters, and its NIR import's per-neuron neurons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sltt_kernels
from helpers import HAVE_EXT
from sltt_kernels.nn import Leaky
from sltt_kernels.nn.leaky import SnnTorchLeaky

snn = pytest.importorskip("snntorch", reason="snnTorch not installed")
from snntorch import surrogate as snn_surrogate  # noqa: E402
from snntorch import utils as snn_utils  # noqa: E402

BACKENDS = ["reference", "triton"] + (["cpu"] if HAVE_EXT else [])


def _steps(neuron, x, init_hidden):
    """The loop of snnTorch's tutorials, one step at a time; returns (spikes, membranes)."""
    spikes, mems = [], []
    mem = None if init_hidden else neuron.init_leaky()
    for t in range(x.shape[0]):
        if init_hidden:
            spk = neuron(x[t])
            mem = neuron.mem
        else:
            spk, mem = neuron(x[t], mem)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mech", ["subtract", "zero", "none"])
@pytest.mark.parametrize("shape,param_shape", [((4, 6, 9), (9,)), ((3, 2, 3, 4, 4), (3, 1, 1))],
                         ids=["per-feature", "per-channel"])
@pytest.mark.parametrize("learn", [(True, True), (True, False), (False, True), (False, False)],
                         ids=["learn-both", "learn-beta", "learn-threshold", "constant"])
def test_per_neuron_learnable_leaky_equals_snntorchs(backend, mech, shape, param_shape, learn, seed,
                                                    snntorch_spikes_keep_dtype):
    g = torch.Generator().manual_seed(seed)
    beta = 0.6 + 0.35 * torch.rand(param_shape, generator=g, dtype=torch.float64)
    threshold = 0.7 + 0.6 * torch.rand(param_shape, generator=g, dtype=torch.float64)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * 1.5
    theirs = snn.Leaky(beta=beta.clone(), threshold=threshold.clone(), spike_grad=snn_surrogate.fast_sigmoid(slope=25),
                       reset_mechanism=mech, learn_beta=learn[0], learn_threshold=learn[1]).double()
    ours = Leaky(beta=beta.clone(), threshold=threshold.clone(), spike_grad=snn_surrogate.fast_sigmoid(slope=25),
                 reset_mechanism=mech, learn_beta=learn[0], learn_threshold=learn[1], backend=backend).double()
    # snnTorch's state_dict loads into ours as it is, parameters and buffers alike
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert set(dict(ours.named_parameters())) == set(dict(theirs.named_parameters()))
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    s_t, m_t = _steps(theirs, xs[0], False)
    s_o, m_o = _steps(ours, xs[1], False)
    assert torch.equal(s_o, s_t)
    torch.testing.assert_close(m_o, m_t, atol=1e-12, rtol=1e-12)
    weights = torch.randn(shape, generator=g, dtype=torch.float64)
    ((s_t * weights).sum() + m_t[-1].sum()).backward()
    ((s_o * weights).sum() + m_o[-1].sum()).backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad, atol=1e-10, rtol=1e-10)
    for name, p in theirs.named_parameters():
        mine = dict(ours.named_parameters())[name]
        assert p.grad is not None and p.grad.abs().sum() > 0, f"snnTorch's {name} got no gradient: the case tests nothing"
        torch.testing.assert_close(mine.grad, p.grad, atol=1e-10, rtol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_step_mode_and_sltt_with_learnable_params(backend, seed):
    """step_mode='m' gives the one-step loop's gradients; grad_mode='sltt' drops the temporal path
    and still trains beta and the threshold (the reference's SLTT gradients)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 4, 7, generator=g, dtype=torch.float64) * 1.5
    grads = {}
    for mode, gm in (("s", "bptt"), ("m", "bptt"), ("s", "sltt"), ("m", "sltt")):
        n = Leaky(beta=torch.full((7,), 0.8), threshold=torch.full((7,), 0.9), learn_beta=True, learn_threshold=True,
                  step_mode=mode, grad_mode=gm, backend=backend).double()
        xi = x.clone().requires_grad_(True)
        if mode == "m":
            spk, _ = n(xi)
        else:
            spk = torch.stack([n(xi[t])[0] for t in range(5)])
        spk.sum().backward()
        grads[(mode, gm)] = (xi.grad, n.beta.grad, n.threshold.grad)
    for gm in ("bptt", "sltt"):
        for a, b in zip(grads[("s", gm)], grads[("m", gm)]):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert not torch.allclose(grads[("m", "bptt")][1], grads[("m", "sltt")][1])


def test_replace_keeps_the_learnable_parameters_and_trains_the_same(seed, snntorch_spikes_keep_dtype):
    """replace_neurons on a network with learn_beta / learn_threshold: the new neurons hold the
    very nn.Parameter objects (an optimizer made before the replacement keeps training them) and a
    few SGD steps give snnTorch's weights."""
    def build():  # snnTorch's utils.reset knows the neurons its constructor listed: no deepcopy
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(6, 10), snn.Leaky(beta=torch.full((10,), 0.85), learn_beta=True, learn_threshold=True,
                                        spike_grad=snn_surrogate.fast_sigmoid(slope=25), init_hidden=True),
            nn.Linear(10, 3), snn.Leaky(beta=0.7, learn_beta=True, init_hidden=True, output=True,
                                        spike_grad=snn_surrogate.fast_sigmoid(slope=25))).double()

    net, twin = build(), build()
    params_before = [id(p) for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    report = sltt_kernels.replace_neurons(net)
    assert [p for p, _, _ in report.replaced] == ["1", "3"], report
    assert [id(p) for p in net.parameters()] == params_before
    assert isinstance(net[1], Leaky) and isinstance(net[1].beta, nn.Parameter)
    opt_twin = torch.optim.SGD(twin.parameters(), lr=0.2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        x = torch.rand(6, 5, 6, generator=g, dtype=torch.float64) * 2
        losses = []
        for model, o in ((net, opt), (twin, opt_twin)):
            snn_utils.reset(model)
            mems = [model(x[t])[1] for t in range(6)]
            loss = torch.stack(mems).square().mean()
            o.zero_grad()
            loss.backward()
            o.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], atol=1e-10, rtol=1e-10)
    for (name, a), b in zip(net.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=lambda m: f"{name}: {m}")


def test_reset_delay_false_per_neuron(seed, snntorch_spikes_keep_dtype):
    """snnTorch's NIR import builds Leaky(reset_delay=False) with a per-neuron beta (a numpy
    array): SnnTorchLeaky runs it as a LIF with k = 1 - beta per neuron."""
    g = torch.Generator().manual_seed(seed)
    beta_np = (0.5 + 0.4 * np.random.default_rng(seed).random(8)).astype(np.float64)
    theirs = snn.Leaky(beta=beta_np, threshold=0.9, reset_mechanism="zero", reset_delay=False).double()
    ours = SnnTorchLeaky(beta=beta_np, threshold=0.9, reset_mechanism="zero", reset_delay=False).double()
    assert ours.beta.shape == (8,)
    x = torch.rand(6, 3, 8, generator=g, dtype=torch.float64) * 1.2
    s_t, m_t = _steps(theirs, x, False)
    s_o, m_o = _steps(ours, x, False)
    assert torch.equal(s_o, s_t)
    torch.testing.assert_close(m_o, m_t, atol=1e-12, rtol=1e-12)


def test_repr_names_tensor_parameters():
    n = Leaky(beta=torch.full((3,), 0.5), learn_threshold=True)
    text = repr(n)
    assert "beta=per-neuron tensor[3]" in text and "threshold=learnable tensor[]" in text


def test_bad_per_neuron_shapes_are_named():
    n = Leaky(beta=torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="beta must have one element or a shape that broadcasts"):
        n(torch.rand(2, 4))
    with pytest.raises(TypeError, match="beta must hold real numbers"):
        Leaky(beta=np.array(["a", "b"]))
