"""NeuroBench's static and workload metrics on a model of fused neurons equal those of the same
model built with snnTorch's neurons (NeuroBench reads snnTorch's Leaky, which ours is with
snnTorch installed)."""

import copy

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch", reason="NeuroBench's snnTorch models need snntorch")
pytest.importorskip("neurobench", reason="pip install --no-deps neurobench (its metrics need no audio packages)")

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount  # noqa: E402
from neurobench.metrics.workload import (  # noqa: E402
    ActivationSparsity,
    ClassificationAccuracy,
    MembraneUpdates,
    SynapticOperations,
)
from neurobench.models import SNNTorchModel  # noqa: E402

from sltt_kernels import replace_neurons  # noqa: E402
from sltt_kernels.nn import Leaky  # noqa: E402

STATIC = [Footprint, ConnectionSparsity, ParameterCount]
WORKLOAD = [ActivationSparsity, SynapticOperations, MembraneUpdates, ClassificationAccuracy]


def snntorch_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(20, 13), snn.Leaky(beta=0.8, init_hidden=True),
                        nn.Linear(13, 13), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"),
                        nn.Linear(13, 5), snn.Leaky(beta=0.7, init_hidden=True, output=True))
    with torch.no_grad():
        net[1].weight.normal_(0.2, 0.4)
        net[3].weight[:, :4] = 0.0  # some sparsity for ConnectionSparsity to count
    return net


def run(net, loader):
    bench = Benchmark(SNNTorchModel(net), loader, [], [lambda spikes: spikes.sum(1).argmax(-1)], [STATIC, WORKLOAD])
    return bench.run(quiet=True)


def test_metrics_of_fused_neurons_equal_snntorchs():
    theirs = snntorch_net()
    ours = copy.deepcopy(theirs)
    report = replace_neurons(ours)
    assert len(report.replaced) == 3 and all(isinstance(m, Leaky) for _, _, m in report.replaced)
    g = torch.Generator().manual_seed(0)
    data = torch.rand(24, 7, 4, 5, generator=g) * 2  # [batch, time, ...] as NeuroBench feeds it
    labels = torch.randint(0, 5, (24,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data, labels), batch_size=10)
    want, got = run(theirs, loader), run(ours, loader)
    assert set(got) == set(want) >= {"Footprint", "ConnectionSparsity", "ParameterCount", "ActivationSparsity",
                                     "SynapticOperations", "MembraneUpdates", "ClassificationAccuracy"}
    assert 0.05 < want["ActivationSparsity"] < 0.95  # spikes, not silence
    assert want["SynapticOperations"]["Effective_ACs"] > 0
    for key in want:
        assert got[key] == pytest.approx(want[key]), key
