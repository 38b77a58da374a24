"""pack_spike_inputs(model, recompute=True): batch norms that rebuild their input in backward.

The plain model is the oracle: gradients, parameters after the optimizer step, running statistics
and num_batches_tracked must be torch.equal to its own (BPTT, SLTT, SLTT-K; rect and triangle);
the rebuilt tensors equal the forward's bit for bit; the saved bytes are what is left."""

import copy
import io
import random

import pytest
import torch
from torch import nn

import sltt_kernels
from sltt_kernels import models, training
from sltt_kernels.memory import SavedTensorMeter
from sltt_kernels.nn import FoldTime, LIFNode, PaperLIFNode, StepBatchNorm2d, pack_spike_inputs
from sltt_kernels.nn import packed_layers as PL
from sltt_kernels.nn import recompute as R
from sltt_kernels.surrogate import Rect

import helpers  # noqa: F401  (switches the Triton interpreter on without a GPU)


def _spikes(shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def _neuron(surrogate: str, grad: str):
    kw = {} if surrogate == "triangle" else dict(surrogate_function=Rect())
    return lambda: PaperLIFNode(grad_mode=grad, **kw)


def _train(net, method, x, y, T):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with SavedTensorMeter(net) as meter:
        if method == "bptt":
            training.bptt_step(net, opt, x, y, T, step_mode="m")
        else:
            training.sltt_step(net, opt, x, y, T, K=1 if method == "sltt-k" else None, generator=random.Random(3))
    return meter.peak


def _assert_same_state(plain, other):
    params = dict(plain.named_parameters())
    for name, p in other.named_parameters():
        assert torch.equal(params[name], p), name  # after the step: the gradients were equal too
        assert (params[name].grad is None) == (p.grad is None), name
        if p.grad is not None:
            assert torch.equal(params[name].grad, p.grad), name
    buffers = dict(plain.named_buffers())
    assert buffers.keys() == dict(other.named_buffers()).keys()
    for name, b in other.named_buffers():  # running mean/var and num_batches_tracked
        assert torch.equal(buffers[name], b), name


CASES = [(method, T, surrogate) for method, T in [("bptt", 2), ("sltt", 2), ("sltt-k", 3)]
         for surrogate in ("rect", "triangle")] + [("sltt", 1, "rect"), ("bptt", 1, "triangle")]


@pytest.mark.parametrize("method,T,surrogate", CASES)
def test_resnet_recompute_equals_plain(method, T, surrogate):
    grad = "bptt" if method == "bptt" else "sltt"
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([1, 4, 0])
    nets, saved = {}, {}
    for name, kw in [("plain", {}), ("packed", dict(pack_spike_inputs=True)),
                     ("recompute", dict(pack_spike_inputs=True, recompute=True))]:
        torch.manual_seed(0)
        nets[name] = models.spiking_resnet18(neuron=_neuron(surrogate, grad), width=4, dropout=0.25, **kw)
        saved[name] = _train(nets[name], method, x, y, T)
    _assert_same_state(nets["plain"], nets["recompute"])
    assert int(nets["recompute"].bn.num_batches_tracked) == T  # once per step (SLTT-K's no_grad steps too)
    assert saved["recompute"] < saved["packed"] < saved["plain"]
    if surrogate == "rect":  # what is left: 1-bit conv inputs and masks, BN statistics, the image
        assert saved["recompute"] < 0.5 * saved["packed"]


def test_vgg_recompute_equals_plain_multistep():
    torch.manual_seed(0)
    plain = models.vgg11_bn(num_classes=5, in_channels=2, width=4, neuron=_neuron("rect", "bptt"), step_mode="m")
    other = copy.deepcopy(plain)
    report = pack_spike_inputs(other, recompute=True)
    assert len(report.recomputed) == 8 and not report.kept, str(report)
    x = torch.randn(2, 3, 2, 32, 32)
    for net in (plain, other):
        net(x).square().mean().backward()
    _assert_same_state(plain, other)


def _conv_out_and_recipe(conv, x):
    out = conv(x)
    found = R.find_recipe(out)
    assert found is not None
    return out, found[0]


@pytest.mark.parametrize("case", ["plain", "strided-grouped", "channels_last", "non-contiguous", "odd", "no-bias",
                                  "dense-input", "conv1d", "conv3d", "batch-1"])
def test_rebuilt_conv_output_equals_forward(case):
    """The recompute's exactness rests on this: the conv run again on the unpacked input gives
    the forward's output to the bit (deterministic convolutions; on a GPU see nn/recompute.py)."""
    torch.manual_seed(1)
    cls, shape, kw = nn.Conv2d, (3, 6, 11, 13), dict(kernel_size=3, padding=1)
    if case == "strided-grouped":
        kw = dict(kernel_size=3, stride=2, padding=2, dilation=2, groups=3)
    elif case == "odd":
        shape = (5, 6, 7, 3)
    elif case == "no-bias":
        kw["bias"] = False
    elif case == "conv1d":
        cls, shape = nn.Conv1d, (3, 6, 37)
    elif case == "conv3d":
        cls, shape = nn.Conv3d, (2, 6, 5, 6, 7)
    elif case == "batch-1":
        shape = (1, 6, 9, 9)
    conv = cls(6, 9, **kw)
    conv.__class__ = PL.packed_class(cls)
    conv.spike_recompute = True
    x = _spikes(shape, seed=2)
    if case == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif case == "non-contiguous":
        x = _spikes((3, 6, 13, 11), seed=2).transpose(2, 3)
    elif case == "dense-input":
        conv.spike_pack_dense = True
        x = torch.randn(shape)
    out, recipe = _conv_out_and_recipe(conv, x)
    rebuilt = recipe.materialize()
    assert torch.equal(rebuilt, out) and rebuilt.stride() == out.stride()
    assert conv._spike_pack_calls == ([0, 1] if case == "dense-input" else [1, 0])
    if case != "non-contiguous":  # the input too (for a residual sum), when it is dense
        x_recipe, spec = R.find_recipe(x)
        assert torch.equal(x_recipe.view(spec), x)


def test_rebuilt_sum_equals_forward_and_views_share_one_rebuild():
    torch.manual_seed(2)
    conv = FoldTime(PL.PackedConv2d(4, 4, 3, padding=1), step_mode="m")
    conv.module.spike_recompute = True
    s = _spikes((3, 2, 4, 7, 7), seed=4)
    out = R.ResidualAdd()(conv(s), s)
    recipe, spec = R.find_recipe(out)
    assert torch.equal(recipe.materialize(), out)
    # a multi-step batch norm saves out[t] for each t: the first rebuilds, the last frees
    recipe.pending = 3
    views = [recipe.take(R.find_recipe(out[t])[1]) for t in range(3)]
    assert all(torch.equal(v, out[t]) for t, v in enumerate(views))
    assert recipe._cache is None and recipe.pending == 0
    assert views[0].untyped_storage().data_ptr() == views[2].untyped_storage().data_ptr()
    # not every sum can be rebuilt: an operand without a recipe leaves it a plain sum
    assert R.find_recipe(R.ResidualAdd()(conv(s), torch.randn(3, 2, 4, 7, 7))) is None


def _conv_bn(bn, c=5):
    conv = nn.Conv2d(3, c, 3, padding=1)
    return nn.Sequential(LIFNode(surrogate_function=Rect(), step_mode="s"), conv, bn)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_saved_bytes_and_batch_norm_state(train, momentum):
    """Exactly the conv output (and the input's 31 of 32 bits) leave the saved bytes; BN's mean,
    inverse std and buffers are still saved and counted; num_batches_tracked moves once."""
    torch.manual_seed(3)
    plain = _conv_bn(nn.BatchNorm2d(5, momentum=momentum)).train(train)
    other = copy.deepcopy(plain)
    report = pack_spike_inputs(other, recompute=True)
    assert [p for p, _, _ in report.recomputed] == ["2"]
    x = torch.randn(4, 3, 9, 10) * 2
    peaks, grads = [], []
    for net in (plain, other):
        for _ in range(2):  # momentum=None averages with num_batches_tracked: twice
            xi = x.clone().requires_grad_(True)
            with SavedTensorMeter(net) as meter:
                net(xi).backward(torch.randn(4, 5, 9, 10, generator=torch.Generator().manual_seed(9)))
            sltt_kernels.nn.reset_net(net)
        peaks.append(meter.peak)
        grads.append(xi.grad)
    _assert_same_state(plain, other)
    assert torch.equal(grads[0], grads[1])
    n = 4 * 3 * 9 * 10
    words = (n + 31) // 32
    assert peaks[0] - peaks[1] == 4 * 5 * 9 * 10 * 4 + n * 4 - (words * 4 + 4)


def test_in_place_change_keeps_the_input_saved():
    """A conv output changed in place before its batch norm is not what the recipe rebuilds: it is saved."""

    class AddInPlace(nn.Module):
        def forward(self, x):
            return x.add_(0.5)

    torch.manual_seed(4)
    plain = nn.Sequential(LIFNode(step_mode="s"), nn.Conv2d(3, 4, 3), AddInPlace(), nn.BatchNorm2d(4))
    other = copy.deepcopy(plain)
    pack_spike_inputs(other, recompute=True)
    other[1].__class__ = PL.packed_class(nn.Conv2d)  # as if the analysis had seen through the in-place op
    other[1].spike_recompute = True
    other[3].__class__ = R.recompute_class(nn.BatchNorm2d)
    x = torch.randn(2, 3, 8, 8) * 3
    saved = []
    for net in (plain, other):
        with SavedTensorMeter(net) as meter:
            net(x).square().sum().backward()
        saved.append(meter.peak)
    _assert_same_state(plain, other)
    assert saved[1] > 2 * 4 * 6 * 6 * 4  # the batch norm kept its (changed) input


def test_retain_graph_backward_twice():
    torch.manual_seed(5)
    plain = _conv_bn(nn.BatchNorm2d(5))
    other = copy.deepcopy(plain)
    pack_spike_inputs(other, recompute=True)
    x = torch.randn(3, 3, 7, 7) * 2
    for net in (plain, other):
        loss = net(x).square().sum()
        loss.backward(retain_graph=True)
        loss.backward()
    _assert_same_state(plain, other)


def test_report_says_what_is_rebuilt_and_why_not():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.sn = LIFNode(step_mode="s")
            self.conv_a = nn.Conv2d(2, 2, 1)
            self.bn_a = nn.BatchNorm2d(2)  # conv output: rebuilt
            self.conv_b = nn.Conv2d(2, 2, 1)
            self.bn_b = nn.BatchNorm2d(2)  # after a ReLU: kept
            self.fc = nn.Linear(2, 3)
            self.bn_c = nn.BatchNorm1d(3)  # after a linear layer: kept
            self.bn_d = nn.BatchNorm2d(2)  # the model's input: kept
            self.bn_e = nn.BatchNorm2d(2)  # never called
            self.bn_f = nn.BatchNorm2d(2)  # a sum with a tensor no conv saves: kept
            self.add = R.ResidualAdd()

        def forward(self, x):
            s = self.sn(x)
            a = self.bn_a(self.conv_a(s))
            b = self.bn_b(torch.relu(self.conv_b(s)))
            c = self.bn_c(self.fc(s.mean((2, 3))))
            f = self.bn_f(self.add(self.conv_a(s), self.sn(x)))
            return a.sum() + b.sum() + c.sum() + self.bn_d(x).sum() + f.sum()

    net = Net()
    report = pack_spike_inputs(net, recompute=True)
    rebuilt = {p: src for p, _, src in report.recomputed}
    kept = {p: why for p, _, why in report.kept}
    assert rebuilt == {"bn_a": "conv_a (its 1-bit input)"}
    assert "the result of relu" in kept["bn_b"]
    assert "Linear, not a convolution" in kept["bn_c"]
    assert "model's input" in kept["bn_d"]
    assert "not called" in kept["bn_e"]
    assert "no convolution saves" in kept["bn_f"]
    text = str(report)
    assert "recomputed the input of 1 batch norm(s) in backward, left 5 saving it" in text
    assert "bn_a: BatchNorm2d saves its mean and inverse std; its input is recomputed from conv_a" in text
    assert R.is_recomputing(net.bn_a) and not R.is_recomputing(net.bn_b)
    assert "recomputed" not in str(pack_spike_inputs(Net()))  # recompute=False: the report as before
    net(torch.randn(4, 2, 5, 5)).backward()


def test_untraceable_forward_keeps_its_batch_norms():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    net = nn.Sequential(LIFNode(step_mode="s"), Branchy())
    report = pack_spike_inputs(net, recompute=True)
    assert "could not be traced" in dict((p, w) for p, _, w in report.kept)["1.bn"]


def test_switch_errors():
    with pytest.raises(ValueError, match="recompute=True needs pack_spike_inputs=True"):
        models.spiking_resnet18(width=4, recompute=True)
    with pytest.raises(TypeError, match="recompute must be a bool"):
        pack_spike_inputs(nn.Conv2d(1, 1, 1), recompute="yes")
    net = models.nf_resnet34(num_classes=3, width=4, pack_spike_inputs=True, recompute=True)  # no batch norm
    assert not any(R.is_recomputing(m) for m in net.modules())


def test_recompute_model_pickles_and_copies():
    torch.manual_seed(6)
    net = models.spiking_resnet18(width=4, neuron=_neuron("rect", "sltt"), pack_spike_inputs=True, recompute=True)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert type(again.layers[0][0].bn1) is type(net.layers[0][0].bn1)
    assert R.is_recomputing(again.bn) and again.conv1.module.spike_pack_dense
    x = torch.randn(2, 3, 8, 8)
    for m in (net, again, copy.deepcopy(net)):
        sltt_kernels.nn.reset_net(m)
    outs = [m(x) for m in (net, again)]
    assert torch.equal(outs[0], outs[1])


def test_step_batch_norm_multistep_views():
    """StepBatchNorm2d in step_mode='m' saves one view per step of a single conv output."""
    torch.manual_seed(7)
    plain = nn.Sequential(LIFNode(step_mode="m", surrogate_function=Rect()),
                          FoldTime(nn.Conv2d(3, 4, 3, padding=1), step_mode="m"), StepBatchNorm2d(4, step_mode="m"))
    other = copy.deepcopy(plain)
    assert [p for p, _, _ in pack_spike_inputs(other, recompute=True).recomputed] == ["2"]
    x = torch.randn(4, 2, 3, 6, 6) * 2
    for net in (plain, other):
        net(x).square().sum().backward()
    _assert_same_state(plain, other)


def test_saved_tensor_hooks_disabled_saves_the_input():
    """Where saved-tensor hooks are switched off, the batch norm saves its input, as the plain one."""
    torch.manual_seed(8)
    plain = _conv_bn(nn.BatchNorm2d(5))
    other = copy.deepcopy(plain)
    pack_spike_inputs(other, recompute=True)
    x = torch.randn(2, 3, 6, 6) * 2
    with torch.autograd.graph.disable_saved_tensors_hooks("not here"):
        for net in (plain, other):
            net(x).square().sum().backward()
    _assert_same_state(plain, other)
