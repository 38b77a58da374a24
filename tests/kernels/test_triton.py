"""Triton-specific checks. The Triton backend also runs every backend-parametrised test in
test_kernels.py, test_ops.py and test_memory.py (id 'triton'): on a GPU, or here on CPU tensors
through Triton's interpreter (conftest sets TRITON_INTERPRET=1 when there is no GPU)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sltt_kernels

from helpers import ALL_CONFIG_IDS, ALL_CONFIGS, DEVICE_OF, HAVE_EXT, backend_op, RESETS, SURROGATES, config_of, make_v0, make_x, neuron_kwargs

TRITON_REASON = sltt_kernels.available_backends()["triton"]
pytestmark = pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton backend unavailable: {TRITON_REASON}")
DEV = DEVICE_OF["triton"]


def _fwd_bwd(backend, kw, x, v0, gs, gv):
    cfg = config_of(kw)
    save = cfg.save_kind(True)
    fwd = backend_op(backend, "neuron_multistep_fwd")
    bwd = backend_op(backend, "neuron_multistep_bwd")
    s, v, saved = fwd(x, v0, None, *cfg.args(save))
    gx, gv0, _, _ = bwd(gs, gv, saved, None, *cfg.args(save))
    return s, v, saved, gx, gv0


@pytest.mark.skipif(not HAVE_EXT, reason="needs the compiled CPU kernel to compare with")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=ALL_CONFIG_IDS)
def test_triton_equals_cpu_kernel_bit_for_bit(dtype, kw):
    """Spikes, saved state and v_last identical to the C++ kernel's (same fma order)."""
    x = make_x((4, 2, 81), dtype, seed=31)
    v0 = make_v0((2, 81), torch.float32, seed=32)
    g = torch.Generator().manual_seed(33)
    gs = torch.randn(4, 2, 81, generator=g).to(dtype)
    gv = torch.randn(2, 81, generator=g)
    cpu = _fwd_bwd("cpu", kw, x, v0, gs, gv)
    tri = _fwd_bwd("triton", kw, x.to(DEV), v0.to(DEV), gs.to(DEV), gv.to(DEV))
    for a, b in zip(tri[:3], cpu[:3]):
        assert torch.equal(a.cpu(), b)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(tri[3].cpu(), cpu[3], **tol)
    torch.testing.assert_close(tri[4].cpu(), cpu[4], **tol)


@st.composite
def _cases(draw):
    T = draw(st.integers(1, 6))
    dims = draw(st.lists(st.integers(1, 40), min_size=1, max_size=2))
    kw = neuron_kwargs(
        draw(st.sampled_from(sorted(RESETS))),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.sampled_from(sorted(SURROGATES))),
        draw(st.sampled_from(["bptt", "sltt"])),
        tau=draw(st.sampled_from([1.0, 1.5, 2.0, 10.0])),
    )
    return T, dims, kw, draw(st.booleans()), draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_triton_random_shapes_float64(case):
    T, dims, kw, with_v0, seed = case
    x = make_x((T, *dims), torch.float64, DEV, seed=seed, requires_grad=True)
    v0 = make_v0(tuple(dims), torch.float64, DEV, seed=seed + 1, requires_grad=True) if with_v0 else None
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(DEV)
    s, v = sltt_kernels.lif_multistep(x, v0, backend="triton", **kw)
    rs, rv = sltt_kernels.reference.lif_multistep(x, v0, **kw)
    assert torch.equal(s, rs)
    torch.testing.assert_close(v, rv, rtol=1e-12, atol=1e-12)
    (g,) = torch.autograd.grad((s * w).sum(), x)
    (rg,) = torch.autograd.grad((rs * w).sum(), x)
    torch.testing.assert_close(g, rg, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-tensor rule, which needs no GPU")
def test_triton_on_cpu_tensors_needs_the_interpreter():
    code = textwrap.dedent(
        """
        import torch, sltt_kernels
        try:
            sltt_kernels.lif_multistep(torch.ones(2, 3), backend="triton")
        except ValueError as e:
            assert "TRITON_INTERPRET" in str(e), e
            print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


COMPILE_SCRIPT = textwrap.dedent(
    """
    import itertools, re, sys
    import triton
    from triton.compiler import ASTSource
    from triton.backends.compiler import GPUTarget
    from sltt_kernels.triton import kernels as K

    target = GPUTarget("cuda", 90, 32)
    ptr = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16", "fp64": "*fp64"}
    # A row pointer from a 32-bit offset (t * N in int32) would wrap once (T-1) * N reaches 2^31.
    narrow = re.compile(r"tt.addptr %(?!params_ptr)\\S+, %\\S+ : [^,]+, (tensor<\\d+x)?i32>?")

    def check(k, what, affine=False):
        assert "cubin" in k.asm, what
        if affine:  # x * in_scale + in_shift: product and sum rounded apart, subnormals kept (no .ftz)
            ptx = k.asm["ptx"]
            assert "mul.rn.f" in ptx and "add.rn.f" in ptx and ".ftz" not in ptx, what
        bad = [l.strip() for l in k.asm["ttir"].splitlines() if narrow.search(l)]
        assert not bad, (what, bad[:3])

    n = 0
    # N as i32: what Triton specialises to for N < 2^31, the case where t * N overflowed
    for x_ty in ("fp32", "bf16", "fp16", "fp64"):
        s_ty = "*fp64" if x_ty == "fp64" else "*fp32"
        for neuron, reset, save in [(0, 0, 1), (0, 1, 2), (0, 1, 3), (0, 0, 5), (1, 0, 1), (1, 1, 3),
                                    (2, 0, 1), (2, 1, 4), (2, 1, 5), (2, 2, 3)]:
            sig = dict(x_ptr=ptr[x_ty], v0_ptr=s_ty, k_ptr=s_ty, theta_ptr=s_ty, spikes_ptr=ptr[x_ty],
                       v_last_ptr=s_ty, mask_ptr="*i32", h_ptr=s_ty, params_ptr=s_ty, T="i32", N="i32",
                       scale_ptr=s_ty, scale_inner="i64", scale_count="i64", scale_stride="i64",
                       shift_ptr=s_ty, shift_inner="i64", shift_count="i64", shift_stride="i64",
                       NEURON="constexpr", RESET="constexpr", HAS_V0="constexpr", HAS_K="constexpr",
                       K_PER_NEURON="constexpr", HAS_THETA="constexpr", THETA_PER_NEURON="constexpr",
                       C_IS_K="constexpr", SAVE="constexpr", EMULATE_FMA="constexpr", AFFINE="constexpr",
                       BLOCK="constexpr")
            # a learnable k where the model has one (per neuron for the leaky model), a per-neuron
            # threshold with h_v0
            has_k = save == 5 and neuron != 1
            consts = dict(NEURON=neuron, RESET=reset, HAS_V0=True, HAS_K=has_k, K_PER_NEURON=has_k and neuron == 2,
                          HAS_THETA=save == 5, THETA_PER_NEURON=save == 5, C_IS_K=True,
                          SAVE=save, EMULATE_FMA=False, AFFINE=save in (1, 2, 3), BLOCK=1024)
            check(triton.compile(ASTSource(fn=K._lif_fwd_kernel, signature=sig, constexprs=consts), target=target),
                  ("fwd", x_ty, neuron, reset, save), affine=consts["AFFINE"])
            n += 1
        for neuron, reset, detach, sg, save, bptt, learn_k in [
            (0, 0, False, 0, 1, True, False), (0, 1, True, 0, 2, True, False), (0, 1, False, 0, 3, True, False),
            (0, 0, False, 1, 3, True, False), (0, 1, False, 2, 5, True, True), (0, 0, True, 3, 5, False, True),
            (1, 0, False, 0, 1, True, False), (1, 1, False, 2, 3, True, False),
            (2, 0, True, 3, 3, True, False), (2, 1, True, 0, 4, True, False), (2, 1, True, 3, 5, True, True),
            (0, 0, True, 0, 1, False, False),
        ]:
            sig = dict(gs_ptr=ptr[x_ty], gv_last_ptr=s_ty, mask_ptr="*i32", h_ptr=s_ty, k_ptr=s_ty,
                       theta_ptr=s_ty, gx_ptr=ptr[x_ty], gv0_ptr=s_ty, gk_ptr=s_ty, gtheta_ptr=s_ty, params_ptr=s_ty,
                       T="i32", N="i32", NEURON="constexpr", RESET="constexpr", DETACH="constexpr",
                       SURROGATE="constexpr", SAVE="constexpr", BPTT="constexpr", HAS_GV_LAST="constexpr",
                       WRITE_GV0="constexpr", HAS_K="constexpr", K_PER_NEURON="constexpr", HAS_THETA="constexpr",
                       THETA_PER_NEURON="constexpr", C_IS_K="constexpr", LEARN_K="constexpr",
                       LEARN_THETA="constexpr", EMULATE_FMA="constexpr", BLOCK="constexpr")
            # h_v0 (save 5): a learnable per-neuron threshold too, and k per neuron for the leaky model
            learn_theta = save == 5
            consts = dict(NEURON=neuron, RESET=reset, DETACH=detach, SURROGATE=sg, SAVE=save, BPTT=bptt,
                          HAS_GV_LAST=True, WRITE_GV0=bptt, HAS_K=learn_k, K_PER_NEURON=learn_k and neuron == 2,
                          HAS_THETA=learn_theta, THETA_PER_NEURON=learn_theta, C_IS_K=True, LEARN_K=learn_k,
                          LEARN_THETA=learn_theta, EMULATE_FMA=False, BLOCK=1024)
            check(triton.compile(ASTSource(fn=K._lif_bwd_kernel, signature=sig, constexprs=consts), target=target),
                  ("bwd", x_ty, neuron, reset, detach, sg, save, bptt))
            n += 1
    print("compiled", n)
    """
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the kernels are compiled and run by the other tests")
def test_triton_kernels_compile_for_sm90():
    """Triton's own compiler, for an sm_90 target, without a GPU: catches type errors and
    constexpr misuse that the interpreter tolerates, and checks that every row offset is 64-bit
    (t * N in int32 would wrap for (T-1) * N >= 2^31)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0 and ("ptxas" in out.stderr and "not found" in out.stderr):
        pytest.skip("Triton's ptxas is not available here")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "compiled 88" in out.stdout
