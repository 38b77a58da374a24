"""Spike packing: the pack/unpack ops on every backend, the layers that save spike inputs as bits
(bit-identical gradients, fewer saved bytes, exact dense fallback), and pack_spike_inputs."""

import copy
import importlib
import io
import pickle

import pytest
import torch
from torch import nn

import sltt_kernels
from sltt_kernels import _registration
from sltt_kernels.memory import SavedTensorMeter
from sltt_kernels.nn import FoldTime, TimeDropout
from sltt_kernels.nn import packed as P

from helpers import DEVICE_OF, HAVE_EXT, KERNEL_BACKENDS, needs_ext, unpack_bits

BACKENDS = KERNEL_BACKENDS + [pytest.param("reference", id="reference")]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
SIZES = [0, 1, 31, 32, 33, 1000, 4099]


def _spikes(shape, dtype=torch.float32, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(dtype)


def _ops(backend):
    x = torch.zeros(1, device=DEVICE_OF.get(backend, "cpu"))
    return P._ops(x, backend)


# ---------------------------------------------------------------------------------------------
# The ops


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", SIZES)
def test_pack_roundtrip_spikes(backend, dtype, n):
    dev = DEVICE_OF.get(backend, "cpu")
    pack, unpack = _ops(backend)
    x = _spikes((n,), dtype, seed=n).to(dev)
    bits, scale = pack(x)
    assert bits.dtype == torch.int32 and bits.shape == ((n + 31) // 32,)
    assert scale.dtype == dtype and scale.dim() == 0 and scale.item() == 1.0
    assert torch.equal(unpack_bits(bits.cpu().reshape(1, -1), n)[0], x.cpu() != 0)
    if bits.numel():  # bits past n are zero
        assert (bits.cpu()[-1].item() & 0xFFFFFFFF) >> (n - 32 * (bits.numel() - 1)) == 0 or n % 32 == 0
    y = unpack(bits, scale, [n])
    assert y.dtype == dtype and torch.equal(y.cpu(), x.cpu())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_pack_scale_and_verdict(backend, dtype):
    dev = DEVICE_OF.get(backend, "cpu")
    pack, unpack = _ops(backend)
    s = _spikes((3, 5, 77), dtype).to(dev)
    keep = torch.full((), 1.0, dtype=dtype) / 0.7  # what a dropout with p = 0.3 multiplies by
    cases = {
        "dropout": (s * keep.to(dev), keep.item()),
        "gain": (s * 2.74, (torch.tensor(2.74, dtype=dtype)).item()),
        "negative": (torch.where(s.bool(), -1.0, 0.0).to(dtype), -1.0),  # not -s: that holds -0.0
        "zeros": (torch.zeros(70, dtype=dtype, device=dev), 1.0),
        "inf": (torch.where(s.bool(), float("inf"), 0.0).to(dtype), float("inf")),
        "negative zeros": (torch.where(s.bool(), -0.0, 0.0).to(dtype), -0.0),  # unpacks to the bit
    }
    for name, (x, want) in cases.items():
        bits, scale = pack(x)
        assert scale.item() == want and torch.signbit(scale).item() == (str(want)[0] == "-"), name
        assert torch.equal(unpack(bits, scale, list(x.shape)).cpu(), x.cpu()), name
    bad = {
        "three values": s + s * torch.arange(77, device=dev).remainder(2).to(dtype),
        "dense": torch.randn(100, device=dev).to(dtype),
        "nan": torch.where(s.bool(), s, torch.full_like(s, float("nan"))),
        "negative zero": torch.where(s.bool(), s, torch.full_like(s, -0.0)),
        "one nan among spikes": torch.cat([s.flatten(), torch.tensor([float("nan")], dtype=dtype, device=dev)]),
    }
    for name, x in bad.items():
        assert torch.isnan(pack(x)[1]).item(), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_pack_reads_logical_order_of_noncontiguous_input(backend):
    dev = DEVICE_OF.get(backend, "cpu")
    pack, unpack = _ops(backend)
    x = _spikes((40, 33)).to(dev)
    for view in (x.t(), x[:, ::2], x.t()[1:]):
        bits, scale = pack(view)
        assert torch.equal(unpack(bits, scale, list(view.shape)).cpu(), view.cpu())


@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if b.id != "cpu"] + [pytest.param("reference", id="reference")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@needs_ext
def test_backends_agree_with_cpu_kernel(backend, dtype):
    dev = DEVICE_OF.get(backend, "cpu")
    pack, _ = _ops(backend)
    cpu_pack, _ = _ops("cpu")
    for x in (_spikes((5000,), dtype), torch.randn(333).to(dtype), _spikes((64,)).to(dtype) * 3):
        b1, s1 = pack(x.to(dev))
        b0, s0 = cpu_pack(x)
        assert torch.equal(b1.cpu(), b0)
        assert torch.equal(s1.cpu(), s0) or (torch.isnan(s1).item() and torch.isnan(s0).item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_reject_bad_input(backend):
    dev = DEVICE_OF.get(backend, "cpu")
    pack, unpack = _ops(backend)
    with pytest.raises(TypeError, match="x must be float16, bfloat16, float32 or float64"):
        pack(torch.ones(4, dtype=torch.int32, device=dev))
    bits, scale = pack(_spikes((70,)).to(dev))
    with pytest.raises(TypeError, match="bits must be int32"):
        unpack(bits.long(), scale, [70])
    with pytest.raises(TypeError, match="scale must be"):
        unpack(bits, scale.long(), [70])
    with pytest.raises(ValueError, match="scale must be a 0-dim"):
        unpack(bits, scale.reshape(1), [70])
    with pytest.raises((ValueError, RuntimeError), match=r"bits must have shape \[2\]"):
        unpack(bits, scale, [60])  # 60 elements need 2 words, bits has 3
    with pytest.raises((ValueError, RuntimeError), match=r"bits must have shape"):
        unpack(bits.reshape(3, 1), scale, [70])
    with pytest.raises((ValueError, RuntimeError), match="shape must not be negative"):
        unpack(bits, scale, [-70])


@needs_ext
def test_native_ops_reject_wrong_device():
    bits, scale = P.spike_pack(_spikes((40,)))
    with pytest.raises((ValueError, RuntimeError, NotImplementedError), match="device|meta"):
        torch.ops.sltt_kernels.spike_unpack(bits, scale.to("meta"), [40])


@pytest.mark.parametrize("triton", [pytest.param(False, marks=needs_ext), True], ids=["native", "triton"])
def test_opcheck(triton):
    if triton:
        if sltt_kernels.available_backends()["triton"] is not None:
            pytest.skip("Triton unavailable")
        importlib.import_module("sltt_kernels.triton.pack")
    dev = DEVICE_OF["triton"] if triton else "cpu"
    pack = _registration.op("spike_pack", triton)
    unpack = _registration.op("spike_unpack", triton)
    x = _spikes((3, 70)).to(dev)
    torch.library.opcheck(pack, (x,))
    torch.library.opcheck(pack, (x * 2.5,))
    torch.library.opcheck(pack, (torch.zeros(0, device=dev),))
    bits, scale = pack(x)
    torch.library.opcheck(unpack, (bits, scale, [3, 70]))
    torch.library.opcheck(unpack, (bits, scale.clone().requires_grad_(True), [3, 70]))


@needs_ext
def test_unpack_gradient_wrt_scale():
    bits, scale = P.spike_pack(_spikes((50,), torch.float64))
    s = (scale * 1.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: torch.ops.sltt_kernels.spike_unpack(bits, t, [50]), (s,))


@needs_ext
def test_ops_under_torch_compile_fullgraph():
    pack, unpack = torch.ops.sltt_kernels.spike_pack, torch.ops.sltt_kernels.spike_unpack

    def roundtrip(x):
        bits, scale = pack(x * 2.0)
        return unpack(bits, scale, x.shape) + 1.0

    x = _spikes((4, 40))
    compiled = torch.compile(roundtrip, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), x * 2 + 1)


# ---------------------------------------------------------------------------------------------
# The layers: bit-identical gradients, saved bytes, fallback


def _grads(layer, x, seed=5):
    x = x.detach().clone().requires_grad_(True)
    with SavedTensorMeter(layer) as meter:
        y = layer(x)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
        y.backward(g)
    return y.detach(), [x.grad] + [p.grad for p in layer.parameters()], meter.peak


def _compare(dense, packed, x, exact_saved=None):
    y0, g0, saved0 = _grads(dense, x)
    y1, g1, saved1 = _grads(packed, x)
    assert torch.equal(y0, y1)
    for a, b in zip(g0, g1):
        assert a is not None and torch.equal(a, b)
    return saved0, saved1


def _packed_copy(layer, backend="auto"):
    packed = copy.deepcopy(layer)
    packed.__class__ = P._packed_class(type(layer))
    packed.spike_pack_backend = backend
    return packed


LAYER_BACKENDS = [b for b in KERNEL_BACKENDS] + [pytest.param("reference", id="reference")]


@pytest.mark.parametrize("backend", LAYER_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["conv2d", "conv1d", "conv3d", "linear", "linear3d"])
def test_packed_layer_gradients_bit_identical(backend, dtype, kind):
    dev = DEVICE_OF.get(backend, "cpu")
    torch.manual_seed(0)
    layer, shape = {
        "conv2d": (nn.Conv2d(5, 7, 3, stride=2, padding=1, groups=1), (3, 5, 13, 11)),
        "conv1d": (nn.Conv1d(6, 4, 5, padding=2, dilation=2, groups=2), (2, 6, 37)),
        "conv3d": (nn.Conv3d(3, 4, 2, bias=False), (2, 3, 5, 6, 7)),
        "linear": (nn.Linear(77, 9), (13, 77)),
        "linear3d": (nn.Linear(33, 5), (4, 3, 33)),
    }[kind]
    layer = layer.to(dev, dtype)
    x = _spikes(shape, dtype).to(dev)
    saved0, saved1 = _compare(layer, _packed_copy(layer, backend), x)
    n = x.numel()
    bias_bytes = 4 * 9 * (dtype.itemsize // 2) if kind == "linear" else 0
    assert saved0 >= n * dtype.itemsize  # the dense layer keeps the input
    assert saved1 <= (n + 31) // 32 * 4 + 64 + saved0 - n * dtype.itemsize + bias_bytes + 5 * 4 * 9


@pytest.mark.parametrize("kind", ["channels_last", "sliced", "transposed_linear", "empty", "reflect", "same"])
def test_packed_layer_odd_inputs(kind):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    s = _spikes((2, 4, 9, 10))
    if kind == "channels_last":
        layer, x = conv, s.contiguous(memory_format=torch.channels_last)
    elif kind == "sliced":
        layer, x = conv, _spikes((2, 8, 9, 21))[:, ::2, :, 3:13]
    elif kind == "transposed_linear":
        layer, x = nn.Linear(9, 3), _spikes((9, 17)).t()
    elif kind == "empty":
        layer, x = conv, _spikes((0, 4, 9, 10))
    elif kind == "reflect":
        layer, x = nn.Conv2d(4, 6, 3, padding=2, padding_mode="reflect"), s
    else:
        layer, x = nn.Conv2d(4, 6, 3, padding="same"), s
    packed = _packed_copy(layer)
    _compare(layer, packed, x)
    if kind != "empty":
        assert packed._spike_pack_calls == [1, 0]


def test_non_binary_input_falls_back_exactly():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 5, 3)
    packed = _packed_copy(conv)
    for x in (torch.randn(2, 3, 8, 8), _spikes((2, 3, 8, 8)) * torch.arange(8.0)):
        saved0, saved1 = _compare(conv, packed, x)
        assert saved1 == saved0  # saved dense, as the plain layer saves it
    assert packed._spike_pack_calls == [0, 2]


def test_dropout_scaled_spikes_pack_with_their_scale():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3)
    x = TimeDropout(0.3)(_spikes((2, 3, 8, 8), p=0.6))
    assert len(torch.unique(x)) == 2 and x.max().item() != 1.0
    saved0, saved1 = _compare(conv, _packed_copy(conv), x)
    assert saved1 < saved0 / 16


def test_no_packing_without_grad_or_for_frozen_weights():
    conv = _packed_copy(nn.Conv2d(3, 5, 3))
    x = _spikes((2, 3, 8, 8))
    with torch.no_grad():
        conv(x)
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)
    conv(x.requires_grad_(True)).sum().backward()
    assert conv.__dict__.get("_spike_pack_calls") is None


def test_autocast_bfloat16_gradients_bit_identical():
    torch.manual_seed(4)
    conv, fc = nn.Conv2d(3, 5, 3), nn.Linear(20, 4)
    for layer, x in ((conv, _spikes((2, 3, 8, 8))), (fc, _spikes((6, 20)))):
        packed = _packed_copy(layer)
        outs = []
        for m in (layer, packed):
            m.zero_grad()
            xx = x.clone().requires_grad_(True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = m(xx)
            y.float().sum().backward()
            outs.append((y, xx.grad, [p.grad for p in m.parameters()]))
        assert outs[0][0].dtype == torch.bfloat16 and torch.equal(outs[0][0], outs[1][0])
        assert torch.equal(outs[0][1], outs[1][1])
        for a, b in zip(outs[0][2], outs[1][2]):
            assert torch.equal(a, b)
        assert packed._spike_pack_calls == [1, 0]


# ---------------------------------------------------------------------------------------------
# pack_spike_inputs on whole models


def _train_grads(net, x, steps=2):
    """Gradients of a few online steps (the neurons keep state across steps)."""
    sltt_kernels.nn.reset_net(net)
    net.zero_grad()
    with SavedTensorMeter(net) as meter:
        for t in range(steps):
            torch.manual_seed(100 + t)  # same dropout masks in both nets
            net(x).square().mean().backward()
    sltt_kernels.nn.reset_net(net)
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}, meter.peak


@needs_ext
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_resnet_packed_bit_identical_and_smaller(step_mode):
    torch.manual_seed(0)
    net = sltt_kernels.models.spiking_resnet18(width=8, step_mode=step_mode, dropout=0.2)
    packed = copy.deepcopy(net)
    report = P.pack_spike_inputs(packed)
    paths = dict(report.packed)
    dense = {p: why for p, _, why in report.dense}
    assert "layers.0.0.conv1.module" in paths and "layers.0.0.conv2.module" in paths
    assert "layers.1.0.shortcut.module" in paths
    assert "conv1.module" in dense and "model's input" in dense["conv1.module"]
    assert "fc.module" in dense and "AdaptiveAvgPool2d 'pool.module.0'" in dense["fc.module"]
    assert len(report.packed) == 19 and len(report.dense) == 2
    x = torch.randn(2, 2, 3, 16, 16) if step_mode == "m" else torch.randn(2, 3, 16, 16)
    g0, saved0 = _train_grads(net, x)
    g1, saved1 = _train_grads(packed, x)
    assert g0.keys() == g1.keys()
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    assert saved1 < 0.8 * saved0
    calls = P.spike_pack_calls(packed)
    assert all(d == 0 and p > 0 for p, d in calls.values()), calls
    assert "packed spike inputs of 19 layer(s), left 2 dense" in str(report)


@needs_ext
def test_vgg_ws_with_dropout_and_gain_packs_and_pickles():
    torch.manual_seed(0)
    net = sltt_kernels.models.vgg11_ws(num_classes=5, in_channels=2, width=8, dropout=0.3)
    packed = copy.deepcopy(net)
    report = P.pack_spike_inputs(packed)
    # within a stage the second conv reads dropout(2.74 * spikes); a stage's first reads AvgPool
    assert {p for p, _ in report.packed} == {"features.14", "features.23", "features.32"}
    x = torch.randn(2, 2, 32, 32)
    g0, _ = _train_grads(net, x)
    g1, _ = _train_grads(packed, x)
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    assert all(d == 0 and p > 0 for p, d in P.spike_pack_calls(packed).values())
    buf = io.BytesIO()
    torch.save(packed, buf)  # the dynamic packed subclass of PaperWSConv2d pickles by name
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert type(again.features[14]) is type(packed.features[14])
    assert pickle.loads(pickle.dumps(P._packed_class(nn.Conv2d))) is P.PackedConv2d


def test_untraceable_forward_and_unknown_inputs_stay_dense():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.sn = sltt_kernels.nn.LIFNode()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            s = self.sn(x)
            return self.conv(s) if x.sum() > 0 else s  # data-dependent: fx cannot follow

    class Spare(nn.Module):
        def __init__(self):
            super().__init__()
            self.sn = sltt_kernels.nn.LIFNode()
            self.fc = nn.Linear(3, 3)  # never called

        def forward(self, x):
            return self.sn(x)

    net = nn.Sequential(nn.Conv2d(2, 2, 1), Branchy(), nn.Sequential(sltt_kernels.nn.LIFNode(), FoldTime(nn.Conv2d(2, 2, 1))),
                        nn.Conv2d(2, 2, 1, padding="same", dilation=1), Spare())
    report = P.pack_spike_inputs(net)
    assert [p for p, _ in report.packed] == ["2.1.module"]
    dense = {p: why for p, _, why in report.dense}
    assert "could not be traced" in dense["1.conv"]
    assert "not known to be spikes" in dense["0"] and "not known to be spikes" in dense["3"]
    assert "not called" in dense["4.fc"]
    assert isinstance(net[2][1].module, P.PackedConv2d)


# ---------------------------------------------------------------------------------------------
# The kernel sources compile alone (no torch header), as tests/build/test_cuda_build.py checks the neurons'

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "csrc")


def _nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


@pytest.mark.skipif(_nvcc() is None or not os.path.isdir(CSRC), reason="nvcc or csrc/ not found")
def test_cuda_pack_kernels_compile_alone_without_warnings(tmp_path):
    src = os.path.join(CSRC, "cuda", "spike_pack_cuda_kernels.cu")
    out = subprocess.run([_nvcc(), "-std=c++17", "-O3", "-c", src, "-o", str(tmp_path / "p.o"), "-gencode",
                          "arch=compute_90,code=sm_90", "-Werror", "all-warnings", "-Xcompiler",
                          "-Wall,-Wextra,-Werror"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which("g++") is None or not os.path.isdir(CSRC), reason="g++ or csrc/ not found")
def test_pack_header_compiles_without_torch(tmp_path):
    src = tmp_path / "h.cpp"
    src.write_text('#include "spike_pack.h"\n'
                   "template void sltt::pack::pack_block<uint32_t>(const uint32_t*, int64_t, int64_t, int32_t*,"
                   " sltt::pack::Patterns<uint32_t>&);\n"
                   "template void sltt::pack::unpack_block<uint16_t>(const int32_t*, uint16_t, int64_t, int64_t,"
                   " uint16_t*);\n")
    out = subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-I", CSRC, "-c", str(src),
                          "-o", str(tmp_path / "h.o")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------------------------------
# Second-order gradients (issue 23, item 10): create_graph=True through a packed layer gives the
# dense layer's answer, the part that reaches the input through the weight gradient included


def _second_order(layer, x0, scale0):
    """First-order gradients with create_graph=True, then the gradients of a function of them:
    [d/dx, d/dscale, d/dweight, d/dbias] of sum(g^3) over the first-order g (x = x0 * scale, so
    that the layer's input has a history as well as being a leaf's product)."""
    x_leaf = x0.clone().requires_grad_(True)
    scale = scale0.clone().requires_grad_(True)
    x = x_leaf * scale  # still two-valued ({0, scale}); a non-leaf input
    params = [p for p in layer.parameters()]
    out = layer(x)
    w_out = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(7))
    first = torch.autograd.grad((out * w_out).sum() + (out ** 2).sum(), [x_leaf] + params, create_graph=True)
    loss = sum((g ** 3).sum() for g in first)
    return [g for g in torch.autograd.grad(loss, [x_leaf, scale] + params, allow_unused=True)]


@pytest.mark.parametrize("kind", ["linear", "linear3d", "transposed_linear", "linear_no_bias", "linear_empty",
                                  "conv2d", "conv1d_groups", "conv2d_channels_last"])
def test_second_order_gradient_through_a_packed_layer_equals_the_dense_layers(kind, seed):
    torch.manual_seed(seed)
    layer, x0 = {
        "linear": (nn.Linear(13, 7), _spikes((5, 13), seed=seed)),
        "linear3d": (nn.Linear(11, 3), _spikes((2, 4, 11), seed=seed)),
        "transposed_linear": (nn.Linear(9, 4), _spikes((9, 17), seed=seed).t()),
        "linear_no_bias": (nn.Linear(6, 5, bias=False), _spikes((3, 6), seed=seed)),
        "linear_empty": (nn.Linear(6, 5), _spikes((0, 6), seed=seed)),
        "conv2d": (nn.Conv2d(3, 4, 3, padding=1), _spikes((2, 3, 7, 5), seed=seed)),
        "conv1d_groups": (nn.Conv1d(4, 6, 3, stride=2, groups=2), _spikes((2, 4, 11), seed=seed)),
        "conv2d_channels_last": (nn.Conv2d(3, 4, 3),
                                 _spikes((2, 3, 6, 7), seed=seed).contiguous(memory_format=torch.channels_last)),
    }[kind]
    layer = layer.double()
    x0 = x0.double()
    scale0 = torch.tensor(1.0, dtype=torch.float64)
    packed = _packed_copy(layer)
    want = _second_order(layer, x0, scale0)
    got = _second_order(packed, x0, scale0)
    if x0.numel():
        assert packed._spike_pack_calls == [1, 0]  # the input was saved as bits
    for name, a, b in zip(["x", "scale", "weight", "bias"], want, got):
        if a is None:
            assert b is None, name
            continue
        assert b is not None, name
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=name)
    if x0.numel():
        assert want[0].abs().sum() > 0  # the input's part is there to compare


def test_second_order_gradient_through_spike_input_linear_and_conv_functions(seed):
    torch.manual_seed(seed)
    cases = ((P.spike_input_linear, torch.nn.functional.linear, (3, 10), (4, 10)),
             (P.spike_input_conv, torch.nn.functional.conv2d, (2, 3, 6, 5), (4, 3, 3, 3)))
    for fn, dense, x_shape, w_shape in cases:
        w = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
        x = _spikes(x_shape, seed=seed).double().requires_grad_(True)
        results = []
        for f in (fn, dense):
            g = torch.autograd.grad((f(x, w) ** 2).sum(), [x, w], create_graph=True)
            results.append(torch.autograd.grad(sum((t ** 3).sum() for t in g), [x, w]))
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_dense_saved_input_or_weight_changed_in_place_is_refused_as_by_the_dense_layer():
    layer = nn.Linear(8, 3)
    conv = nn.Conv2d(2, 3, 3)
    for dense, x0 in ((layer, torch.randn(4, 8)), (conv, torch.randn(2, 2, 5, 5))):  # not two-valued: saved dense
        for m in (dense, _packed_copy(dense)):
            x = x0.clone().requires_grad_(True) * 1.0
            out = m(x)
            x.mul_(2.0)
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                out.sum().backward()
            out = m(_spikes(x0.shape).requires_grad_(True))  # packed; the weight is saved for x's gradient
            with torch.no_grad():
                m.weight.add_(1.0)
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                out.sum().backward()


def test_a_packed_input_changed_in_place_keeps_the_forwards_gradients():
    torch.manual_seed(5)
    layer = nn.Linear(8, 3)
    packed = _packed_copy(layer)
    x = _spikes((4, 8))
    want = torch.autograd.grad(layer(x).sum(), layer.weight)[0]
    out = packed(x)
    x.fill_(0.5)  # after the forward: the bits are a copy of the forward's input
    assert torch.equal(torch.autograd.grad(out.sum(), packed.weight)[0], want)
