"""GPU-only checks of the CUDA backend beyond the shared equivalence tests (which are
parametrised over backends in test_kernels.py, test_ops.py and test_memory.py)."""

import pytest
import torch

import sltt_kernels
from sltt_kernels import reference

from helpers import ALL_CONFIG_IDS, ALL_CONFIGS, HAVE_EXT, backend_op, config_of, make_v0, make_x, safe_neurons, unpack_bits

HAVE_CUDA_OPS = torch.cuda.is_available() and sltt_kernels.available_backends()["cuda"] is None
pytestmark = pytest.mark.skipif(
    not (HAVE_CUDA_OPS and HAVE_EXT),
    reason="needs a CUDA GPU and the extension built with its CUDA ops",
)


def _fwd(kw, x, v0, save=None):
    cfg = config_of(kw)
    save = save or cfg.save_kind(True)
    return torch.ops.sltt_kernels.neuron_multistep_fwd(x, v0, None, *cfg.args(save)), save


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=ALL_CONFIG_IDS)
def test_cuda_equals_cpu_kernel_bit_for_bit(dtype, kw):
    """Same fused multiply-adds in the same order: spikes, v_last and saved state are identical
    to the CPU kernel's; gradients agree to float32 rounding (the surrogates' exp may differ)."""
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    x = make_x((5, 3, 331), dtype, seed=21)
    v0 = make_v0((3, 331), sdt, seed=22)
    (s_c, v_c, saved_c), save = _fwd(kw, x, v0)
    (s_g, v_g, saved_g), _ = _fwd(kw, x.cuda(), v0.cuda())
    assert torch.equal(s_g.cpu(), s_c)
    assert torch.equal(v_g.cpu(), v_c)
    assert torch.equal(saved_g.cpu(), saved_c)
    cfg = config_of(kw)
    gs = torch.randn(5, 3, 331, generator=torch.Generator().manual_seed(3)).to(dtype)
    gv = torch.randn(3, 331, generator=torch.Generator().manual_seed(4), dtype=sdt)
    gx_c, gv0_c, _, _ = torch.ops.sltt_kernels.neuron_multistep_bwd(gs, gv, saved_c, None, *cfg.args(save))
    gx_g, gv0_g, _, _ = torch.ops.sltt_kernels.neuron_multistep_bwd(gs.cuda(), gv.cuda(), saved_g, None, *cfg.args(save))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    if dtype in (torch.float16, torch.bfloat16):
        tol = dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(gx_g.cpu(), gx_c, **tol)
    torch.testing.assert_close(gv0_g.cpu(), gv0_c, **tol)


def test_current_stream_and_device_guard():
    """Launched on the caller's current stream; results right when read after that stream."""
    kw = dict(tau=2.0, v_reset=None, decay_input=False, surrogate="rect", grad="sltt")
    x = make_x((4, 1 << 16), torch.float32, "cuda", requires_grad=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        s, _ = sltt_kernels.lif_multistep(x, **kw)
        (g,) = torch.autograd.grad(s.sum(), x)
    torch.cuda.current_stream().wait_stream(side)
    rs, _ = reference.lif_multistep(x.detach().cpu(), **kw)
    assert torch.equal(s.cpu(), rs)
    assert g.isfinite().all()


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.mem_get_info()[0] < 24 * 2**30,
    reason="needs a GPU with 24 GiB free",
)
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_more_than_2_pow_31_elements_bf16(backend):
    """T * N above 2^31: 64-bit index arithmetic, in the CUDA and the Triton kernels. Checks the
    neurons at both ends and the mask."""
    if sltt_kernels.available_backends()[backend] is not None:
        pytest.skip(f"backend {backend!r}: {sltt_kernels.available_backends()[backend]}")
    T, N = 3, (1 << 31) // 3 + 4097  # T*N > 2^31, N odd with respect to 32
    assert T * N > 2**31
    kw = dict(tau=2.0, v_reset=None, decay_input=False, surrogate="rect", grad="bptt")
    cfg = config_of(kw)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(T, N, device="cuda", generator=g) * 1.5 + 0.9).to(torch.bfloat16)
    spikes, v_last, saved = backend_op(backend, "neuron_multistep_fwd")(x, None, None, *cfg.args("sg"))
    gs = torch.ones(T, N, device="cuda", dtype=torch.bfloat16)
    gx, _, _ = backend_op(backend, "neuron_multistep_bwd")(gs, None, saved, None, *cfg.args("sg"))
    c0 = ((N - 4096) // 32) * 32  # the tail starts on a mask-word boundary
    for cols in (slice(0, 4096), slice(c0, N)):
        xs = x[:, cols].double().cpu()
        safe = safe_neurons(kw, xs)
        assert safe.float().mean() > 0.8
        xs.requires_grad_(True)
        rs, rv = reference.lif_multistep(xs, **kw)
        (rg,) = torch.autograd.grad(rs.sum(), xs)
        assert torch.equal(spikes[:, cols].double().cpu()[:, safe], rs[:, safe])
        torch.testing.assert_close(v_last[cols].double().cpu()[safe], rv.detach()[safe], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gx[:, cols].double().cpu()[:, safe], rg[:, safe], rtol=1e-2, atol=1e-2)
    # the mask words of the tail, against the packing of the float64 reference's window
    xs = x[:, c0:].double().cpu()
    safe = safe_neurons(kw, xs)
    window = (reference.multistep_states(cfg, xs)[1] - 1.0).abs() < 0.5
    got = unpack_bits(saved[:, c0 // 32:].cpu(), N - c0)
    assert torch.equal(got[:, safe], window[:, safe])
