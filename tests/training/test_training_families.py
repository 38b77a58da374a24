"""sltt_step, SLTT-K and bptt_step on every neuron family (LIF, IF, parametric LIF, Leaky, a mix)
and on SpikingJelly's own neurons: float64 gradients against a hand-written online loop on the
reference backend, whose neurons always run BPTT and whose SLTT is the state detached by hand
after every step (so the oracle does not rely on grad_mode='sltt' at all)."""

import random

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sltt_kernels import training
from sltt_kernels.nn import BaseNode, FoldTime, IFNode, Leaky, LIFNode, ParametricLIFNode

from helpers import HAVE_EXT

BACKEND = "cpu" if HAVE_EXT else "reference"
IN, HID, OUT = 11, 13, 5  # odd sizes


def _neurons(family, backend, grad_mode):
    kw = dict(backend=backend, grad_mode=grad_mode)
    lif = lambda: LIFNode(tau=1.7, v_reset=None, decay_input=False, **kw)  # noqa: E731
    if_ = lambda: IFNode(v_reset=0.0, v_threshold=0.8, **kw)  # noqa: E731
    plif = lambda: ParametricLIFNode(init_tau=2.5, detach_reset=True, **kw)  # noqa: E731
    leaky = lambda: Leaky(beta=0.8, threshold=0.9, init_hidden=True, **kw)  # noqa: E731
    return {"lif": (lif, lif), "if": (if_, if_), "plif": (plif, plif), "leaky": (leaky, leaky),
            "mixed": (plif, leaky)}[family]


def make_net(family, backend, grad_mode, seed=0):
    first, second = _neurons(family, backend, grad_mode)
    torch.manual_seed(seed)
    return nn.Sequential(FoldTime(nn.Linear(IN, HID)), first(), FoldTime(nn.Linear(HID, HID)), second(),
                         FoldTime(nn.Linear(HID, OUT))).double()


def make_mixed_four(backend, grad_mode, seed=0):
    """Every family in one network: LIF -> IF -> parametric LIF -> Leaky."""
    kw = dict(backend=backend, grad_mode=grad_mode)
    torch.manual_seed(seed)
    layers = [FoldTime(nn.Linear(IN, HID)), LIFNode(tau=2.0, **kw), FoldTime(nn.Linear(HID, HID)), IFNode(**kw),
              FoldTime(nn.Linear(HID, HID)), ParametricLIFNode(v_reset=None, **kw), FoldTime(nn.Linear(HID, HID)),
              Leaky(beta=0.7, init_hidden=True, reset_mechanism="zero", **kw), FoldTime(nn.Linear(HID, OUT))]
    return nn.Sequential(*layers).double()


FAMILIES = ["lif", "if", "plif", "leaky", "mixed", "mixed4"]


def build(family, backend, grad_mode):
    if family == "mixed4":
        return make_mixed_four(backend, grad_mode)
    return make_net(family, backend, grad_mode)


def data(T, B=7, sequence=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (T, B, IN) if sequence else (B, IN)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2.0 + 0.7
    y = torch.randint(0, OUT, (B,), generator=g)
    return x, y


def grads(net):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


def detach_states_by_hand(net):
    for m in net.modules():
        if isinstance(m, BaseNode) and isinstance(m.v, torch.Tensor):
            m.v = m.v.detach()


def reset_by_hand(net):
    for m in net.modules():
        if isinstance(m, BaseNode):
            m.reset()


def oracle_online(family, x, y, T, sequence, bp_steps):
    """The online loop written out: reference neurons in BPTT mode, loss / T and a backward at
    each back-propagated step, the state detached by hand after every step."""
    net = build(family, "reference", "bptt")
    reset_by_hand(net)
    total = 0.0
    for t in range(T):
        with torch.set_grad_enabled(t in bp_steps):
            out = net(x[t] if sequence else x)
            loss = training.sltt_loss(out, y) / T
        if t in bp_steps:
            loss.backward()
        total += float(loss.detach())
        detach_states_by_hand(net)
    return grads(net), total


def oracle_bptt(family, x, y, T, sequence):
    net = build(family, "reference", "bptt")
    reset_by_hand(net)
    outs = [net(x[t] if sequence else x) for t in range(T)]
    loss = sum(training.sltt_loss(o, y) for o in outs) / T
    loss.backward()
    return grads(net), float(loss.detach())


def assert_grads_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def fires(family, x, sequence):
    """The hidden neurons spike in some steps and not in others (else the test proves little)."""
    net = build(family, "reference", "bptt")
    spikes = []
    for m in net.modules():
        if isinstance(m, BaseNode):
            m.register_forward_hook(lambda mod, inp, out: spikes.append(out.detach()))
    with torch.no_grad():
        for t in range(3):
            net(x[t] if sequence else x)
    rate = torch.cat([s.flatten() for s in spikes]).mean()
    return 0.0 < float(rate) < 1.0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("T,sequence", [(1, False), (4, False), (3, True)])
def test_sltt_step_equals_the_online_loop(family, T, sequence):
    x, y = data(T, sequence=sequence)
    assert fires(family, x, sequence) or T == 1
    net = build(family, BACKEND, "bptt")  # built for BPTT: sltt_step must switch every family
    res = training.sltt_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x, y, T, sequence=sequence)
    want, loss = oracle_online(family, x, y, T, sequence, set(range(T)))
    assert_grads_equal(grads(net), want)
    assert isinstance(res.loss, float) and res.loss == pytest.approx(loss, rel=1e-12)
    assert all(m.grad_mode == "sltt" for m in net.modules() if isinstance(m, BaseNode))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("T,K", [(5, 2), (4, 1), (3, 3)])
def test_sltt_k_equals_the_online_loop_at_the_drawn_steps(family, T, K):
    x, y = data(T)
    net = build(family, BACKEND, "bptt")
    training.sltt_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x, y, T, K=K, generator=random.Random(11))
    steps = set(random.Random(11).sample(range(T), K))
    want, _ = oracle_online(family, x, y, T, False, steps)
    assert_grads_equal(grads(net), want)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("T,sequence", [(1, False), (4, False), (3, True)])
def test_bptt_step_is_bptt_whatever_the_grad_mode_was(family, step_mode, T, sequence):
    """Issue 22 item 2: neurons built with grad_mode='sltt' gave SLTT gradients under bptt_step."""
    x, y = data(T, sequence=sequence)
    net = build(family, BACKEND, "sltt")
    res = training.bptt_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x, y, T, sequence=sequence,
                             step_mode=step_mode)
    want, loss = oracle_bptt(family, x, y, T, sequence)
    assert_grads_equal(grads(net), want)
    assert res.loss == pytest.approx(loss, rel=1e-12)
    if T > 1:  # BPTT and SLTT differ here, so the comparison above can tell them apart
        sltt, _ = oracle_online(family, x, y, T, sequence, set(range(T)))
        assert any((g - s).abs().max() > 1e-6 for g, s in zip(want, sltt))


def test_sltt_then_bptt_then_sltt_on_one_network():
    """The steps switch grad_mode both ways on the same modules (a warm-up in one, then the other)."""
    x, y = data(4)
    net = build("mixed4", BACKEND, "bptt")
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    training.sltt_step(net, opt, x, y, 4)
    training.bptt_step(net, opt, x, y, 4)
    assert_grads_equal(grads(net), oracle_bptt("mixed4", x, y, 4, False)[0])
    training.sltt_step(net, opt, x, y, 4)
    assert_grads_equal(grads(net), oracle_online("mixed4", x, y, 4, False, set(range(4)))[0])


def test_set_grad_mode_reaches_every_family():
    net = build("mixed4", "reference", "bptt")
    assert training.set_grad_mode(net, "sltt") is net
    kinds = {type(m).__name__: m.grad_mode for m in net.modules() if isinstance(m, BaseNode)}
    assert kinds == {"LIFNode": "sltt", "IFNode": "sltt", "ParametricLIFNode": "sltt", "Leaky": "sltt"}
    with pytest.raises(ValueError, match="grad_mode"):
        training.set_grad_mode(net, "online")


class _Scalars(TorchDispatchMode):
    """Counts reads of a tensor's value to the host (float(t), t.item())."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("K", [None, 2])
def test_sltt_step_reads_the_loss_once_per_iteration(K):
    """Issue 24: float(loss) at every step was a host synchronisation per step on a GPU."""
    x, y = data(6)
    net = build("lif", BACKEND, "bptt")
    with _Scalars() as mode:
        res = training.sltt_step(net, torch.optim.SGD(net.parameters(), lr=0.1), x, y, 6, K=K,
                                 generator=random.Random(0))
    assert mode.reads == 1
    assert isinstance(res.loss, float)


# SpikingJelly's own neurons -------------------------------------------------------------------------


def _sj_net(seed=0):
    sj = pytest.importorskip("spikingjelly.activation_based")
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, HID), sj.neuron.LIFNode(), nn.Linear(HID, HID),
                         sj.neuron.IFNode(v_reset=None), nn.Linear(HID, OUT)).double()


def _our_twin(seed=0):
    """The same network with our neurons on the reference backend (SpikingJelly's defaults)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, HID), LIFNode(backend="reference"), nn.Linear(HID, HID),
                         IFNode(v_reset=None, backend="reference"), nn.Linear(HID, OUT)).double()


def test_spikingjelly_neurons_run_online_in_sltt_step():
    """Issue 22 item 5: the second step failed with 'backward through the graph a second time'."""
    T = 4
    x, y = data(T)
    theirs = _sj_net()
    res = training.sltt_step(theirs, torch.optim.SGD(theirs.parameters(), lr=0.0), x, y, T)
    ours = _our_twin()
    total = 0.0
    for t in range(T):
        loss = training.sltt_loss(ours(x), y) / T
        loss.backward()
        total += float(loss.detach())
        detach_states_by_hand(ours)
    assert_grads_equal(grads(theirs), grads(ours))
    assert res.loss == pytest.approx(total, rel=1e-12)
    assert theirs[1].v == 0.0  # reset after the iteration


def test_spikingjelly_neurons_in_bptt_step():
    T = 3
    x, y = data(T)
    theirs = _sj_net()
    training.bptt_step(theirs, torch.optim.SGD(theirs.parameters(), lr=0.0), x, y, T, step_mode="s")
    ours = _our_twin()
    loss = sum(training.sltt_loss(ours(x), y) for _ in range(T)) / T
    loss.backward()
    assert_grads_equal(grads(theirs), grads(ours))


def test_spikingjelly_online_neurons_are_refused_by_bptt_step():
    sj = pytest.importorskip("spikingjelly.activation_based")
    net = nn.Sequential(nn.Linear(IN, OUT), sj.neuron.SLTTLIFNode()).double()
    x, y = data(2)
    with pytest.raises(ValueError, match=r"SLTTLIFNode at '1'.*replace_neurons"):
        training.bptt_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x, y, 2, step_mode="s")


def test_a_multi_step_only_module_is_named_by_sltt_step():
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based.layer import SeqToANNContainer

    net = nn.Sequential(SeqToANNContainer(nn.Linear(IN, HID)), LIFNode(), SeqToANNContainer(nn.Linear(HID, OUT)))
    x, y = data(3)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with pytest.raises(ValueError, match=r"SeqToANNContainer at '0' runs on whole sequences"):
        training.sltt_step(net, opt, x.float(), y, 3)
    with pytest.raises(ValueError, match=r"SeqToANNContainer at '0'"):
        training.bptt_step(net, opt, x.float(), y, 3, step_mode="s")
    training.bptt_step(net, opt, x.float(), y, 3, step_mode="m")  # on whole sequences it runs


class _StateWithoutDetach(nn.Module):
    """A stateful neuron with v and reset() but no way to cut its state from the graph."""

    def __init__(self):
        super().__init__()
        self.v = 0.0

    def reset(self):
        self.v = 0.0

    def forward(self, x):
        self.v = self.v * 0.5 + x
        return (self.v > 1.0).to(x.dtype) + self.v - self.v.detach()


def test_a_neuron_that_cannot_run_online_is_refused_with_replace_neurons():
    net = nn.Sequential(nn.Linear(IN, OUT), _StateWithoutDetach())
    x, y = data(2)
    with pytest.raises(ValueError, match=r"_StateWithoutDetach at '1'.*replace_neurons"):
        training.sltt_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x.float(), y, 2)


def test_bptt_step_checks_step_mode():
    net = build("lif", BACKEND, "bptt")
    x, y = data(2)
    with pytest.raises(ValueError, match="step_mode"):
        training.bptt_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x, y, 2, step_mode="x")
