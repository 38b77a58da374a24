"""A small case that runs every CUDA op variant once, for compute-sanitizer (memcheck, racecheck).

    compute-sanitizer --tool memcheck --error-exitcode 1 python benchmarks/sanitizer_case.py

N is odd with respect to the block and the warp (partial last warp: the ballot path), T > 1.
Exits non-zero if any result differs from the CPU kernel's.
"""

import itertools
import sys

import torch

import sltt_kernels  # noqa: F401  (registers the ops)
from sltt_kernels._config import make_config


def main():
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU")
    T, N = 3, 1000 + 37
    gen = torch.Generator().manual_seed(0)
    bad = 0
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        sdt = torch.float64 if dtype == torch.float64 else torch.float32
        x = (torch.randn(T, N, generator=gen) * 1.5 + 0.9).to(dtype)
        v0 = (torch.randn(N, generator=gen) * 0.4).to(sdt)
        gs = torch.randn(T, N, generator=gen).to(dtype)
        gv = torch.randn(N, generator=gen).to(sdt)
        for v_reset, detach, sg, grad in itertools.product((None, 0.0), (False, True), ("rect", "sigmoid"), ("bptt", "sltt")):
            cfg = make_config(v_reset=v_reset, detach_reset=detach, surrogate=sg, grad=grad)
            save = cfg.save_kind(True)
            args = cfg.op_args(save)
            out_c = torch.ops.sltt_kernels.lif_multistep_fwd(x, v0, *args)
            out_g = torch.ops.sltt_kernels.lif_multistep_fwd(x.cuda(), v0.cuda(), *args)
            g_c = torch.ops.sltt_kernels.lif_multistep_bwd(gs, gv, out_c[2], *args)
            g_g = torch.ops.sltt_kernels.lif_multistep_bwd(gs.cuda(), gv.cuda(), out_g[2], *args)
            st = torch.ops.sltt_kernels.lif_step_fwd(x[0].cuda(), v0.cuda(), *args)
            torch.ops.sltt_kernels.lif_step_bwd(gs[0].cuda(), gv.cuda(), st[2], *args)
            torch.cuda.synchronize()
            if not all(torch.equal(a.cpu(), b) for a, b in zip(out_g, out_c)):
                print("forward differs:", dtype, cfg)
                bad += 1
            if not all(torch.allclose(a.cpu().double(), b.double(), rtol=1e-2, atol=1e-2) for a, b in zip(g_g, g_c)):
                print("backward differs:", dtype, cfg)
                bad += 1
    print("sanitizer case:", "ok" if not bad else f"{bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
