"""A SpikingJelly user's training loop, run with its neurons and with ours after replace_neurons:
its layers and surrogates, functional.set_step_mode / reset_net per batch, an SGD step, a
state_dict checkpoint loaded both ways, and sltt_step on either model. The weights after a few
batches agree to float32 rounding (the two compute the same float32 numbers in other orders)."""

import copy
import io

import pytest
import torch
from torch import nn

from sltt_kernels import training
from sltt_kernels.nn import BaseNode, replace_neurons

from helpers import HAVE_EXT

pytestmark = pytest.mark.skipif(not HAVE_EXT, reason="compiled extension unavailable")
sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402

SURROGATES = {"sigmoid": surrogate.Sigmoid, "atan": surrogate.ATan, "piecewise_quadratic": surrogate.PiecewiseQuadratic}
NEURONS = {
    "lif": lambda sg: neuron.LIFNode(tau=2.0, surrogate_function=sg, detach_reset=True),
    "if": lambda sg: neuron.IFNode(surrogate_function=sg, v_reset=None),
    "plif": lambda sg: neuron.ParametricLIFNode(init_tau=2.0, surrogate_function=sg),
}


def build(kind, sg_name, seed=0):
    torch.manual_seed(seed)
    sg = SURROGATES[sg_name]()
    net = nn.Sequential(layer.Flatten(), layer.Linear(20, 31), NEURONS[kind](sg), layer.Linear(31, 4),
                        NEURONS[kind](sg))
    with torch.no_grad():
        net[3].weight.mul_(6.0)  # the output layer fires from the first batch on
    return net


def batches(n=4, T=4, B=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(T, B, 20, generator=g) * 4 + 1, torch.randint(0, 4, (B,), generator=g)) for _ in range(n)]


def user_loop(net, step_mode, data):
    """SpikingJelly's tutorial loop: firing rate vs one-hot label, MSE, reset after each batch."""
    functional.set_step_mode(net, step_mode)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    losses = []
    for x, y in data:
        if step_mode == "m":
            rate = net(x).mean(0)
        else:
            rate = sum(net(x[t]) for t in range(x.shape[0])) / x.shape[0]
        loss = nn.functional.mse_loss(rate, nn.functional.one_hot(y, 4).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        functional.reset_net(net)
        losses.append(float(loss.detach()))
    return losses


def assert_same_weights(a, b, atol=1e-6):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=atol, msg=name)


def ours_of(net):
    mine = copy.deepcopy(net)
    replace_neurons(mine)
    assert sum(isinstance(m, BaseNode) for m in mine.modules()) == 2
    return mine


@pytest.mark.parametrize("kind", sorted(NEURONS))
@pytest.mark.parametrize("sg_name", sorted(SURROGATES))
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_the_user_loop_trains_to_the_same_weights(kind, sg_name, step_mode):
    theirs = build(kind, sg_name)
    mine = ours_of(theirs)
    data = batches()
    got, want = user_loop(mine, step_mode, data), user_loop(theirs, step_mode, data)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert want[0] != want[-1]  # it trained
    assert_same_weights(theirs, mine)
    # and a checkpoint of either loads strictly into the other
    for source, target in ((theirs, ours_of(build(kind, sg_name, seed=1))), (mine, build(kind, sg_name, seed=1))):
        buffer = io.BytesIO()
        torch.save(source.state_dict(), buffer)
        buffer.seek(0)
        target.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
        assert_same_weights(source, target, atol=0)


@pytest.mark.parametrize("kind", sorted(NEURONS))
@pytest.mark.parametrize("K", [None, 2])
def test_sltt_step_on_spikingjelly_neurons_equals_ours(kind, K):
    """SpikingJelly's neurons run online in sltt_step (state detached per step); ours after
    replace_neurons in grad_mode='sltt': the same SLTT and SLTT-K training."""
    import random

    theirs = build(kind, "atan")
    mine = ours_of(theirs)
    for net in (theirs, mine):
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for i, (x, y) in enumerate(batches(n=3)):
            training.sltt_step(net, opt, x, y, 4, K=K, sequence=True, generator=random.Random(i),
                               loss_fn=lambda out, y: nn.functional.cross_entropy(out, y))
    assert_same_weights(theirs, mine)
    assert all(m.grad_mode == "sltt" for m in mine.modules() if isinstance(m, BaseNode))
