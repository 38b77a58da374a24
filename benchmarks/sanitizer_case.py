"""A small case that runs every CUDA op variant once, for compute-sanitizer (memcheck, racecheck).

    compute-sanitizer --tool memcheck --error-exitcode 1 python benchmarks/sanitizer_case.py

Through the public API only: sltt_kernels.lif_multistep and lif_step with backend="cuda",
forward and backward, against backend="cpu" on the same inputs. N is odd with respect to the
block and the warp (partial last warp: the ballot path), T > 1. Exits non-zero if any result
differs from the CPU kernel's.
"""

import itertools
import sys

import torch

import sltt_kernels


def run(fn, x, v0, gs, gv, **kw):
    x = x.clone().requires_grad_(True)
    v0 = v0.clone().requires_grad_(kw["grad"] == "bptt")
    s, v = fn(x, v0, **kw)
    loss = (s.float() * gs.float()).sum() + ((v * gv).sum() if v.requires_grad else 0)
    loss.backward()
    return s.detach(), v.detach(), x.grad


def main():
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU")
    why = sltt_kernels.available_backends()["cuda"]
    if why is not None:
        sys.exit(f"the cuda backend is not available: {why}")
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
            kw = dict(tau=2.0, v_reset=v_reset, detach_reset=detach, surrogate=sg, grad=grad, decay_input=False)
            for name, fn, args in (("multistep", sltt_kernels.lif_multistep, (x, v0, gs, gv)),
                                   ("step", sltt_kernels.lif_step, (x[0], v0, gs[0], gv))):
                want = run(fn, *args, backend="cpu", **kw)
                got = run(fn, *(a.cuda() for a in args), backend="cuda", **kw)
                torch.cuda.synchronize()
                if not all(torch.equal(g.cpu(), w) for g, w in zip(got[:2], want[:2])):
                    print(f"{name} forward differs: {dtype} {kw}")
                    bad += 1
                if not torch.allclose(got[2].cpu().double(), want[2].double(), rtol=1e-2, atol=1e-2):
                    print(f"{name} backward differs: {dtype} {kw}")
                    bad += 1
    print("sanitizer case:", "ok" if not bad else f"{bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
