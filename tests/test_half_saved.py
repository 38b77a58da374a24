"""Half-precision saved state (save 'h16'): for float16 / bfloat16 input, the non-rect surrogates
keep d = h - theta in 16 bits instead of h in float32. The backward's decisions stay exact (the
store keeps d's sign) and its error against the float64 reference stays within the bound of
docs/design.md, section 3."""

import pytest
import torch

import sltt_kernels
from sltt_kernels import _config, reference
from sltt_kernels.memory import SavedTensorMeter

from helpers import DEVICE_OF, KERNEL_BACKENDS, backend_op, config_of, make_x, neuron_kwargs

HALF = [torch.float16, torch.bfloat16]
# unit roundoff of the stored d: 2^-11 (float16), 2^-8 (bfloat16)
ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
CONFIGS = [
    neuron_kwargs("soft", False, False, "triangle", "sltt", tau=1.1),  # the paper's neuron
    neuron_kwargs("soft", False, False, "triangle", "bptt", tau=1.1),
    neuron_kwargs("hard0", True, False, "sigmoid", "bptt"),
    neuron_kwargs("hard-0.3", True, True, "atan", "bptt"),
]
IDS = ["paper-sltt", "paper-bptt", "hard-sigmoid", "hard-detach-atan"]


def test_save_kind_is_h16_only_where_h_would_be_saved():
    cfg = config_of(CONFIGS[0])
    assert cfg.save_kind(True, half=True) == "h16" and cfg.save_kind(True) == "h"
    rect = config_of(neuron_kwargs("soft", False, False, "rect", "sltt"))
    assert rect.save_kind(True, half=True) == "sg"  # the bit is smaller still
    assert cfg.save_kind(True, learn_k=True, half=True) == "h_v0"  # a learnable k needs v exactly
    with pytest.raises(TypeError, match="h16"):
        _config.saved_dtype("h16", torch.float32)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_h16_matches_the_reference_within_the_bound(backend, dtype, kw):
    dev = DEVICE_OF[backend]
    x = make_x((6, 3, 77), torch.float64, dev, seed=2).to(dtype)
    cfg = config_of(kw)
    # the saved tensor is the reference's, bit for bit
    _, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, None, None, *cfg.args("h16"))
    assert saved.dtype == dtype and saved.shape == (6, 3 * 77)
    expect = reference.saved_state(cfg, x.cpu(), None, "h16")
    if backend != "triton" or dtype == torch.float16:
        assert torch.equal(saved.cpu().view(torch.int16), expect.view(torch.int16))
    else:  # the interpreter rounds the float32 h itself differently in rare cases; d within 1 ulp
        torch.testing.assert_close(saved.cpu().float(), expect.float(), rtol=2**-7, atol=0)
    # gradients against float64 autograd of the reference on the same input
    g = torch.Generator().manual_seed(3)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xk = x.clone().requires_grad_(True)
    s, v = sltt_kernels.lif_multistep(xk, backend=backend, **kw)
    loss = (s * w.to(dev, dtype)).sum() + (v.sum() if kw["grad"] == "bptt" else 0)
    gk, = torch.autograd.grad(loss, xk)
    x64 = x.cpu().double().requires_grad_(True)
    rs, rv = reference.lif_multistep(x64, **kw)
    assert torch.equal(s.cpu().double(), rs)
    gr, = torch.autograd.grad((rs * w.to(dtype).double()).sum() + (rv.sum() if kw["grad"] == "bptt" else 0), x64)
    # d's rounding moves each sg by at most alpha * roundoff (section 3), the output's by its own
    # roundoff; along time the errors add up over T = 6 steps
    scale = gr.abs().max()
    err = (gk.cpu().double() - gr).abs().max() / scale
    assert err <= 8 * ROUNDOFF[dtype] * 6, err


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_h16_keeps_the_sign_of_a_tiny_d(backend, dtype):
    """h a hair below and above the threshold: d would round to zero in 16 bits; the store keeps
    its sign, so the backward's spike (and with it a hard reset's dv/dh) is the forward's."""
    dev = DEVICE_OF[backend]
    cfg = config_of(neuron_kwargs("hard0", False, False, "sigmoid", "bptt", tau=2.0, v_threshold=0.25))
    # h = v0 / 2 (no input): d = -2^-26 and +2^-25, both below float16's smallest subnormal (2^-24)
    v0 = torch.tensor([0.5 - 2.0**-25, 0.5 + 2.0**-24, 0.5, 0.125], dtype=torch.float32, device=dev)
    x = torch.zeros(1, 4, dtype=dtype, device=dev)
    spikes, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, v0, None, *cfg.args("h16"))
    d = saved.float().cpu()[0]
    assert spikes.cpu()[0].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert d[0] < 0 < d[1] and d[2] == 0 and d[3] < 0


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_h16_halves_the_saved_bytes(dtype):
    if sltt_kernels.available_backends()["cpu"] is not None:
        pytest.skip("needs the compiled CPU kernel")
    T, n = 6, 4096
    x = make_x((T, n), torch.float64).to(dtype).requires_grad_(True)
    kw = neuron_kwargs("soft", False, False, "triangle", "sltt", tau=1.1)
    with SavedTensorMeter() as m16:
        sltt_kernels.lif_multistep(x, backend="cpu", **kw)
    x32 = x.detach().float().requires_grad_(True)
    with SavedTensorMeter() as m32:
        sltt_kernels.lif_multistep(x32, backend="cpu", **kw)
    assert m16.peak <= T * n * 2 + 64 and m32.peak >= T * n * 4
