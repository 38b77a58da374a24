"""Issue 23, item 13: SpikingJelly's ACCounter counts our LIF neurons as its own when the input
is not decayed (decay_input=False), where ours counted one AC more per neuron at each call's
first step (its v - (v - v_r) / tau from the zero reset state subtracts two zero tensors, which
it counts as 0)."""

import pytest
import torch
from torch import nn

from helpers import make_x  # noqa: F401  (also switches the Triton interpreter on without a GPU)

_CASES = [({"decay_input": False}, "hard to 0"), ({"decay_input": False, "v_reset": None}, "soft"),
          ({"decay_input": False, "v_reset": -0.3}, "hard to -0.3"), ({"decay_input": True}, "decayed input"),
          ({"decay_input": False, "v_threshold": 0.4}, "low threshold")]


def _totals(module, name, kw, step_mode, x):
    from spikingjelly.activation_based import op_counter

    counters = [op_counter.ACCounter(), op_counter.FlopCounter()]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(x.shape[-1], 7), getattr(module, name)(step_mode=step_mode, **kw))
    steps = [x] if step_mode == "m" else [x[t].clone() for t in range(x.shape[0])]
    with op_counter.DispatchCounterMode(counters, strict=False):
        for step in steps:
            net(step)
        if step_mode == "s":  # a second sample: after reset the state is v_r again
            net[1].reset()
            for step in steps:
                net(step)
    return [c.get_total() for c in counters]


@pytest.mark.parametrize("name", ["LIFNode", "ParametricLIFNode"])
@pytest.mark.parametrize("kw", [c[0] for c in _CASES], ids=[c[1] for c in _CASES])
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("T", [1, 3])
def test_spikingjelly_ac_counter_counts_ours_as_its_own(name, kw, step_mode, T, seed):
    pytest.importorskip("spikingjelly.activation_based.op_counter", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import neuron

    import sltt_kernels.nn as ours

    x = torch.randn(T, 3, 5) * 2
    theirs = _totals(neuron, name, kw, step_mode, x)
    assert _totals(ours, name, kw, step_mode, x) == theirs


@pytest.mark.parametrize("start", ["zeros", "ones, v_r -1", "0/1"])
def test_the_first_step_from_a_given_state_is_counted_as_spikingjelly_counts_it(start):
    pytest.importorskip("spikingjelly.activation_based.op_counter", reason="SpikingJelly not installed")
    from spikingjelly.activation_based import neuron, op_counter

    import sltt_kernels.nn as ours

    torch.manual_seed(5)
    x = torch.randn(2, 3, 5)
    # v - q, q = (v - v_r) / 2: zeros from v_r 0: two zero tensors (0 ACs); ones from v_r -1: q is
    # ones too (2 ACs per neuron); 0/1 from v_r 0: q holds 0.5s (1 AC per neuron, as per step)
    state = {"zeros": torch.zeros(3, 5), "ones, v_r -1": torch.ones(3, 5),
             "0/1": (torch.rand(3, 5) < 0.5).float()}[start]
    v_reset = -1.0 if "v_r -1" in start else 0.0
    totals = []
    for module in (neuron, ours):
        counter = op_counter.ACCounter()
        n = module.LIFNode(tau=2.0, decay_input=False, v_reset=v_reset, v_threshold=3.0, step_mode="m")
        n.v = state.clone()
        with op_counter.DispatchCounterMode([counter], strict=False):
            n(x)
        totals.append(counter.get_total())
    assert totals[0] == totals[1]
