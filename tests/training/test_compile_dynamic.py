"""torch.compile with dynamic shapes over our ops: the fake kernels and argument checks take
symbolic sizes (no crash, no guard that pins the batch size), through SLTT -> BPTT -> SLTT with
changing batch sizes, as eager computes.

The backend is aot_eager: Dynamo and AOTAutograd trace the same graphs, with our fake kernels
and autograd glue, as under inductor, without its code generation (minutes on a CPU). Inductor
itself fails there after the step-mode switch ("cannot determine truth value of Relational",
while ordering a view's symbolic strides): a model input whose rank changes (4-d per step, 5-d
per sequence) makes every size dynamic, H and W too, and inductor cannot order the strides of the
time-folded input [T*B, C, H, W]; a network of plain torch layers fails the same way
(pytorch/pytorch#185510), so the training command's --compile keeps dynamic=False.
"""

import random

import pytest
import torch

from sltt_kernels import models, training

torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)


def _pair(hidden=16):
    torch.manual_seed(0)
    eager = models.digits_snn(hidden=hidden)
    net = models.digits_snn(hidden=hidden)
    net.load_state_dict(eager.state_dict())
    return eager, net


def _step(method, model, opt, x, y, T=3):
    if method == "bptt":
        return training.bptt_step(model, opt, x, y, T)
    return training.sltt_step(model, opt, x, y, T, generator=random.Random(0))


@pytest.mark.parametrize("dynamic", [None, True], ids=["automatic", "dynamic"])
def test_dynamic_shapes_through_both_step_modes_and_batch_sizes_match_eager(dynamic):
    torch._dynamo.reset()
    eager, net = _pair()
    compiled = torch.compile(net, dynamic=dynamic, backend="aot_eager", fullgraph=True)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (eager, net)]
    g = torch.Generator().manual_seed(1)
    # odd batches, one of 1, and a return to each mode after the other
    for method, batch in (("sltt", 6), ("bptt", 6), ("sltt", 5), ("bptt", 7), ("sltt", 1), ("bptt", 3),
                          ("sltt", 9)):
        x, y = torch.randn(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g)
        want = _step(method, eager, opts[0], x, y)
        got = _step(method, compiled, opts[1], x, y)
        assert got.loss == pytest.approx(want.loss, rel=1e-5), (method, batch)
        torch.testing.assert_close(got.output, want.output, rtol=1e-5, atol=1e-6)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_dynamic_graphs_serve_every_batch_size_without_recompiling():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    _, net = _pair()
    compiled = torch.compile(net, dynamic=True, backend="aot_eager", fullgraph=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(2)

    def run(method, batch):
        x, y = torch.randn(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g)
        _step(method, compiled, opt, x, y)

    for method in ("sltt", "bptt"):
        run(method, 6)
    graphs = counters["stats"]["unique_graphs"]
    # SLTT: the first step (state v is the float v_reset) and the others; BPTT: one
    assert graphs >= 3
    # batches of 3 and more: 1 is specialised by torch itself, and so is a saved mask of one
    # 32-bit word (at most 32 neurons per step: here batch 2 of 16), whose output metadata torch
    # records with a guard on its size being 1 (is_contiguous in proxy_tensor's set_meta)
    for batch in (5, 11, 3):
        for method in ("sltt", "bptt"):
            run(method, batch)
    # a guard of ours on a size (a check comparing it, a saved shape) would compile again here
    assert counters["stats"]["unique_graphs"] == graphs
    assert not counters["graph_break"]
