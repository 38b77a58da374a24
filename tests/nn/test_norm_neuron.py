"""batch_norm_neuron and fuse_norm_neurons: a batch norm's apply inside the neuron kernel
(sltt_kernels/_norm_neuron.py, docs/design.md, section 4.3).

The oracle is the plain pair neuron(bn(x)) with aten's batch norm. In float64 the fused path
rounds differently only in the last bits, far from any spike decision on these inputs, so spikes
are equal and gradients, running statistics and parameters agree to 1e-10; num_batches_tracked is
equal. In float32 the fused path equals, bit for bit, the neuron run on x * scale + shift computed
in PyTorch from the same statistics. Where the pair cannot be fused, the result is the plain one,
bit for bit."""

import copy
import random

import pytest
import torch
from torch import nn

from helpers import KERNEL_BACKENDS, DEVICE_OF
from sltt_kernels import models, training
from sltt_kernels.memory import SavedTensorMeter
from sltt_kernels.nn import (IFNode, LIFNode, PaperLIFNode, StepBatchNorm2d, batch_norm_neuron,
                             fuse_norm_neurons)
from sltt_kernels.surrogate import Rect


@pytest.fixture
def fused_calls(monkeypatch):
    """How many calls took the fused path (ops.run_norm_neuron), so that no test passes by
    falling back to the plain pair unseen."""
    import sltt_kernels.ops as ops_module

    calls = []
    original = ops_module.run_norm_neuron

    def counting(*args, **kwargs):
        calls.append(kwargs.get("which"))
        return original(*args, **kwargs)

    monkeypatch.setattr(ops_module, "run_norm_neuron", counting)
    return calls


def _pair(neuron, bn, backend, fused: bool):
    bn, neuron = copy.deepcopy(bn), copy.deepcopy(neuron)
    neuron.backend = backend
    fuse_norm_neurons(bn, fused)
    return bn, neuron


NEURONS = {
    "paper-rect-sltt": lambda: PaperLIFNode(surrogate_function=Rect(), grad_mode="sltt"),
    "paper-triangle-sltt": lambda: PaperLIFNode(grad_mode="sltt"),
    "lif-hard-sigmoid-bptt": lambda: LIFNode(tau=2.0, v_reset=0.0),
    "if-soft-atan-bptt": lambda: IFNode(v_reset=None, surrogate_function="atan"),
}

BNS = {
    "train": lambda C: nn.BatchNorm2d(C),
    "train-momentum-none": lambda C: nn.BatchNorm2d(C, momentum=None),
    "train-untracked": lambda C: nn.BatchNorm2d(C, track_running_stats=False),
    "no-affine": lambda C: nn.BatchNorm2d(C, affine=False),
    "eval": lambda C: nn.BatchNorm2d(C).eval(),
    "step-bn": lambda C: StepBatchNorm2d(C),
}


def _randomise(bn: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if bn.weight is not None:
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.3)
        if bn.running_mean is not None:
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.2)
            bn.running_var.copy_(0.5 + torch.rand(bn.running_var.shape, generator=g))
    return bn


def _run_steps(bn, neuron, xs, gs, dtype):
    """T steps of neuron(bn(x_t)) (BPTT through the state where the neuron keeps it), one backward
    of sum(spikes * gs); returns (spikes, [x grads], {param: grad}, buffers)."""
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    neuron.reset()
    loss = 0
    spikes = []
    for x, g in zip(xs, gs):
        s = batch_norm_neuron(bn, neuron, x)
        spikes.append(s)
        loss = loss + (s * g).sum()
    grads = {}
    if loss.requires_grad:
        loss.backward()
        grads = {n: p.grad.clone() for n, p in bn.named_parameters() if p.grad is not None}
    return torch.stack(spikes), [x.grad for x in xs], grads, {n: b.clone() for n, b in bn.named_buffers()}


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("neuron", list(NEURONS))
@pytest.mark.parametrize("bn_kind", list(BNS))
def test_fused_equals_plain_float64(backend, neuron, bn_kind, seed, fused_calls):
    device = DEVICE_OF[backend]
    T, B, C, H, W = 3, 4, 5, 3, 7
    g = torch.Generator().manual_seed(seed)
    xs = [(torch.randn(B, C, H, W, generator=g, dtype=torch.float64) * 1.3 + 0.4).to(device) for _ in range(T)]
    gs = [torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(device) for _ in range(T)]
    bn0 = _randomise(BNS[bn_kind](C), seed).double().to(device)
    sn0 = NEURONS[neuron]()
    plain = _run_steps(*_pair(sn0, bn0, backend, False), xs, gs, torch.float64)
    assert fused_calls == []
    fused_bn, fused_sn = _pair(sn0, bn0, backend, True)
    fused = _run_steps(fused_bn, fused_sn, xs, gs, torch.float64)
    assert fused_calls == [backend] * T
    assert torch.equal(plain[0], fused[0])  # spikes
    for a, b in zip(plain[1], fused[1]):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    assert plain[2].keys() == fused[2].keys()
    for name in plain[2]:
        torch.testing.assert_close(fused[2][name], plain[2][name], rtol=1e-10, atol=1e-10, msg=name)
    assert plain[3].keys() == fused[3].keys()
    for name in plain[3]:
        if name == "num_batches_tracked":
            assert torch.equal(plain[3][name], fused[3][name])
        else:
            torch.testing.assert_close(fused[3][name], plain[3][name], rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_float32_is_the_neuron_on_scale_and_shift(backend, channels_last, seed, fused_calls):
    """Bit for bit in float32: the spikes and state are the neuron's on x * scale + shift with
    scale and shift from the two-pass statistics (the mean, then the mean square about it), and the
    running statistics follow aten's update rule computed in double."""
    device = DEVICE_OF[backend]
    B, C, H, W = 4, 6, 5, 3
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g).to(device) * 1.5 + 0.3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    bn = _randomise(nn.BatchNorm2d(C), seed).to(device)
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    sn = PaperLIFNode(grad_mode="sltt", backend=backend)
    fuse_norm_neurons(bn)
    s = batch_norm_neuron(bn, sn, x.requires_grad_(True))
    assert fused_calls == [backend]
    mean = x.detach().mean((0, 2, 3), keepdim=True)
    var = (x.detach() - mean).square().mean((0, 2, 3))
    mean = mean.view(C)
    scale = bn.weight.detach() * torch.rsqrt(var + bn.eps)
    shift = bn.bias.detach() - mean * scale
    u = x.detach() * scale.view(1, C, 1, 1) + shift.view(1, C, 1, 1)
    ref = PaperLIFNode(grad_mode="sltt", backend=backend)
    assert torch.equal(s, ref(u))
    assert torch.equal(sn.v, ref.v)
    n = B * H * W
    assert torch.equal(bn.running_mean, (0.1 * mean.double() + 0.9 * rm0.double()).float())
    assert torch.equal(bn.running_var, (0.1 * var.double() * n / (n - 1) + 0.9 * rv0.double()).float())
    s.sum().backward()
    assert x.grad is not None and bn.weight.grad is not None


def _resnet(fuse, recompute=False, neuron="rect"):
    torch.manual_seed(0)
    kw = {} if neuron == "triangle" else dict(surrogate_function=Rect())
    return models.spiking_resnet18(neuron=lambda: PaperLIFNode(grad_mode="sltt", **kw), width=4,
                                   pack_spike_inputs=recompute, recompute=recompute, fuse_norm=fuse).double()


@pytest.mark.parametrize("neuron", ["rect", "triangle"])
@pytest.mark.parametrize("method", ["sltt", "sltt-k"])
def test_resnet_fused_trains_as_plain(neuron, method, fused_calls):
    """One SLTT (or SLTT-K) step of ResNet-18 in float64: the fused model's parameters after the
    optimizer step, running statistics and num_batches_tracked are the plain model's (to 1e-9),
    with and without recompute; the fused path saves no more than the plain one."""
    x, y = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.tensor([1, 4, 0])
    nets, saved = {}, {}
    for name, fuse, recompute in [("plain", False, False), ("fused", True, False), ("plain-rc", False, True),
                                  ("fused-rc", True, True)]:
        nets[name] = _resnet(fuse, recompute, neuron)
        opt = torch.optim.SGD(nets[name].parameters(), lr=0.1, momentum=0.9)
        with SavedTensorMeter(nets[name]) as meter:
            training.sltt_step(nets[name], opt, x, y, 2, K=1 if method == "sltt-k" else None,
                               generator=random.Random(3))
        saved[name] = meter.peak
        # 17 batch norms per step, 2 steps, in the fused models (SLTT-K's no-grad steps too)
        assert len(fused_calls) == (34 if fuse else 0), name
        fused_calls.clear()
    plain = dict(nets["plain"].named_parameters())
    for other in ("fused", "fused-rc"):
        for name, p in nets[other].named_parameters():
            torch.testing.assert_close(p, plain[name], rtol=1e-9, atol=1e-9, msg=f"{other} {name}")
        buffers = dict(nets["plain"].named_buffers())
        for name, b in nets[other].named_buffers():
            if name.endswith("num_batches_tracked"):
                assert torch.equal(b, buffers[name]), name
            else:
                torch.testing.assert_close(b, buffers[name], rtol=1e-9, atol=1e-12, msg=name)
    assert saved["fused"] <= saved["plain"] and saved["fused-rc"] <= saved["plain-rc"]
    assert saved["fused-rc"] < 0.5 * saved["fused"]


def test_state_dict_and_fallbacks_are_plain(seed, fused_calls):
    """The fused model's state_dict has the plain model's keys; where a pair cannot be fused
    (store_v_seq, a forward hook, a 16-bit input, a multi-step StepBatchNorm2d, a learnable
    threshold-free parametric LIF is fused but a per-neuron threshold is not) the result is
    neuron(bn(x)) bit for bit."""
    assert _resnet(True).state_dict().keys() == _resnet(False).state_dict().keys()
    x = torch.randn(4, 3, 5, 5)
    cases = []
    sn = LIFNode(store_v_seq=True)
    cases.append((nn.BatchNorm2d(3), sn, x))
    bn = nn.BatchNorm2d(3)
    bn.register_forward_hook(lambda m, i, o: o * 2)
    cases.append((bn, LIFNode(), x))
    cases.append((nn.BatchNorm2d(3).to(torch.bfloat16), LIFNode(), x.to(torch.bfloat16)))
    cases.append((StepBatchNorm2d(3, step_mode="m"), LIFNode(step_mode="m"), x.view(2, 2, 3, 5, 5)))
    for bn, sn, inp in cases:
        plain_bn, plain_sn = copy.deepcopy(bn), copy.deepcopy(sn)
        fuse_norm_neurons(bn)
        got = batch_norm_neuron(bn, sn, inp)
        assert torch.equal(got, plain_sn(plain_bn(inp)))
        assert fused_calls == []
        for (name, a), b in zip(bn.named_buffers(), plain_bn.buffers()):
            assert torch.equal(a, b), name


def test_batch_of_one_value_per_channel_is_refused():
    bn, sn = nn.BatchNorm2d(3), LIFNode()
    fuse_norm_neurons(bn)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm_neuron(bn, sn, torch.randn(1, 3, 1, 1))


def test_fuse_norm_neurons_arguments():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        fuse_norm_neurons("resnet")
    with pytest.raises(TypeError, match="enabled must be a bool"):
        fuse_norm_neurons(nn.BatchNorm2d(3), enabled=1)
    assert fuse_norm_neurons(_resnet(False)) == 17
    with pytest.raises(TypeError, match="fuse_norm must be a bool"):
        models.spiking_resnet18(width=4, fuse_norm="yes")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
def test_ops_multistep_norm_is_batch_norm_over_time_and_batch(backend, grad, seed):
    """ops.run_neuron(multistep=True, norm=...): the batch norm sees [T * B, C, ...] (one set of
    statistics for all steps), as F.batch_norm on the flattened input; float64, against the
    reference backend (aten's batch norm and the reference neuron), gradients included."""
    from sltt_kernels.neurons.lif import lif_config
    from sltt_kernels.ops import BatchNormInput, run_neuron

    device = DEVICE_OF[backend]
    cfg = lif_config(tau=2.0, v_threshold=1.0, v_reset=None, decay_input=True, detach_reset=False,
                     surrogate="sigmoid", grad=grad)
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.randn(3, 4, 5, 2, 3, generator=g, dtype=torch.float64) * 1.4 + 0.3).to(device)
    w0 = (0.5 + torch.rand(5, generator=g, dtype=torch.float64)).to(device)
    b0 = (torch.randn(5, generator=g, dtype=torch.float64) * 0.3).to(device)
    gs = torch.randn(x0.shape, generator=g, dtype=torch.float64).to(device)

    def run(which):
        x, w, b = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        rm, rv = torch.zeros(5, dtype=torch.float64, device=device), torch.ones(5, dtype=torch.float64, device=device)
        s, v = run_neuron(cfg, x, None, multistep=True, backend=which,
                          norm=BatchNormInput(w, b, rm, rv, True, 0.1, 1e-5))
        (s * gs).sum().backward()
        return s, v, x.grad, w.grad, b.grad, rm, rv

    for got, want in zip(run(backend), run("reference")):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_norm_input_values_are_checked():
    from sltt_kernels.neurons.lif import lif_config
    from sltt_kernels.ops import BatchNormInput, run_neuron

    cfg = lif_config(tau=2.0, v_threshold=1.0, v_reset=None, decay_input=True, detach_reset=False,
                     surrogate="sigmoid", grad="sltt")
    x = torch.randn(4, 3, 2, 2)
    ok = dict(weight=torch.ones(3), bias=torch.zeros(3), running_mean=torch.zeros(3), running_var=torch.ones(3),
              batch_stats=True, momentum=0.1, eps=1e-5)
    for change, error, match in [
        (dict(weight=torch.ones(4)), ValueError, r"norm.weight must be a \[3\] tensor"),
        (dict(bias=torch.zeros(3, dtype=torch.float64)), ValueError, "norm.bias must be a"),
        (dict(running_var=None), ValueError, "running_mean and running_var are given together"),
        (dict(running_mean=None, running_var=None, batch_stats=False), ValueError, "are needed without batch_stats"),
        (dict(momentum=None), TypeError, "norm.momentum must be a number"),
        (dict(momentum=-0.1), ValueError, "norm.momentum must be a finite number >= 0"),
        (dict(eps=0.0), ValueError, "norm.eps must be a finite number > 0"),
        (dict(batch_stats=1), TypeError, "norm.batch_stats must be a bool"),
    ]:
        with pytest.raises(error, match=match):
            run_neuron(cfg, x, None, multistep=False, backend="cpu", norm=BatchNormInput(**dict(ok, **change)))
    with pytest.raises(ValueError, match="takes no k or threshold tensor"):
        run_neuron(cfg, x, None, multistep=False, threshold=torch.ones(()), norm=BatchNormInput(**ok))


def test_global_hooks_and_multistep_take_the_plain_pair(fused_calls):
    x = torch.randn(4, 3, 5, 5)
    bn, sn = nn.BatchNorm2d(3), LIFNode()
    fuse_norm_neurons(bn)
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
    try:
        batch_norm_neuron(bn, sn, x)
    finally:
        handle.remove()
    assert fused_calls == [] and seen == ["BatchNorm2d", "LIFNode"]
    batch_norm_neuron(bn, sn, x)
    assert len(fused_calls) == 1
    with pytest.raises(ValueError, match="expected 4D input"):  # what the plain pair says for [T, B, C, H, W]
        batch_norm_neuron(bn, LIFNode(step_mode="m"), x.view(1, 4, 3, 5, 5))


@pytest.mark.parametrize("train", [True, False])
def test_empty_batch_is_the_plain_pairs(train, fused_calls):
    """An empty batch: what neuron(bn(x)) gives (empty outputs, an empty gradient), in training and
    in eval (aten's batch-norm backward would fail on it, so the fused path steps aside)."""
    x = torch.randn(0, 5, 3, 3, requires_grad=True)
    bn, sn = nn.BatchNorm2d(5).train(train), LIFNode()
    plain_bn, plain_sn = copy.deepcopy(bn), copy.deepcopy(sn)
    fuse_norm_neurons(bn)
    s = batch_norm_neuron(bn, sn, x)
    s.sum().backward()
    assert s.shape == (0, 5, 3, 3) and x.grad.shape == (0, 5, 3, 3)
    assert torch.equal(s, plain_sn(plain_bn(x.detach())))


def test_a_neuron_with_its_own_steps_is_called_as_it_is(fused_calls):
    class Halved(LIFNode):
        def single_step_forward(self, x):
            return super().single_step_forward(x) * 0.5

    class OldStep(LIFNode):
        def _step(self, x, states):  # a subclass written before the norm argument existed
            return super()._step(x, states)

    x = torch.randn(4, 3, 5, 5) + 1.0
    for cls in (Halved, OldStep):
        bn, sn = nn.BatchNorm2d(3), cls()
        want = copy.deepcopy(sn)(copy.deepcopy(bn)(x))
        fuse_norm_neurons(bn)
        assert torch.equal(batch_norm_neuron(bn, sn, x), want)
    assert fused_calls == []
