"""The paper's networks: shapes, and online (single-step) == multi-step for BPTT."""

import copy

import pytest
import torch

from sltt_kernels import models
from sltt_kernels.nn import LIFNode, reset_net, set_step_mode

from helpers import HAVE_EXT

BACKEND = "cpu" if HAVE_EXT else "reference"


def bptt_neuron():
    return LIFNode(tau=2.0, v_reset=None, decay_input=False, surrogate_function="rect", grad_mode="bptt",
                   backend=BACKEND)


CASES = [
    ("resnet18", lambda: models.spiking_resnet18(num_classes=10, neuron=bptt_neuron), (2, 3, 32, 32), 3),
    ("vgg11_bn", lambda: models.vgg11_bn(num_classes=11, neuron=bptt_neuron), (2, 2, 48, 48), 3),
    ("vgg11_ws", lambda: models.vgg11_ws(num_classes=11, neuron=bptt_neuron), (2, 2, 48, 48), 2),
    ("nf_resnet34", lambda: models.nf_resnet34(num_classes=20, neuron=bptt_neuron), (1, 3, 64, 64), 2),
]


@pytest.mark.parametrize("name, build, shape, T", CASES, ids=[c[0] for c in CASES])
def test_online_equals_multi_step_bptt(name, build, shape, T):
    torch.manual_seed(0)
    net_s = build()
    net_m = copy.deepcopy(net_s)
    set_step_mode(net_m, "m")
    x = torch.randn(T, *shape) * 2
    out_m = net_m(x)
    out_s = torch.stack([net_s(x[t]) for t in range(T)])
    assert out_m.shape == (T, shape[0], out_m.shape[-1])
    torch.testing.assert_close(out_s, out_m, rtol=1e-4, atol=1e-4)
    out_m.square().mean().backward()
    out_s.square().mean().backward()
    for (n1, p1), (_, p2) in zip(net_s.named_parameters(), net_m.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-3, atol=1e-5, msg=n1)
    for (n1, b1), (_, b2) in zip(net_s.named_buffers(), net_m.named_buffers()):
        torch.testing.assert_close(b1.float(), b2.float(), rtol=1e-4, atol=1e-5, msg=n1)
    reset_net(net_s)
    assert all(not isinstance(m.v, torch.Tensor) for m in net_s.modules() if isinstance(m, LIFNode))  # back to v_reset


@pytest.mark.parametrize("build", [models.nf_resnet50, models.nf_resnet101, models.spiking_resnet34])
def test_larger_models_build_and_run(build):
    net = build(num_classes=7, step_mode="m")
    x = torch.randn(1, 1, 3, 64, 64) if "nf" in build.__name__ else torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        assert net(x).shape == (1, 1, 7)
    assert sum(isinstance(m, LIFNode) for m in net.modules()) > 10


@pytest.mark.parametrize("build", [models.vgg11_bn, models.vgg11_ws])
def test_vgg_dropout_after_each_neuron(build):
    net = build(num_classes=10, dropout=0.1)
    mods = list(net.features)
    neurons = [i for i, m in enumerate(mods) if isinstance(m, LIFNode)]
    assert len(neurons) == 8
    for i in neurons:
        # VGG-11 (WS) scales the spikes by 2.74 before the dropout
        nxt = mods[i + 2] if build is models.vgg11_ws else mods[i + 1]
        assert type(nxt).__name__ == "TimeDropout" and nxt.p == 0.1
