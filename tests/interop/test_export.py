"""torch.export of an inference network of fused neurons: the program calls the fused op and
gives the network's outputs (issue 25: it works today; this keeps it so)."""

import warnings

import pytest
import torch
from torch import nn

from sltt_kernels import nn as snn
from sltt_kernels.nn import FoldTime, reset_net, set_step_mode

FUSED = "sltt_kernels.neuron_multistep_fwd"


def build(neuron_b) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(FoldTime(nn.Conv2d(2, 3, 3, padding=1)), snn.LIFNode(tau=2.0, decay_input=False),
                        FoldTime(nn.Flatten()), FoldTime(nn.Linear(3 * 5 * 7, 9)), neuron_b(),
                        FoldTime(nn.Linear(9, 4)))
    with torch.no_grad():
        net[0].module.weight.normal_(0.2, 0.3)  # neurons that fire often, but not always
    return set_step_mode(net, "m").eval()


def export(net, x):
    reset_net(net)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*were assigned during export")
        program = torch.export.export(net, (x,))
    reset_net(net)
    return program


@pytest.mark.parametrize("neuron_b", [lambda: snn.LIFNode(tau=2.0, v_reset=None), lambda: snn.IFNode(),
                                      lambda: snn.Leaky(beta=0.8, init_hidden=True)], ids=["lif", "if", "leaky"])
@pytest.mark.parametrize("T", [1, 5])
def test_exported_program_calls_the_fused_op_and_equals_the_network(T, neuron_b):
    net = build(neuron_b)
    x = torch.rand(T, 3, 2, 5, 7) * 3  # odd sizes
    program = export(net, x)
    calls = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert sum(FUSED in c for c in calls) == 2, calls  # one fused call per neuron, no unrolled loop
    module = program.module()
    for inp in (x, torch.rand_like(x) * 3, (torch.rand(T, 3, 2, 7, 5) * 3).transpose(-1, -2)):  # non-contiguous
        reset_net(net)
        with torch.no_grad():
            want = net(inp)
            hidden = net[:2](inp)
        reset_net(net)
        assert 0.02 < hidden.mean() < 0.98  # spikes, not all zeros or ones
        assert torch.equal(module(inp), want)


def test_exported_program_survives_save_and_load(tmp_path):
    net = build(lambda: snn.LIFNode(tau=2.0, v_reset=None))
    x = torch.rand(4, 2, 2, 5, 7) * 3
    torch.export.save(export(net, x), str(tmp_path / "snn.pt2"))
    loaded = torch.export.load(str(tmp_path / "snn.pt2")).module()
    reset_net(net)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
