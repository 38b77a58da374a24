"""The paper's networks as the official SLTT code builds them: parameter counts, the constants
and layers that set their signal (shortcut on spikes, x2.74, skipinit gain, beta across stages,
unbiased WS variance), the official initialisation, and the pack_spike_inputs option."""

import math

import pytest
import torch

from sltt_kernels import models
from sltt_kernels import nn as snn
from sltt_kernels.models._common import PaperWSConv2d
from sltt_kernels.nn import LIFNode, PaperLIFNode


def n_params(net):
    return sum(p.numel() for p in net.parameters())


# the official code's counts (its printed totals; models/ of qymeng94/SLTT)
PARAM_COUNTS = [
    ("resnet18 cifar10", lambda: models.spiking_resnet18(num_classes=10), 11_176_906),
    ("resnet34 cifar10", lambda: models.spiking_resnet34(num_classes=10), 21_288_778),
    ("vgg11_bn 2ch 10 classes", lambda: models.vgg11_bn(num_classes=10, in_channels=2), 9_476_298),
    ("vgg11_bn 2ch 11 classes", lambda: models.vgg11_bn(num_classes=11, in_channels=2), 9_501_387),
    ("nf_resnet34", lambda: models.nf_resnet34(num_classes=1000), 21_797_688),
    ("nf_resnet50", lambda: models.nf_resnet50(num_classes=1000), 25_557_048),
    ("nf_resnet101", lambda: models.nf_resnet101(num_classes=1000), 44_549_193),
]


@pytest.mark.parametrize("name, build, expected", PARAM_COUNTS, ids=[c[0] for c in PARAM_COUNTS])
def test_parameter_count_matches_the_official_code(name, build, expected):
    assert n_params(build()) == expected


def test_vgg11_ws_count_is_bn_count_minus_bn_plus_gains():
    # same convs and classifier; each BN (2 x C) replaced by a WS gain (C)
    bn = models.vgg11_bn(num_classes=11)
    ws = models.vgg11_ws(num_classes=11)
    channels = sum(c for stage in models.vgg.VGG11_STAGES for c in stage)
    assert n_params(ws) == n_params(bn) - 2 * channels + channels


def test_default_neuron_is_the_papers():
    net = models.spiking_resnet18()
    lifs = [m for m in net.modules() if isinstance(m, LIFNode)]
    assert lifs and all(isinstance(m, PaperLIFNode) for m in lifs)
    assert lifs[0].tau == pytest.approx(1.1) and lifs[0].v_reset is None and not lifs[0].decay_input


def test_preact_identity_shortcut_adds_the_spikes_not_the_input():
    torch.manual_seed(0)
    net = models.spiking_resnet18(num_classes=10, width=8).eval()
    block = net.layers[0][0]
    assert block.shortcut is None
    with torch.no_grad():
        for conv in (block.conv1.module, block.conv2.module):
            conv.weight.zero_()
            conv.bias.zero_()
        x = torch.randn(2, 8, 8, 8) * 3
        out = block(x)
    # with the residual branch zeroed the output is the pre-activation spikes: 0/1, not x
    assert set(out.unique().tolist()) <= {0.0, 1.0} and out.sum() > 0


def test_preact_convs_have_bias_stem_has_none_and_kaiming_fan_out():
    torch.manual_seed(0)
    net = models.spiking_resnet18(num_classes=10)
    assert net.conv1.module.bias is None
    convs = [m for m in net.layers.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.bias is not None and not c.bias.any() for c in convs)
    w = net.layers[3][1].conv2.module.weight  # 512 x 512 x 3 x 3: fan_out = 4608
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert not net.fc.module.bias.any()
    assert not models.spiking_resnet18(bias=False).layers[0][0].conv1.module.bias


def test_resnet_dropout_in_each_block_and_before_classifier():
    net = models.spiking_resnet18(dropout=0.2)
    drops = [m for m in net.modules() if isinstance(m, snn.TimeDropout)]
    assert len(drops) == 8 + 1 and all(d.p == 0.2 for d in drops)


def test_vgg11_layout_five_average_pools_and_7x7_classifier():
    net = models.vgg11_bn(num_classes=10)
    pools = [m for m in net.features.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert len(pools) == 5
    feats = list(net.features)
    # the first pool comes right after the first conv's neuron and dropout
    assert isinstance(feats[4].module, torch.nn.AvgPool2d)  # conv, BN, LIF, dropout, pool
    assert net.fc.module.in_features == 512 * 7 * 7
    assert net.fc.module.weight.std().item() == pytest.approx(0.01, rel=0.05)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is not None for c in convs)


def test_vgg11_ws_spikes_reach_the_second_layer_at_init():
    """The 2.74 gain after each neuron keeps the second layer firing (it was silent without)."""
    torch.manual_seed(0)
    net = models.vgg11_ws(num_classes=11, step_mode="m").eval()
    rates = []
    for m in net.modules():
        if isinstance(m, LIFNode):
            m.register_forward_hook(lambda mod, inp, out: rates.append(out.float().mean().item()))
    with torch.no_grad():
        net(torch.randn(2, 2, 2, 32, 32))
    assert rates[0] > 0.05 and rates[1] > 0.005, rates


def test_nf_block_constants():
    net = models.nf_resnet34()
    firsts = [stage[0] for stage in net.layers]
    # expected variance carries across stages (stage 1 of ResNet-34 has no projection)
    assert [round(b.beta, 3) for b in firsts] == [1.0, 1.058, 1.077, 1.114]
    blocks = [b for stage in net.layers for b in stage]
    assert all(b.alpha == 0.2 and b.skipinit_gain.item() == 0.0 for b in blocks)
    assert all(b.skipinit_gain.requires_grad for b in blocks)
    assert isinstance(net.stem_pool.module, torch.nn.AvgPool2d)
    assert not net.fc.module.weight.any() and net.fc.module.bias.any()
    # no neuron between the stem and the first block, none before the head
    lifs = [m for m in net.modules() if isinstance(m, LIFNode)]
    assert len(lifs) == 2 * 16
    b50 = models.nf_resnet50()
    assert b50.layers[0][0].downsample is not None and round(b50.layers[1][0].beta, 3) == round(math.sqrt(1.12), 3)


def test_nf_block_scales_spikes_by_2_74_and_skipinit_starts_at_identity():
    torch.manual_seed(0)
    net = models.nf_resnet34(width=8)
    block = net.layers[0][1]
    x = torch.randn(2, 8, 6, 6) * 3
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)  # skipinit_gain 0: the block is the identity
        block.skipinit_gain.fill_(1.0)
        captured = []
        h = block.conv1.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        for n in (block.sn1, block.sn2):
            n.reset()
        block(x)
        h.remove()
    values = captured[0].unique()
    assert len(values) == 2 and values[0] == 0 and values[1].item() == pytest.approx(2.74)


def test_ws_conv_uses_the_unbiased_variance():
    torch.manual_seed(0)
    conv = PaperWSConv2d(3, 4, 3)
    w = conv.weight
    ref = (w - w.mean((1, 2, 3), keepdim=True)) / torch.sqrt(torch.var(w, (1, 2, 3), keepdim=True) * 27 + 1e-4)
    torch.testing.assert_close(conv.standardized_weight(), ref)
    assert all(isinstance(m, PaperWSConv2d) for m in models.nf_resnet34().modules()
               if isinstance(m, snn.ScaledWSConv2d))


@pytest.mark.parametrize("build", [models.spiking_resnet18, models.vgg11_bn, models.vgg11_ws, models.nf_resnet34])
def test_pack_spike_inputs_option(build, monkeypatch):
    if not hasattr(snn, "pack_spike_inputs"):
        with pytest.raises(NotImplementedError, match="pack_spike_inputs"):
            build(pack_spike_inputs=True)
        calls = []
        monkeypatch.setattr(snn, "pack_spike_inputs", lambda m: calls.append(m), raising=False)
        net = build(pack_spike_inputs=True)
        assert calls == [net]
    else:
        net = build(pack_spike_inputs=True)
        assert isinstance(net, torch.nn.Module)


@pytest.mark.parametrize("build", [models.spiking_resnet18, models.vgg11_bn, models.vgg11_ws, models.nf_resnet34])
def test_recompute_option(build):
    with pytest.raises(ValueError, match="recompute=True needs pack_spike_inputs=True"):
        build(width=4, recompute=True)
    net = build(width=4, pack_spike_inputs=True, recompute=True)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(type(m).__name__.startswith("RecomputeInput__") for m in norms)  # every batch norm (none in WS/NF)


def test_preact_residual_stream_is_not_stored_with_recompute():
    """The block's input x is read by bn1 alone (the shortcut takes the spikes): with
    recompute=True no float tensor of an activation's size is saved for backward, only the
    image (the stem conv's input, saved dense as the plain conv saves it), bits and statistics."""
    from sltt_kernels.nn import PaperLIFNode
    from sltt_kernels.surrogate import Rect

    torch.manual_seed(0)
    net = models.spiking_resnet18(width=4, neuron=lambda: PaperLIFNode(surrogate_function=Rect()),
                                  pack_spike_inputs=True, recompute=True)
    x = torch.randn(2, 3, 16, 16)  # the last stage's activations: 2 x 32 x 2 x 2 = 128 elements
    saved = []

    def keep(t):
        saved.append((t.dtype, t.numel(), t.data_ptr()))
        return t

    params = {p.data_ptr() for p in net.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        net(x).sum().backward()
    # above 64 elements: the classifier's dense input (2 x 32) and the statistics are smaller
    floats = [n for dtype, n, ptr in saved if dtype.is_floating_point and n > 64 and ptr not in params]
    assert floats == [x.numel()], floats  # the image, nothing else of activation size
