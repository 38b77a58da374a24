"""pytest-benchmark suite for the fused LIF ops (not part of the default test run).

    pip install pytest-benchmark
    pytest benchmarks/ --benchmark-columns=median,min,max --benchmark-group-by=param:T,param:N

Each case times forward+backward of one backend; compare the groups' rows for the speedup.
"""

import pytest
import torch

pytest.importorskip("pytest_benchmark")

import sltt_kernels  # noqa: E402

AVAILABLE = sltt_kernels.available_backends()
BACKENDS = [b for b in ("cpu", "reference") if AVAILABLE[b] is None]
KW = dict(tau=2.0, v_reset=None, decay_input=False, surrogate="rect")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
@pytest.mark.parametrize("N", [1 << 16, 1 << 20], ids=["64K", "1M"])
@pytest.mark.parametrize("T", [2, 6, 16])
def test_lif_multistep_fwd_bwd(benchmark, backend, grad, N, T):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(T, N, generator=gen) * 1.5 + 0.9).requires_grad_(True)
    gout = torch.randn(T, N, generator=gen)

    def step():
        s, _ = sltt_kernels.lif_multistep(x, grad=grad, backend=backend, **KW)
        return torch.autograd.grad(s, x, gout)[0]

    g = benchmark(step)
    assert g.shape == x.shape
