"""The reference is the oracle: check it against independent formulations."""

import math

import pytest
import torch

from sltt_kernels import reference, surrogate
from sltt_kernels._config import leaky_config, lif_config

from helpers import ALL_CONFIG_IDS, ALL_CONFIGS, config_of, make_v0, make_x, unpack_bits


def _spikingjelly_style_loop(kw, x, v0):
    """LIF as SpikingJelly writes it (other algebra, same neuron), BPTT or SLTT by detaching v."""
    cfg = config_of(kw)
    v_reset = kw["v_reset"]
    v = torch.full_like(x[0], cfg.v_reset) if v0 is None else v0
    out = []
    for t in range(x.shape[0]):
        if kw["grad"] == "sltt":
            v = v.detach()
        if kw["decay_input"]:
            h = v + (x[t] - (v - cfg.v_reset)) / kw["tau"]
        else:
            h = v - (v - cfg.v_reset) / kw["tau"] + x[t]
        s = kw["surrogate"](h - kw["v_threshold"])
        sd = s.detach() if kw["detach_reset"] else s
        if v_reset is None:
            v = h - sd * kw["v_threshold"]
        else:
            v = sd * v_reset + (1.0 - sd) * h
        out.append(s)
    return torch.stack(out), v


@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=ALL_CONFIG_IDS)
def test_reference_matches_independent_loop(kw):
    x = make_x((5, 3, 7), torch.float64, requires_grad=True)
    v0 = make_v0((3, 7), torch.float64, requires_grad=True)
    w = torch.randn(5, 3, 7, dtype=torch.float64)
    s_ref, v_ref = reference.lif_multistep(x, v0, **kw)
    s_loop, v_loop = _spikingjelly_style_loop(kw, x, v0)
    assert torch.equal(s_ref, s_loop)
    torch.testing.assert_close(v_ref, v_loop.detach() if kw["grad"] == "sltt" else v_loop, rtol=1e-12, atol=1e-12)
    g_ref = torch.autograd.grad((s_ref * w).sum(), [x, v0], allow_unused=True)
    g_loop = torch.autograd.grad((s_loop * w).sum(), [x, v0], allow_unused=True)
    torch.testing.assert_close(g_ref[0], g_loop[0], rtol=1e-12, atol=1e-12)
    if kw["grad"] == "bptt":
        torch.testing.assert_close(g_ref[1], g_loop[1], rtol=1e-12, atol=1e-12)
    else:
        assert g_ref[1] is None and g_loop[1] is None


@pytest.mark.parametrize("tau", [2.0, 4 / 3])
def test_reference_sltt_equals_official_neuron(tau):
    """The official SLTT neuron: v = v.detach() * (1 - 1/tau) + x; s = H(v - theta) with the
    rect surrogate; v = v - s * theta (soft reset, no input decay)."""
    x = make_x((6, 4, 9), torch.float64, requires_grad=True)
    w = torch.randn(6, 4, 9, dtype=torch.float64)
    v = torch.zeros(4, 9, dtype=torch.float64)
    rect = surrogate.Rect(1.0)
    out = []
    for t in range(6):
        v = v.detach() * (1 - 1 / tau) + x[t]
        s = rect(v - 1.0)
        v = v - s * 1.0
        out.append(s)
    s_off = torch.stack(out)
    s_ref, _ = reference.lif_multistep(
        x, tau=tau, v_reset=None, decay_input=False, surrogate="rect", grad="sltt"
    )
    assert torch.equal(s_ref, s_off)
    (g_off,) = torch.autograd.grad((s_off * w).sum(), x)
    (g_ref,) = torch.autograd.grad((s_ref * w).sum(), x)
    torch.testing.assert_close(g_ref, g_off, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=ALL_CONFIG_IDS)
def test_explicit_backward_equals_autograd(kw):
    """The backward equations of docs/design.md, section 2.5, written out, equal autograd of the loop."""
    cfg = config_of(kw)
    x = make_x((6, 2, 11), torch.float64, requires_grad=True)
    v0 = make_v0((2, 11), torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 11, dtype=torch.float64)
    wv = torch.randn(2, 11, dtype=torch.float64)
    s, v = reference.lif_multistep(x, v0, **kw)
    loss = (s * w).sum() + ((v * wv).sum() if cfg.grad == "bptt" else 0)
    gx, gv0 = torch.autograd.grad(loss, [x, v0], allow_unused=True)
    _, h, _ = reference.multistep_states(cfg, x.detach(), v0.detach())
    ex_gx, ex_gv0 = reference.multistep_backward(cfg, h, w, wv if cfg.grad == "bptt" else None)
    torch.testing.assert_close(ex_gx, gx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ex_gv0, gv0 if gv0 is not None else torch.zeros_like(ex_gv0), rtol=1e-12, atol=1e-12)


def test_reference_step_equals_multistep():
    kw = dict(tau=2.0, v_reset=0.0, surrogate="sigmoid", grad="bptt")
    x = make_x((4, 3, 5), torch.float64, requires_grad=True)
    s_m, v_m = reference.lif_multistep(x, **kw)
    v = None
    steps = []
    for t in range(4):
        s, v = reference.lif_step(x[t], v, **kw)
        steps.append(s)
    assert torch.equal(torch.stack(steps), s_m)
    torch.testing.assert_close(v, v_m, rtol=0, atol=0)


@pytest.mark.parametrize(
    "sg, primitive",
    [
        (surrogate.Rect(0.7), lambda d: (d / 0.7 + 0.5).clamp(0, 1)),
        (surrogate.Triangle(1.5), None),
        (surrogate.Sigmoid(4.0), lambda d: torch.sigmoid(4.0 * d)),
        (surrogate.ATan(2.0), lambda d: torch.atan(math.pi / 2 * 2.0 * d) / math.pi + 0.5),
    ],
    ids=["rect", "triangle", "sigmoid", "atan"],
)
def test_surrogate_gradients_are_derivatives_of_their_primitives(sg, primitive):
    d = torch.linspace(-2, 2, 4001, dtype=torch.float64).requires_grad_(True)
    s = sg(d)
    assert torch.equal(s.detach(), (d >= 0).double())
    (g,) = torch.autograd.grad(s.sum(), d)
    if primitive is None:  # triangle: max(0, alpha - alpha^2 |d|), written independently
        a = sg.param
        expect = torch.where(d.abs() < 1 / a, a - a * a * d.abs(), torch.zeros_like(d)).detach()
    else:
        (expect,) = torch.autograd.grad(primitive(d).sum(), d)
    # the primitives' kinks sit exactly on grid points for rect; compare away from them
    keep = ((d.abs() - getattr(sg, "param", 0) / 2).abs() > 1e-9).detach()
    torch.testing.assert_close(g[keep], expect[keep], rtol=1e-9, atol=1e-12)


def test_pack_bits_layout():
    n = 37
    flags = torch.zeros(2, n, dtype=torch.bool)
    flags[0, 0] = True  # word 0 bit 0
    flags[0, 31] = True  # word 0 bit 31 (sign bit of the int32)
    flags[1, 32] = True  # word 1 bit 0
    flags[1, 36] = True  # word 1 bit 4
    words = reference.pack_bits(flags)
    assert words.dtype == torch.int32 and words.shape == (2, 2)
    assert words.tolist() == [[1 - 2**31, 0], [0, 1 | 16]]
    assert torch.equal(unpack_bits(words, n), flags)
    rnd = torch.rand(3, 5, 41) > 0.5
    assert torch.equal(unpack_bits(reference.pack_bits(rnd), 5 * 41), rnd.reshape(3, -1))


def test_reference_keeps_float32_state_for_half_inputs():
    x = make_x((3, 10), torch.bfloat16)
    s, v = reference.lif_multistep(x)
    assert s.dtype == torch.bfloat16 and v.dtype == torch.float32
    s32, v32 = reference.lif_multistep(x.float())
    assert torch.equal(s.float(), s32) and torch.equal(v, v32)


def _lif(**kw):
    base = dict(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=False, surrogate="rect",
                grad="bptt")
    return lif_config(**{**base, **kw})


def test_config_save_kinds():
    assert _lif(v_reset=None).save_kind(True) == "sg"
    assert _lif(grad="sltt").save_kind(True) == "sg"
    assert _lif(detach_reset=True).save_kind(True) == "sg_spike"
    assert _lif().save_kind(True) == "h"
    assert _lif(v_reset=None, surrogate="sigmoid").save_kind(True) == "h"
    assert _lif().save_kind(False) == "none"
    assert _lif().save_kind(True, learn_k=True) == "h_v0"
    leaky = dict(beta=0.9, threshold=1.0, surrogate="rect", grad="bptt")
    assert leaky_config(reset_mechanism="zero", **leaky).save_kind(True) == "sg_reset"
    assert leaky_config(reset_mechanism="subtract", **leaky).save_kind(True) == "sg"
    assert leaky_config(reset_mechanism="zero", **{**leaky, "surrogate": "atan"}).save_kind(True) == "h_v0"


def test_surrogate_objects_take_spikingjelly_argument_names():
    assert surrogate.Rect(alpha=2.0) == surrogate.Rect(width=0.5)
    assert surrogate.Sigmoid(alpha=3.0).alpha == 3.0 and surrogate.ATan(alpha=1.5).alpha == 1.5
    with pytest.raises(ValueError, match="spiking"):
        surrogate.ATan(spiking=False)
    with pytest.raises(ValueError, match="not both"):
        surrogate.Rect(width=1.0, alpha=1.0)
