"""sltt_kernels.nir: NIR export and import, the round trip, and snnTorch's NIR reader and writer."""

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir", reason="NIR export/import needs `pip install nir`")

from sltt_kernels import models  # noqa: E402
from sltt_kernels import nn as snn  # noqa: E402
from sltt_kernels.nir import export_nir, import_nir  # noqa: E402
from sltt_kernels.nn import reset_net  # noqa: E402


def _run(net, x):
    """Spikes of T single steps [T, B, ...] -> [T, B, ...], from a fresh state."""
    reset_net(net)
    with torch.no_grad():
        out = [net(xt) for xt in x]
    reset_net(net)
    return torch.stack([o[0] if isinstance(o, tuple) else o for o in out])


def _init(net, mean=0.1, std=0.4):
    """Weights that make the neurons fire often, but not always (a test of spikes, not of zeros)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.normal_(mean, std)
    return net


def conv_net():
    return _init(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), snn.LIFNode(tau=2.0, v_reset=0.0), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * 3 * 2, 7), snn.Leaky(beta=0.8, reset_mechanism="zero", init_hidden=True),
        nn.Linear(7, 3), snn.IFNode(v_reset=-0.5)), mean=0.15).eval()


def test_round_trip_gives_the_same_spikes():
    net = conv_net()
    x = torch.rand(5, 3, 2, 7, 5) * 2  # odd sizes, T=5
    graph = export_nir(net, x[0])
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "IF"}
    back = import_nir(graph).eval()
    want = _run(net, x)
    assert 0.05 < want.mean() < 0.95 and _run(net[:2], x).mean() > 0.05
    assert torch.equal(_run(back, x), want)
    # step mode 'm' runs the whole sequence at once, with the same spikes
    assert torch.equal(import_nir(graph, step_mode="m")(x), want)
    # a file on disk too
    assert isinstance(import_nir(graph, dt=1e-4), nn.Module)


def test_round_trip_T1_and_file(tmp_path):
    net = conv_net()
    x = torch.rand(1, 2, 2, 7, 5) * 2
    nir.write(str(tmp_path / "net.nir"), export_nir(net, x[0]))
    back = import_nir(nir.read(str(tmp_path / "net.nir")))
    assert _run(net[:2], x).mean() > 0.05  # the output IF needs more than one step to fire: check the first LIF
    assert torch.equal(_run(back, x), _run(net, x))
    assert torch.equal(_run(back.nodes[back.keys["1"]], _run(back.nodes[back.keys["0"]], x)), _run(net[:2], x))


def test_batch_norm_after_conv_is_folded_into_it():
    net = _init(nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), snn.LIFNode(tau=2.0, v_reset=0.0),
                              nn.Flatten(), nn.Linear(4 * 9, 3), nn.BatchNorm1d(3), snn.IFNode()))
    torch.manual_seed(1)
    for bn in (net[1], net[5]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    net.eval()
    graph = export_nir(net, torch.rand(1, 2, 5, 5))
    assert not any("BatchNorm" in type(n).__name__ for n in graph.nodes.values()) and len(graph.nodes) == 7
    back = import_nir(graph)
    x = torch.rand(4, 6, 2, 5, 5) * 2
    # the folded conv computes conv + BN up to rounding: compare what reaches the first neuron
    conv = back.nodes[back.keys["0"]]
    torch.testing.assert_close(conv(x[0]), net[1](net[0](x[0])), rtol=1e-5, atol=1e-5)
    want = _run(net, x)
    assert 0.05 < want.mean() < 0.95
    assert (_run(back, x) != want).float().mean() < 0.01  # a spike flips only on a near tie


def test_residual_addition_becomes_two_edges_and_runs_the_same():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.sn1 = nn.Linear(6, 6), snn.LIFNode(tau=2.0, v_reset=0.0)
            self.fc2, self.sn2 = nn.Linear(6, 6), snn.IFNode()

        def forward(self, x):
            s = self.sn1(self.fc1(x))
            return self.sn2(self.fc2(s) + s)

    net = _init(Res()).eval()
    graph = export_nir(net, torch.rand(1, 6))
    assert ("sn1", "sn2") in graph.edges and ("fc2", "sn2") in graph.edges
    x = torch.rand(4, 3, 6) * 2
    assert torch.equal(_run(import_nir(graph), x), _run(net, x))


@pytest.mark.parametrize("make, words", [
    (lambda: snn.PaperLIFNode(), r"soft \(subtractive\) reset"),
    (lambda: snn.LIFNode(v_reset=None), r"soft \(subtractive\) reset"),
    (lambda: snn.Leaky(beta=0.9, init_hidden=True), r"soft \(subtractive\) reset"),
    (lambda: snn.Leaky(beta=0.9, reset_mechanism="none", init_hidden=True), "no reset"),
    (lambda: snn.ParametricLIFNode(), "learnable tau"),
    (lambda: snn.Leaky(beta=torch.full((4,), 0.9), learn_beta=True, reset_mechanism="zero"), "learnable tau, beta"),
    (lambda: snn.Leaky(beta=0.9, learn_threshold=True, reset_mechanism="zero"), "learnable tau, beta or threshold"),
    # per sample (it broadcasts to the batch's state [2, 4], but a NIR node has no batch)
    (lambda: snn.Leaky(beta=torch.full((2, 4), 0.9), reset_mechanism="zero"), r"beta of shape \(2, 4\) is not one value"),
    (lambda: nn.MaxPool1d(2), "no max pooling"),
    (lambda: nn.ReLU(), "ReLU"),
], ids=["paper", "lif-soft", "leaky-subtract", "leaky-none", "plif", "learn-beta", "learn-threshold",
        "beta-per-sample", "maxpool", "relu"])
def test_what_nir_cannot_say_is_an_error_naming_the_module(make, words):
    net = nn.Sequential(nn.Linear(4, 4), make())
    with pytest.raises(ValueError, match=words) as e:
        export_nir(net, torch.rand(2, 4))
    assert "'1'" in str(e.value)


def test_the_papers_per_step_batch_norm_after_an_addition_is_an_error():
    net = models.spiking_resnet18(num_classes=10, neuron=lambda: snn.LIFNode(v_reset=0.0), width=4)
    with pytest.raises(ValueError, match="StepBatchNorm2d at 'layers.0.1.bn1'.*cannot be folded"):
        export_nir(net, torch.rand(1, 3, 8, 8))


def test_bad_arguments():
    net = nn.Sequential(nn.Linear(4, 4), snn.IFNode())
    with pytest.raises(TypeError, match="example_input"):
        export_nir(net, [1.0, 2.0])
    with pytest.raises(ValueError, match="example_input"):
        export_nir(net, torch.rand(4))
    with pytest.raises(ValueError, match="dt"):
        export_nir(net, torch.rand(1, 4), dt=0.0)
    with pytest.raises(TypeError, match="graph"):
        import_nir(net)
    graph = export_nir(net, torch.rand(1, 4))
    with pytest.raises(ValueError, match="step_mode"):
        import_nir(graph, step_mode="x")
    with pytest.raises(ValueError, match="r\\*dt"):
        import_nir(graph, dt=1e-3)  # the IF's gain is 1 only with the dt it was written with


def test_import_refuses_per_neuron_parameters_and_other_nodes():
    lif = nir.LIF(tau=np.array([2e-4, 3e-4]), r=np.array([2.0, 3.0]), v_leak=np.zeros(2),
                  v_threshold=np.ones(2), v_reset=np.zeros(2))
    graph = nir.NIRGraph.from_list(nir.Affine(np.ones((2, 3)), np.zeros(2)), lif)
    with pytest.raises(ValueError, match="different values of tau"):
        import_nir(graph)
    cuba = nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                       v_threshold=np.ones(2))
    with pytest.raises(ValueError, match="CubaLIF"):
        import_nir(nir.NIRGraph.from_list(nir.Affine(np.ones((2, 3)), np.zeros(2)), cuba))


def test_snntorch_reads_our_export_and_runs_it_the_same():
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch", reason="snnTorch's NIR reader needs nirtorch")
    from snntorch.import_nir import import_from_nir

    net = _init(nn.Sequential(nn.Linear(12, 16), snn.LIFNode(tau=3.0, decay_input=False, v_reset=0.0),
                              nn.Linear(16, 5), snn.Leaky(beta=0.8, reset_mechanism="zero", init_hidden=True))).eval()
    theirs = import_from_nir(export_nir(net, torch.rand(1, 12)))
    x = torch.rand(6, 7, 12) * 3
    want = _run(net, x)
    assert 0.05 < want.mean() < 0.95
    with torch.no_grad():
        got = torch.stack([theirs(xt)[0] for xt in x])  # nirtorch's module returns (output, state)
    assert torch.equal(got, want)


def test_we_read_snntorchs_export_and_run_it_the_same():
    snt = pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch", reason="snnTorch's NIR writer needs nirtorch")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    # per-neuron beta and threshold tensors: with numbers snnTorch's export fails its own type check
    theirs = _init(nn.Sequential(
        nn.Linear(12, 16), snt.Leaky(beta=torch.full((16,), 0.7), threshold=torch.ones(16), reset_mechanism="zero",
                                     init_hidden=True),
        nn.Linear(16, 5), snt.Leaky(beta=torch.full((5,), 0.9), threshold=torch.full((5,), 0.8),
                                    reset_mechanism="zero", init_hidden=True, output=True)))
    x = torch.rand(6, 7, 12) * 3
    utils.reset(theirs)
    with torch.no_grad():
        want = torch.stack([theirs(xt)[0] for xt in x])
    ours = import_nir(export_to_nir(theirs, torch.rand(1, 12), ignore_dims=[0]))
    assert all(isinstance(m, (snn.LIFNode, snn.FoldTime)) for m in ours.nodes.values())
    assert 0.05 < want.mean() < 0.95
    assert torch.equal(_run(ours, x), want)


def test_per_neuron_beta_and_threshold_are_exported_per_neuron():
    """A constant per-neuron beta and threshold become the node's per-neuron arrays (they used to
    be read as the configuration's placeholders); our import refuses them by name."""
    beta = torch.linspace(0.5, 0.9, 4)
    threshold = torch.linspace(0.8, 1.4, 4)
    net = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=beta, threshold=threshold, reset_mechanism="zero",
                                                   init_hidden=True))
    node = export_nir(net, torch.rand(2, 3)).nodes["1"]
    dt = 1e-4  # the export's default step
    np.testing.assert_allclose(node.v_threshold, threshold.double().numpy(), rtol=1e-12)
    np.testing.assert_allclose(1.0 - dt / node.tau, beta.double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(node.r * dt / node.tau, np.ones(4), rtol=1e-12)  # snnTorch adds the input whole
    with pytest.raises(ValueError, match="different values of"):
        import_nir(export_nir(net, torch.rand(2, 3)))
