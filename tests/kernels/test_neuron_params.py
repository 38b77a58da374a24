"""Per-neuron and learnable neuron parameters (docs/design.md, section 2.6): the model's k (LIF's
1/tau, the leaky model's beta) and the threshold as tensors of one value or one per neuron, on
every kernel backend, against autograd of the reference."""

from __future__ import annotations

import pytest
import torch

import sltt_kernels
from helpers import DEVICE_OF, KERNEL_BACKENDS, backend_op
from sltt_kernels import _config, reference
from sltt_kernels.neurons.if_ import if_config
from sltt_kernels.neurons.leaky import leaky_config
from sltt_kernels.neurons.lif import lif_config, plif_config
from sltt_kernels.ops import run_neuron

TOL = {torch.float64: 1e-10, torch.float32: 2e-4}


def _configs():
    """(id, NeuronArgs maker, takes k): every model, its resets, detached or not, two surrogates."""
    rows = []
    for surrogate in ("sigmoid", "rect"):
        for v_reset in (None, 0.0):
            for detach in (False, True):
                rows.append((f"lif-{surrogate}-{'soft' if v_reset is None else 'hard'}-{'d' if detach else 'nd'}",
                             lambda g, s=surrogate, r=v_reset, d=detach: plif_config(
                                 v_threshold=1.0, v_reset=r, decay_input=True, detach_reset=d, surrogate=s, grad=g),
                             True))
                rows.append((f"if-{surrogate}-{'soft' if v_reset is None else 'hard'}-{'d' if detach else 'nd'}",
                             lambda g, s=surrogate, r=v_reset, d=detach: if_config(
                                 v_threshold=1.0, v_reset=r, detach_reset=d, surrogate=s, grad=g),
                             False))
        for mech in ("subtract", "zero", "none"):
            rows.append((f"leaky-{surrogate}-{mech}",
                         lambda g, s=surrogate, m=mech: leaky_config(beta=0.5, threshold=1.0, reset_mechanism=m,
                                                                     surrogate=s, grad=g),
                         True))
    # LIF without input decay (c = 1): dh/dk is v_r - v_prev
    rows.append(("lif-noinput-decay", lambda g: plif_config(v_threshold=1.0, v_reset=None, decay_input=False,
                                                            detach_reset=False, surrogate="atan", grad=g), True))
    return rows


CONFIGS = _configs()


def _inputs(T, state, dtype, device, seed, k_shape, theta_shape, takes_k):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn((T,) + state, generator=g, dtype=torch.float64) * 1.2 + 0.4).to(dtype).to(device)
    sdt = _config.state_dtype(dtype)
    theta = (0.6 + 0.8 * torch.rand(theta_shape, generator=g, dtype=torch.float64)).to(sdt).to(device)
    k = (0.2 + 0.6 * torch.rand(k_shape, generator=g, dtype=torch.float64)).to(sdt).to(device) if takes_k else None
    v0 = (torch.randn(state, generator=g, dtype=torch.float64) * 0.5).to(sdt).to(device)
    gs = torch.randn((T,) + state, generator=g, dtype=torch.float64).to(dtype).to(device)
    gv = torch.randn(state, generator=g, dtype=torch.float64).to(sdt).to(device)
    return x, v0, k, theta, gs, gv


def _run(cfg, x, v0, k, theta, gs, gv, backend):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, v0, k, theta)]
    xl, vl, kl, tl = leaves
    spikes, v_last = run_neuron(cfg, xl, vl, multistep=True, backend=backend, k=kl, threshold=tl)
    loss = (spikes * gs).sum() + ((v_last * gv).sum() if cfg.grad == "bptt" else 0)
    loss.backward()
    return spikes.detach(), v_last.detach(), [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shapes", [
    # T, state, k shape, threshold shape
    (4, (3, 37), (37,), (3, 37)),      # per feature k, per neuron threshold
    (1, (2, 5, 3), (5, 1), (1,)),      # per channel k, one learnable threshold
    (3, (2, 33), (1,), (33,)),         # one learnable k, per feature threshold
], ids=["T4-perneuron", "T1-perchannel", "T3-onek"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_learnable_params_match_reference(backend, grad, dtype, shapes, config, seed):
    name, make, takes_k = config
    cfg = make(grad)
    T, state, k_shape, theta_shape = shapes
    device = DEVICE_OF[backend]
    x, v0, k, theta, gs, gv = _inputs(T, state, dtype, device, seed, k_shape, theta_shape, takes_k)
    got = _run(cfg, x, v0, k, theta, gs, gv, backend)
    want = _run(cfg, x, v0, k, theta, gs, gv, "reference")
    tol = TOL[dtype]
    assert torch.equal(got[0], want[0]), "spikes differ"
    torch.testing.assert_close(got[1], want[1], atol=tol, rtol=tol)
    for label, a, b in zip(("x", "v0", "k", "threshold"), got[2], want[2]):
        if b is None and a is None:
            continue
        if grad == "sltt" and label == "v0":
            assert a is None or not a.any()
            continue
        assert a is not None, f"no gradient for {label}"
        assert a.shape == b.shape, label
        assert b.abs().sum() > 0 or label == "v0", f"the reference's {label} gradient is zero: the case tests nothing"
        torch.testing.assert_close(a, b, atol=tol * 10, rtol=tol * 10, msg=lambda m: f"{label}: {m}")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
def test_constant_per_neuron_params_every_save_kind(backend, dtype, seed):
    """Per-neuron k and threshold that need no gradient: the ordinary save kinds (masks, h, h16,
    the one-step spike_state) read them per neuron."""
    device = DEVICE_OF[backend]
    for surrogate in ("rect", "sigmoid"):
        for grad in ("bptt", "sltt"):
            cfg = plif_config(v_threshold=1.0, v_reset=None, decay_input=True, detach_reset=True,
                              surrogate=surrogate, grad=grad)
            x, v0, k, theta, gs, gv = _inputs(5, (4, 19), dtype, device, seed, (19,), (4, 19), True)
            for multistep in (True, False):
                xs = x if multistep else x[0]
                xg = xs.detach().clone().requires_grad_(True)
                xr = xs.detach().clone().requires_grad_(True)
                s, v = run_neuron(cfg, xg, v0, multistep=multistep, backend=backend, k=k, threshold=theta)
                sr, vr = run_neuron(cfg, xr, v0, multistep=multistep, backend="reference", k=k, threshold=theta)
                assert torch.equal(s, sr)
                torch.testing.assert_close(v, vr, atol=1e-5, rtol=1e-5)
                gsx = gs if multistep else gs[0]
                (s.float() * gsx.float()).sum().backward()
                (sr.float() * gsx.float()).sum().backward()
                # 16-bit grads: within the h16 bound of the continuous surrogates (docs/design.md, 3)
                tol = 1e-5 if dtype == torch.float32 else 2e-2
                torch.testing.assert_close(xg.grad.float(), xr.grad.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_step_ops_per_neuron_params(backend, seed):
    """An online loop of one-step calls with learnable per-neuron beta and threshold gives the
    multi-step gradients (BPTT) on the kernels as on the reference."""
    device = DEVICE_OF[backend]
    cfg = leaky_config(beta=0.5, threshold=1.0, reset_mechanism="subtract", surrogate="atan", grad="bptt")
    x, v0, k, theta, gs, gv = _inputs(4, (3, 11), torch.float64, device, seed, (11,), (3, 11), True)
    grads = []
    for b in (backend, "reference"):
        kl = k.clone().requires_grad_(True)
        tl = theta.clone().requires_grad_(True)
        v, loss = v0, 0
        for t in range(4):
            s, v = run_neuron(cfg, x[t], v, multistep=False, backend=b, k=kl, threshold=tl)
            loss = loss + (s * gs[t]).sum()
        loss.backward()
        grads.append((kl.grad, tl.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_non_contiguous_and_empty(backend, seed):
    device = DEVICE_OF[backend]
    cfg = leaky_config(beta=0.5, threshold=1.0, reset_mechanism="zero", surrogate="sigmoid", grad="bptt")
    base = torch.randn(6, 7, 4, dtype=torch.float64, device=device)
    x = base.transpose(1, 2)  # [6, 4, 7], not contiguous
    beta = torch.rand(7, 4, dtype=torch.float64, device=device).t()  # [4, 7], not contiguous
    theta = torch.rand(4, 1, dtype=torch.float64, device=device) + 0.5
    outs = [run_neuron(cfg, x, None, multistep=True, backend=b, k=beta, threshold=theta) for b in (backend, "reference")]
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
    empty = torch.randn(3, 0, 5, dtype=torch.float64, device=device, requires_grad=True)
    kt = torch.full((5,), 0.9, dtype=torch.float64, device=device, requires_grad=True)
    s, v = run_neuron(cfg, empty, None, multistep=True, backend=backend, k=kt, threshold=theta[:1, 0])
    assert s.shape == (3, 0, 5) and v.shape == (0, 5)
    s.sum().backward()
    assert kt.grad is not None and not kt.grad.any()


def test_public_functions_take_tensors(seed):
    """leaky_multistep(beta=tensor, threshold=tensor), lif_multistep(v_threshold=tensor) and a
    per-channel plif w: their gradients are autograd's of the reference."""
    if sltt_kernels.available_backends()["cpu"] is not None:
        pytest.skip("compiled extension unavailable")
    x = torch.randn(5, 2, 3, 4, 4, dtype=torch.float64)
    beta0 = 0.8 + 0.1 * torch.rand(3, 1, 1, dtype=torch.float64)   # per channel
    thr0 = torch.rand(3, 4, 4, dtype=torch.float64) + 0.5          # per neuron of a sample
    w0 = torch.randn(3, 1, 1, dtype=torch.float64)
    results = {}
    for backend in ("cpu", "reference"):
        beta, thr, w = (t.clone().requires_grad_(True) for t in (beta0, thr0, w0))
        s1, _ = sltt_kernels.leaky_multistep(x, beta=beta, threshold=thr, backend=backend)
        s2, _ = sltt_kernels.lif_multistep(x, v_threshold=thr, backend=backend)
        s3, _ = sltt_kernels.plif_multistep(x, w=w, backend=backend)
        (s1.sum() + 2 * s2.sum() + 3 * s3.sum()).backward()
        results[backend] = (s1, s2, s3, beta.grad, thr.grad, w.grad)
    for a, b in zip(results["cpu"], results["reference"]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_bad_param_tensors_are_refused(backend):
    device = DEVICE_OF[backend]
    cfg = leaky_config(beta=0.5, threshold=1.0, reset_mechanism="subtract", surrogate="atan", grad="bptt")
    x = torch.randn(3, 2, 5, device=device)
    with pytest.raises(ValueError, match="threshold must have one element or a shape that broadcasts"):
        run_neuron(cfg, x, None, multistep=True, backend=backend, threshold=torch.ones(3, device=device))
    with pytest.raises(ValueError, match="k must have one element or a shape that broadcasts"):
        run_neuron(cfg, x, None, multistep=True, backend=backend, k=torch.ones(2, 3, device=device))
    with pytest.raises(TypeError, match="threshold must be a floating tensor"):
        run_neuron(cfg, x, None, multistep=True, backend=backend, threshold=torch.ones(5, dtype=torch.int64,
                                                                                     device=device))
    # the raw ops: one element or exactly the state's shape, in the state dtype
    fwd = backend_op(backend, "neuron_multistep_fwd")
    with pytest.raises(ValueError, match="threshold must have one element or the state's shape"):
        fwd(x, None, None, *cfg.args("none"), threshold=torch.ones(5, device=device))
    with pytest.raises(TypeError, match="(?i)threshold must be (torch\\.)?float"):
        fwd(x, None, None, *cfg.args("none"), threshold=torch.ones(2, 5, dtype=torch.float64, device=device))
    ifc = if_config(v_threshold=1.0, v_reset=None, detach_reset=False, surrogate="atan", grad="bptt")
    with pytest.raises(ValueError, match="k \\(a learnable time constant\\) is not supported by neuron='if'"):
        fwd(x, None, torch.ones(2, 5, device=device), *ifc.args("none"))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_raw_backward_returns_param_grads(backend, seed):
    """The backward ops' fourth output is dL/dtheta (summed for one element, per neuron else),
    empty where the forward did not save h_v0; the old lif_* names keep three outputs."""
    device = DEVICE_OF[backend]
    cfg = lif_config(tau=2.0, v_threshold=1.0, v_reset=None, decay_input=True, detach_reset=False,
                     surrogate="sigmoid", grad="bptt")
    x = torch.randn(4, 6, device=device)
    theta = torch.rand(6, device=device) + 0.5
    fwd = backend_op(backend, "neuron_multistep_fwd")
    bwd = backend_op(backend, "neuron_multistep_bwd")
    s, v, saved = fwd(x, None, None, *cfg.args("h_v0"), threshold=theta)
    gx, gv0, gk, gth = bwd(torch.ones_like(s), None, saved, None, *cfg.args("h_v0"), threshold=theta)
    assert gk.numel() == 0 and gth.shape == (6,)
    s, v, saved = fwd(x, None, None, *cfg.args("h"), threshold=theta)
    out = bwd(torch.ones_like(s), None, saved, None, *cfg.args("h"), threshold=theta)
    assert out[3].numel() == 0
    old = getattr(torch.ops.sltt_kernels, ("triton_" if backend == "triton" else "") + "lif_multistep_bwd")
    assert len(old(torch.ones_like(s), None, saved, None, *cfg.args("h"))) == 3


def test_plif_sigmoid_underflow_gives_zero_grad(seed):
    """k = sigmoid(w) = 0 for w below about -88 (float32): w.grad is 0, as the reference's, not NaN
    (issue 23, item 4)."""
    x = torch.randn(4, 3, 8)
    grads = {}
    for backend in ("cpu", "triton", "reference"):
        if backend != "reference" and sltt_kernels.available_backends()[backend] is not None:
            continue
        w = torch.tensor(-100.0, requires_grad=True)
        s, _ = sltt_kernels.plif_multistep(x, w=w, backend=backend)
        s.sum().backward()
        grads[backend] = w.grad
    for backend, g in grads.items():
        assert torch.isfinite(g).all() and g == 0, (backend, g)
