"""replace_neurons: the model after replacement is numerically the same model."""

import copy

import pytest
import torch
from torch import nn

import sltt_kernels
from sltt_kernels.nn import LIFNode, OTTTLIFNode, SLTTLIFNode


def test_model_without_neurons_is_an_error():
    with pytest.raises(ValueError, match="no SpikingJelly"):
        sltt_kernels.replace_neurons(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))


def _sj():
    return pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly not installed")


def _sj_net(sj):
    from spikingjelly.activation_based import layer, neuron, surrogate
    return nn.Sequential(
        layer.Conv2d(2, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=False),
        layer.Conv2d(8, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
        neuron.LIFNode(tau=1.7, v_reset=None, decay_input=False, surrogate_function=surrogate.Sigmoid(alpha=3.0),
                       detach_reset=True),
        layer.Conv2d(8, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
        neuron.LIFNode(tau=2.0, v_reset=-0.1, surrogate_function=surrogate.Rect(alpha=1.0)),
        layer.Flatten(), layer.Linear(8 * 8 * 8, 4),
    ).double()


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_spikingjelly_lifnode_model_same_spikes_and_bptt_gradients(step_mode):
    sj = _sj()
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    net = _sj_net(sj)
    functional.set_step_mode(net, step_mode)
    ours = copy.deepcopy(net)
    report = sltt_kernels.replace_neurons(ours)
    assert len(report.replaced) == 3 and not report.skipped
    assert all(isinstance(m, LIFNode) and m.step_mode == step_mode for _, _, m in report.replaced)
    x = torch.randn(4, 3, 2, 8, 8, dtype=torch.float64) * 2
    if step_mode == "m":
        o_sj, o_ours = net(x), ours(x)
    else:
        o_sj = torch.stack([net(x[t]) for t in range(4)])
        o_ours = torch.stack([ours(x[t]) for t in range(4)])
    torch.testing.assert_close(o_ours, o_sj, rtol=1e-12, atol=1e-12)
    o_sj.square().sum().backward()
    o_ours.square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), ours.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_spikingjelly_sltt_and_ottt_nodes():
    _sj()
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(10, 16), neuron.SLTTLIFNode(surrogate_function=surrogate.Sigmoid()),
                        layer.Linear(16, 3)).double()
    ours = copy.deepcopy(net)
    report = sltt_kernels.replace_neurons(ours)
    assert isinstance(report.replaced[0][2], SLTTLIFNode) and report.replaced[0][2].grad_mode == "sltt"
    x = torch.randn(3, 5, 10, dtype=torch.float64) * 2
    for model in (net, ours):  # online: one backward per step, state detached
        for t in range(3):
            model(x[t]).square().sum().backward()
        functional.reset_net(model)
    for p, q in zip(net.parameters(), ours.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12)

    ottt = nn.Sequential(layer.Linear(10, 16), neuron.OTTTLIFNode()).double()
    ours_ottt = copy.deepcopy(ottt)
    sltt_kernels.replace_neurons(ours_ottt)
    assert isinstance(ours_ottt[1], OTTTLIFNode)
    for t in range(3):
        (s1, tr1), (s2, tr2) = ottt(x[t]), ours_ottt(x[t])
        torch.testing.assert_close(s2, s1)
        torch.testing.assert_close(tr2, tr1)


def test_unsupported_surrogate_is_reported_not_replaced():
    _sj()
    from spikingjelly.activation_based import neuron, surrogate

    net = nn.Sequential(nn.Linear(3, 3), neuron.LIFNode(surrogate_function=surrogate.Erf()))
    report = sltt_kernels.replace_neurons(net)
    assert not report.replaced and "Erf" in report.skipped[0][2]
    assert "could not replace 1" in str(report)


def test_snntorch_leaky():
    snn = pytest.importorskip("snntorch", reason="snnTorch not installed")

    class Net(nn.Module):
        def __init__(self, **leaky):
            super().__init__()
            self.fc1 = nn.Linear(10, 16)
            self.lif1 = snn.Leaky(beta=0.75, **leaky)
            self.fc2 = nn.Linear(16, 4)
            self.lif2 = snn.Leaky(beta=0.5, threshold=0.8, **leaky)

        def forward(self, x):
            mem1 = mem2 = None
            out = []
            self.stays_above = False
            self.n_spikes = 0
            for t in range(x.shape[0]):
                spk1, mem1 = self.lif1(self.fc1(x[t]), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                out.append(mem2)
                self.stays_above |= bool((mem1 >= 1.0).any() or (mem2 >= 0.8).any())
                self.n_spikes += int(spk1.sum() + spk2.sum())
            return torch.stack(out)

    torch.manual_seed(0)
    for reset in ("subtract", "zero"):
        net = Net(reset_delay=False, reset_mechanism=reset)
        ours = copy.deepcopy(net)
        report = sltt_kernels.replace_neurons(ours)
        assert len(report.replaced) == 2, report
        assert "exact while" in str(report)
        x = torch.randn(8, 16, 10) * 0.7
        o1, o2 = net(x), ours(x)
        # the condition under which snnTorch's neuron is this LIF (see SnnTorchLeaky)
        assert not net.stays_above
        assert net.n_spikes > 20  # and the neurons do fire
        torch.testing.assert_close(o2, o1, rtol=1e-5, atol=1e-5)
        o1.square().sum().backward()
        o2.square().sum().backward()
        for p, q in zip(net.parameters(), ours.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5)
    delayed = Net()  # snnTorch's default reset_delay=True: this package's exact Leaky
    report = sltt_kernels.replace_neurons(delayed)
    assert len(report.replaced) == 2 and not report.skipped
    assert all(isinstance(m, sltt_kernels.nn.Leaky) for _, _, m in report.replaced)


def test_spikingjelly_reset_net_resets_the_new_neurons_after_replacing():
    sj = _sj()
    from spikingjelly.activation_based import functional as sj_functional

    net = nn.Sequential(nn.Linear(3, 3), sj.neuron.LIFNode())
    sj_functional.reset_net(net)  # SpikingJelly caches the modules it resets, per network
    old = net[1]  # alive, so the cache's weak reference to it stays valid
    sltt_kernels.replace_neurons(net)
    net(torch.ones(2, 3))
    assert isinstance(net[1].v, torch.Tensor)
    sj_functional.reset_net(net)  # a stale cache would reset the old neuron only
    assert net[1].v == 0.0 and old is not net[1]
    sj_functional.invalidate_reset_cache(net)


def test_online_neurons_keep_their_settings():
    sj = _sj()
    net = nn.Sequential(nn.Linear(3, 3), sj.neuron.OTTTLIFNode(store_v_seq=True), sj.neuron.SLTTLIFNode(tau=3.0))
    sltt_kernels.replace_neurons(net)
    assert isinstance(net[1], OTTTLIFNode) and net[1].store_v_seq
    assert isinstance(net[2], SLTTLIFNode) and net[2].tau == 3.0 and net[2].step_mode == "s"


def test_snntorch_buffers_state_and_device_carry_over():
    snn = pytest.importorskip("snntorch", reason="snnTorch not installed")
    from sltt_kernels.nn.leaky import SnnTorchLeaky

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 6), snn.Leaky(beta=0.7, threshold=0.6, reset_mechanism="zero", init_hidden=True),
                        nn.Linear(6, 3), snn.Leaky(beta=0.5, reset_delay=False, init_hidden=True, output=True))
    net[1].beta = torch.tensor(0.7, dtype=torch.float64)  # a dtype of its own, carried over
    x = torch.randn(6, 4, 5) * 2
    with torch.no_grad():  # mid-sequence: the membranes carry over (no graph: deepcopy needs leaves)
        for t in range(3):
            net(x[t])
    ours = copy.deepcopy(net)
    report = sltt_kernels.replace_neurons(ours)
    assert [type(m) for _, _, m in report.replaced] == [sltt_kernels.nn.Leaky, SnnTorchLeaky]
    theirs_sd, ours_sd = net.state_dict(), ours.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    for key in theirs_sd:
        assert ours_sd[key].dtype == theirs_sd[key].dtype and torch.equal(ours_sd[key], theirs_sd[key]), key
    assert ours[1].beta.dtype == torch.float64 and ours[1].mem.shape == (4, 6)
    assert torch.equal(ours[1].mem, net[1].mem)
    for t in range(3, 6):
        s1, m1 = net(x[t])
        s2, m2 = ours(x[t])
        torch.testing.assert_close(m2, m1, rtol=1e-6, atol=1e-6)


def test_snntorch_neurons_that_are_kept_say_why():
    snn = pytest.importorskip("snntorch", reason="snnTorch not installed")
    net = nn.Sequential(nn.Linear(3, 3), snn.Leaky(beta=torch.full((3,), 0.5)), snn.Leaky(0.5, threshold=torch.ones(3)),
                        snn.Leaky(0.5, surrogate_disable=True), snn.Leaky(0.5, learn_threshold=True),
                        snn.Leaky(0.5, reset_delay=False, reset_mechanism="none"),
                        snn.Leaky(0.5, graded_spikes_factor=torch.ones(3)))
    report = sltt_kernels.replace_neurons(net)
    # per-neuron and learnable beta / threshold are fused (docs/design.md, section 2.6)
    assert [path for path, _, _ in report.replaced] == ["1", "2", "3", "4"] and net[3].surrogate_disable
    why = {path: reason for path, _, reason in report.skipped}
    assert "reset_delay=False" in why["5"] and "per-neuron graded_spikes_factor" in why["6"]
