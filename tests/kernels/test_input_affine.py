"""The forward ops' in_scale and in_shift (docs/design.md, section 4.3): the neuron reads
x * in_scale + in_shift, a batch norm's apply, without the product ever being stored. Against the
same op on the affine input computed in PyTorch (bit for bit), the reference, and autograd of the
reference for the gradients of x, in_scale and in_shift; per-channel views read in place, one
value, one per neuron, channels_last, non-contiguous, T = 1, empty; and the refusals."""

from __future__ import annotations

import pytest
import torch

from helpers import DEVICE_OF, KERNEL_BACKENDS, backend_op
from sltt_kernels import _config, reference
from sltt_kernels.neurons.if_ import if_config
from sltt_kernels.neurons.leaky import leaky_config
from sltt_kernels.neurons.lif import lif_config

CONFIGS = {
    "lif-soft-rect-sltt": lambda: lif_config(tau=2.0, v_threshold=1.0, v_reset=None, decay_input=False,
                                             detach_reset=True, surrogate="rect", grad="sltt"),
    "lif-hard-sigmoid-bptt": lambda: lif_config(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True,
                                                detach_reset=False, surrogate="sigmoid", grad="bptt"),
    "lif-soft-triangle-sltt": lambda: lif_config(tau=2.0, v_threshold=1.0, v_reset=None, decay_input=False,
                                                 detach_reset=True, surrogate="triangle", grad="sltt"),
    "if-soft-atan-bptt": lambda: if_config(v_threshold=1.0, v_reset=None, detach_reset=False, surrogate="atan",
                                           grad="bptt"),
    "leaky-zero-rect-bptt": lambda: leaky_config(beta=0.6, threshold=1.0, reset_mechanism="zero", surrogate="rect",
                                                 grad="bptt"),
    "leaky-none-sigmoid-bptt": lambda: leaky_config(beta=0.6, threshold=1.0, reset_mechanism="none",
                                                    surrogate="sigmoid", grad="bptt"),
}

# (T, state shape); channel dimension 1 of the state
SHAPES = [(3, (2, 5, 3, 7)), (1, (3, 4, 2, 5)), (2, (5, 3)), (4, (2, 33, 9))]


def _affine(state, sdt, device, kind, seed):
    """in_scale, in_shift of the state's shape: 'channel' (a [C] expanded, stride 0 elsewhere),
    'one' (one element), 'neuron' (one per neuron, a dense tensor)."""
    g = torch.Generator().manual_seed(seed)
    C = state[1]
    if kind == "one":
        scale, shift = 0.5 + torch.rand((), generator=g, dtype=torch.float64), torch.randn((), generator=g,
                                                                                          dtype=torch.float64)
        return scale.to(sdt).to(device).reshape([1] * len(state)), shift.to(sdt).to(device).reshape([1] * len(state))
    if kind == "neuron":
        scale = 0.3 + torch.rand(state, generator=g, dtype=torch.float64) * 2
        shift = torch.randn(state, generator=g, dtype=torch.float64) * 0.7
        return scale.to(sdt).to(device), shift.to(sdt).to(device)
    view = [1, C] + [1] * (len(state) - 2)
    scale = (0.3 + torch.rand(C, generator=g, dtype=torch.float64) * 2).to(sdt).to(device)
    shift = (torch.randn(C, generator=g, dtype=torch.float64) * 0.7).to(sdt).to(device)
    return scale.view(view).expand(state), shift.view(view).expand(state)


def _x(T, state, dtype, device, seed, multistep=True):
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(((T,) if multistep else ()) + tuple(state), generator=g, dtype=torch.float64) * 1.3 + 0.2
    return x.to(dtype).to(device)


def _save_for(cfg, dtype, grad: bool, step: bool = False):
    return cfg.save_kind(grad, False, half=dtype in (torch.float16, torch.bfloat16), step=step)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("T,state", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", ["channel", "one", "neuron"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_forward_equals_the_op_on_the_affine_input(backend, name, T, state, kind, dtype, seed):
    """Bit for bit: the fused read of x * in_scale + in_shift is the op run on that input,
    computed in PyTorch in the state dtype (one rounding after the product, one after the sum)."""
    device = DEVICE_OF[backend]
    cfg = CONFIGS[name]()
    sdt = _config.state_dtype(dtype)
    x = _x(T, state, dtype, device, seed)
    scale, shift = _affine(state, sdt, device, kind, seed)
    v0 = (torch.randn(state, dtype=torch.float64) * 0.3).to(sdt).to(device)
    fwd = backend_op(backend, "neuron_multistep_fwd")
    for grad in (False, True):
        save = _save_for(cfg, dtype, grad)
        got = fwd(x, v0, None, *cfg.args(save), None, scale, shift)
        want = fwd(x * scale + shift, v0, None, *cfg.args(save))
        for a, b, what in zip(got, want, ("spikes", "v_last", "saved")):
            assert torch.equal(a, b), f"{what} (save={save!r})"
    # and the reference, which computes the same input (the kernels' charge rounds with an fma,
    # the reference's in two steps: the state agrees to rounding)
    if dtype == torch.float64:
        s_ref, v_ref = reference.run(cfg, x, v0, None, True, in_scale=scale, in_shift=shift)
        s, v, _ = fwd(x, v0, None, *cfg.args("none"), None, scale, shift)
        assert torch.equal(s, s_ref)
        torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_16bit_input_reads_its_exact_value(backend, dtype, seed):
    """A 16-bit x goes to the state dtype exactly, then the affine map: as the same x in float32."""
    device = DEVICE_OF[backend]
    cfg = CONFIGS["lif-soft-triangle-sltt"]()
    state = (3, 6, 5)
    x = _x(2, state, dtype, device, seed)
    scale, shift = _affine(state, torch.float32, device, "channel", seed)
    fwd = backend_op(backend, "neuron_multistep_fwd")
    s16, v16, _ = fwd(x, None, None, *cfg.args("none"), None, scale, shift)
    s32, v32, _ = fwd(x.float(), None, None, *cfg.args("none"), None, scale, shift)
    assert s16.dtype == dtype and torch.equal(s16.float(), s32) and torch.equal(v16, v32)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", ["lif-soft-rect-sltt", "lif-soft-triangle-sltt", "if-soft-atan-bptt"])
def test_step_op_reads_the_steps_channels(backend, name, seed):
    """The step op flattens its step to [1, N]; in_scale is still read per channel of the step,
    also for a channels_last step viewed in its storage order (as ops.run_neuron calls it)."""
    device = DEVICE_OF[backend]
    cfg = CONFIGS[name]()
    state = (3, 5, 4, 3)
    x = _x(1, state, torch.float32, device, seed, multistep=False)
    scale, shift = _affine(state, torch.float32, device, "channel", seed)
    v = (torch.randn(state, dtype=torch.float64) * 0.3).float().to(device)
    step = backend_op(backend, "neuron_step_fwd")
    save = _save_for(cfg, torch.float32, True, step=True)
    got = step(x, v, None, *cfg.args(save), None, scale, shift)
    want = step(x * scale + shift, v, None, *cfg.args(save))
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    order = (0, 2, 3, 1)  # a channels_last step, as the layout code views it
    xl, vl = x.permute(order).contiguous(), v.permute(order).contiguous()
    got = step(xl, vl, None, *cfg.args(save), None, scale.permute(order), shift.permute(order))
    assert torch.equal(got[0], want[0].permute(order).contiguous())
    assert torch.equal(got[1], want[1].permute(order).contiguous())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_non_contiguous_and_empty(backend, seed):
    device = DEVICE_OF[backend]
    cfg = CONFIGS["lif-hard-sigmoid-bptt"]()
    fwd = backend_op(backend, "neuron_multistep_fwd")
    base = _x(3, (4, 6, 5), torch.float32, device, seed)
    x = base.transpose(2, 3)  # [3, 4, 5, 6]: channel dim 1 is 5
    scale, shift = _affine((4, 5, 6), torch.float32, device, "channel", seed)
    got = fwd(x, None, None, *cfg.args("h"), None, scale, shift)
    want = fwd((x * scale + shift).contiguous(), None, None, *cfg.args("h"))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # a transposed per-neuron scale (two varying dimensions): read from a copy
    scale_t = (0.5 + torch.rand(4, 6, 5)).to(device).transpose(1, 2)
    got = fwd(x, None, None, *cfg.args("h"), None, scale_t, shift)
    want = fwd((x * scale_t + shift).contiguous(), None, None, *cfg.args("h"))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    empty = torch.empty(2, 0, 5, device=device)
    s, v, saved = fwd(empty, None, None, *cfg.args("h"), None, torch.ones(0, 5, device=device),
                      torch.zeros(0, 5, device=device))
    assert s.shape == (2, 0, 5) and v.shape == (0, 5) and saved.shape == (2, 0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", ["lif-hard-sigmoid-bptt", "lif-soft-triangle-sltt", "if-soft-atan-bptt",
                                  "leaky-none-sigmoid-bptt"])
@pytest.mark.parametrize("kind", ["channel", "one"])
def test_gradients_match_autograd_of_the_reference(backend, name, kind, seed):
    """x, in_scale and in_shift (each in its own shape: a [C] through its expansion) and v0, in
    float64, against autograd of the reference."""
    device = DEVICE_OF[backend]
    cfg = CONFIGS[name]()
    T, state = 3, (2, 5, 3, 4)
    x0 = _x(T, state, torch.float64, device, seed)
    g = torch.Generator().manual_seed(seed + 7)
    C = state[1]
    shape = (1, C, 1, 1) if kind == "channel" else (1, 1, 1, 1)
    sc0 = (0.4 + torch.rand(shape, generator=g, dtype=torch.float64) * 1.5).to(device)
    sh0 = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.5).to(device)
    v00 = (torch.randn(state, generator=g, dtype=torch.float64) * 0.3).to(device)
    gs = torch.randn((T,) + state, generator=g, dtype=torch.float64).to(device)
    gv = torch.randn(state, generator=g, dtype=torch.float64).to(device)
    fwd = backend_op(backend, "neuron_multistep_fwd")

    def run(kernel: bool):
        x, sc, sh, v0 = (t.clone().requires_grad_(True) for t in (x0, sc0, sh0, v00))
        scale, shift = sc.expand(state), sh.expand(state)
        if kernel:
            s, v, _ = fwd(x, v0, None, *cfg.args(cfg.save_kind(True)), None, scale, shift)
        else:
            s, v = reference.run(cfg, x, v0, None, True, in_scale=scale, in_shift=shift)
        loss = (s * gs).sum() + ((v * gv).sum() if cfg.grad == "bptt" else 0)
        loss.backward()
        return [t.grad for t in (x, sc, sh)] + ([v0.grad] if cfg.grad == "bptt" else [])

    for got, want, what in zip(run(True), run(False), ("x", "in_scale", "in_shift", "v0")):
        assert got is not None and got.shape == want.shape, what
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=what)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["fake"])
def test_refusals_name_the_argument(backend):
    device = "meta" if backend == "fake" else DEVICE_OF[backend]
    fwd = backend_op("cpu" if backend == "fake" else backend, "neuron_multistep_fwd")
    cfg = CONFIGS["lif-soft-rect-sltt"]()
    x = torch.randn(2, 3, 4, device=device)
    one = torch.ones(3, 4, device=device)
    with pytest.raises(ValueError, match="in_scale was given without in_shift"):
        fwd(x, None, None, *cfg.args("none"), None, one, None)
    with pytest.raises(ValueError, match="in_shift was given without in_scale"):
        fwd(x, None, None, *cfg.args("none"), None, None, one)
    with pytest.raises(TypeError, match="in_scale must be"):
        fwd(x, None, None, *cfg.args("none"), None, one.double(), one)
    with pytest.raises(ValueError, match="in_shift must have one element or the state's shape"):
        fwd(x, None, None, *cfg.args("none"), None, one, torch.ones(3, 1, device=device))
    if device != "meta":
        with pytest.raises(ValueError, match="in_scale is on meta"):
            fwd(x, None, None, *cfg.args("none"), None, one.to("meta"), one)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("multistep", [True, False])
def test_one_element_with_more_dimensions_than_the_state(backend, multistep, seed):
    """A one-element in_scale / in_shift of any number of dimensions (e.g. [1, 1, 1, 1] for a
    [T, B, C] input): its gradient is the whole sum, in its own shape, and x's keeps x's shape."""
    device = DEVICE_OF[backend]
    cfg = CONFIGS["lif-hard-sigmoid-bptt"]()
    x0 = _x(3, (2, 5), torch.float64, device, seed)
    if not multistep:
        x0 = x0[0]
    sc0 = torch.full((1, 1, 1, 1), 0.8, dtype=torch.float64, device=device)
    sh0 = torch.full((1, 1, 1, 1), 0.1, dtype=torch.float64, device=device)
    op = backend_op(backend, "neuron_multistep_fwd" if multistep else "neuron_step_fwd")

    def run(kernel):
        x, sc, sh = (t.clone().requires_grad_(True) for t in (x0, sc0, sh0))
        if kernel:
            v = None if multistep else torch.zeros(x.shape, dtype=torch.float64, device=device)
            s, _, _ = op(x, v, None, *cfg.args("h"), None, sc, sh)
        else:
            s, _ = reference.run(cfg, x, None, None, multistep, in_scale=sc, in_shift=sh)
        (s * torch.linspace(-1, 1, s.numel(), dtype=s.dtype, device=device).view(s.shape)).sum().backward()
        return x.grad, sc.grad, sh.grad

    for got, want in zip(run(True), run(False)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("state", [(3, 5, 1, 1), (2, 7, 3, 5), (1, 300, 2, 2), (5, 3, 17)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_cpu_instruction_sets_agree(cpu_isa, state, dtype, seed):
    """The CPU kernels' AVX2 copy (whose inference runs in vector lanes, the affine values loaded
    per lane) and generic copy, with channel runs shorter than a lane, crossing lanes and blocks."""
    cfg = CONFIGS["lif-soft-triangle-sltt"]()
    fwd = backend_op("cpu", "neuron_multistep_fwd")
    x = _x(2, state, dtype, "cpu", seed)
    scale, shift = _affine(state, dtype, "cpu", "channel", seed)
    for save in ("none", "h"):
        got = fwd(x, None, None, *cfg.args(save), None, scale, shift)
        want = fwd(x * scale + shift, None, None, *cfg.args(save))
        assert all(torch.equal(a, b) for a, b in zip(got, want)), save
