"""Memory is measured, not assumed: bytes saved for backward, via saved_tensors_hooks."""

import pytest
import torch

import sltt_kernels
from sltt_kernels.memory import SavedTensorMeter

from helpers import KERNEL_BACKENDS, DEVICE_OF, make_v0, make_x, neuron_kwargs


def saved_bytes(fn):
    """Runs fn() and returns (its result, total bytes of the tensors autograd saved)."""
    with SavedTensorMeter() as meter:
        out = fn()
    return out, meter.total


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
@pytest.mark.parametrize("T, n", [(6, 4096), (4, 1000), (1, 33)], ids=["T6N4096", "T4N1000", "T1N33"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rect_soft_reset_saves_one_bit_per_element_step(backend, grad, T, n, dtype):
    dev = DEVICE_OF[backend]
    kw = neuron_kwargs("soft", False, False, "rect", grad)
    x = make_x((T, n), dtype, dev, requires_grad=True)
    v0 = make_v0((n,), torch.float32, dev, requires_grad=True)
    (s, v), nbytes = saved_bytes(lambda: sltt_kernels.lif_multistep(x, v0, backend=backend, **kw))
    # N*T/8 + O(1): the last word of each step holds N % 32 live bits.
    assert nbytes <= n * T / 8 + 4 * T
    assert nbytes >= n * T / 8  # and it does save the mask: the test would catch a lost backward
    (s.sum()).backward()
    assert x.grad is not None


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
def test_online_steps_save_one_bit_per_element(backend, grad):
    dev = DEVICE_OF[backend]
    kw = neuron_kwargs("soft", False, False, "rect", grad)
    x = make_x((5, 2048), torch.float32, dev, requires_grad=True)

    def run():
        v = None
        return [sltt_kernels.lif_step(x[t], v, backend=backend, **kw)[0] for t in range(5)]

    _, nbytes = saved_bytes(run)
    assert nbytes == 5 * 2048 // 8


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_saved_state_by_configuration(backend):
    """2 bits for hard reset + detach_reset; h (4 bytes) otherwise; never more than the reference."""
    dev = DEVICE_OF[backend]
    T, n = 4, 1024
    x = make_x((T, n), torch.float32, dev, requires_grad=True)
    cases = {
        ("hard0", True, "rect"): 2 * n * T / 8,
        ("hard0", False, "rect"): 4 * n * T,
        ("soft", False, "sigmoid"): 4 * n * T,
    }
    for (reset, detach, sg), want in cases.items():
        kw = neuron_kwargs(reset, True, detach, sg, "bptt")
        _, nbytes = saved_bytes(lambda: sltt_kernels.lif_multistep(x, backend=backend, **kw))
        assert nbytes == want, (reset, detach, sg)
        _, ref_bytes = saved_bytes(lambda: sltt_kernels.lif_multistep(x, backend="reference", **kw))
        assert ref_bytes >= nbytes
