"""Half-precision saved state (save 'h16'): for float16 / bfloat16 input, the non-rect surrogates
keep d = h - theta in 16 bits instead of h in float32. The backward's decisions stay exact (the
store keeps d's sign) and its error against the float64 reference stays within the bound of
docs/design.md, section 3: for every registered model (tests/helpers.py MODEL_ROWS)."""

import pytest
import torch

import sltt_kernels
from sltt_kernels import _config, reference
from sltt_kernels.memory import SavedTensorMeter

from helpers import (
    DEVICE_OF,
    KERNEL_BACKENDS,
    MissingRow,
    backend_op,
    config_of,
    kw_id,
    make_x,
    model_rows,
    neuron_kwargs,
)

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


def _h16_cases():
    """LIF's four configurations above; for the other rows, each core keyword set that saves h16
    (the parametric LIF with a constant w: a learnable one saves h and the initial state)."""
    cases = []
    for row in model_rows():
        if isinstance(row, MissingRow):
            cases.append(pytest.param(row, {}, id=row.name))
        elif row.name == "lif":
            cases += [pytest.param(row, kw, id=f"lif-{i}") for kw, i in zip(CONFIGS, IDS)]
        else:
            cases += [pytest.param(row, kw, id=f"{row.name}-{kw_id(kw)}") for kw in row.core_kw
                      if row.args(kw).save_kind(True, half=True) == "h16"]
    return cases


def _k(row, device):
    """The raw ops' k of a constant w (float32, as the public path makes it for 16-bit input)."""
    w = row.w(torch.float32, device).get("w")
    return None if w is None else torch.sigmoid(w)


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
@pytest.mark.parametrize("row, kw", _h16_cases())
def test_h16_matches_the_reference_within_the_bound(backend, dtype, row, kw):
    dev = DEVICE_OF[backend]
    x = make_x((6, 3, 77), torch.float64, dev, seed=2).to(dtype)
    cfg = row.args(kw)
    k = _k(row, dev)
    # the saved tensor is the reference's, bit for bit
    _, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, None, k, *cfg.args("h16"))
    assert saved.dtype == dtype and saved.shape == (6, 3 * 77)
    expect = reference.saved_state(cfg, x.cpu(), None, "h16", k=None if k is None else k.cpu())
    if row.learnable_w:
        # the reference's plain (1 - k)(v - v_r) + k x rounds the float32 h differently from the
        # kernels' fused multiply-adds with a tensor k in a few elements (a constant lam is exact):
        # d within 1 ulp, of the same sign
        ulps = saved.cpu().view(torch.int16).int() - expect.view(torch.int16).int()
        assert ulps.abs().max() <= 1 and torch.equal(saved.cpu().signbit(), expect.signbit())
    elif backend != "triton" or dtype == torch.float16:
        assert torch.equal(saved.cpu().view(torch.int16), expect.view(torch.int16))
    else:  # the interpreter rounds the float32 h itself differently in rare cases; d within 1 ulp
        torch.testing.assert_close(saved.cpu().float(), expect.float(), rtol=2**-7, atol=0)
    # gradients against float64 autograd of the reference on the same input (a constant w: the
    # public path saves h16 too)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xk = x.clone().requires_grad_(True)
    s, v = row.functions()[0](xk, **kw, **row.w(torch.float32, dev), backend=backend)
    loss = (s * w.to(dev, dtype)).sum() + (v.sum() if kw["grad"] == "bptt" else 0)
    gk, = torch.autograd.grad(loss, xk)
    x64 = x.cpu().double().requires_grad_(True)
    # the float64 oracle's w: the float32 one's value
    rs, rv = row.functions(on_reference=True)[0](x64, **kw, **{n: t.double() for n, t in row.w(torch.float32).items()})
    assert torch.equal(s.cpu().double(), rs)
    gr, = torch.autograd.grad((rs * w.to(dtype).double()).sum() + (rv.sum() if kw["grad"] == "bptt" else 0), x64)
    # d's rounding moves each sg by at most alpha * roundoff (section 3), the output's by its own
    # roundoff; along time the errors add up over T = 6 steps
    scale = gr.abs().max()
    err = (gk.cpu().double() - gr).abs().max() / scale
    assert err <= 8 * ROUNDOFF[dtype] * 6, err


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("row", model_rows(), ids=lambda r: r.name)
def test_h16_keeps_the_sign_of_a_tiny_d(backend, dtype, row):
    """h a hair below and above the threshold: d would round to zero in 16 bits; the store keeps
    its sign, so the backward's spike (and with it a hard reset's dv/dh) is the forward's."""
    dev = DEVICE_OF[backend]
    kw, gain = row.tiny_d
    cfg = row.args(kw)
    k = torch.tensor([0.5], dtype=torch.float32, device=dev) if row.learnable_w else None
    # h = gain v0 (no input): d = -2^-26 and +2^-25, both below float16's smallest subnormal (2^-24)
    h = torch.tensor([0.25 - 2.0**-26, 0.25 + 2.0**-25, 0.25, 0.0625], dtype=torch.float32)
    v0 = (h / gain).to(dev)
    x = torch.zeros(1, 4, dtype=dtype, device=dev)
    spikes, _, saved = backend_op(backend, "neuron_multistep_fwd")(x, v0, k, *cfg.args("h16"))
    d = saved.float().cpu()[0]
    at_theta = 0.0 if cfg.model.strict_fire else 1.0  # 'leaky' fires on h > theta
    assert spikes.cpu()[0].tolist() == [0.0, 1.0, at_theta, 0.0]
    assert d[0] < 0 < d[1] and d[2] == 0 and d[3] < 0
    expect = reference.saved_state(cfg, x.cpu(), v0.cpu(), "h16", k=None if k is None else k.cpu())
    assert torch.equal(saved.cpu().view(torch.int16), expect.view(torch.int16))


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
