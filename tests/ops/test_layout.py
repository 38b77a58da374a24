"""sltt_kernels._layout: the neuron ops run on a channels_last (or any dense) input in its own
memory order, with the same results bit for bit, in x's layout, and without the copies that the
ops' contiguous() makes of x and of the gradient."""

import pytest
import torch

import sltt_kernels
from torch.profiler import ProfilerActivity, profile

from sltt_kernels import _ext
from sltt_kernels._layout import in_storage_order, storage_order
from sltt_kernels.neurons.lif import lif_config
from sltt_kernels.ops import run_neuron

CL = torch.channels_last
needs_ops = pytest.mark.skipif(not _ext.available(), reason="the compiled CPU ops are not built")


def _cfg(grad):
    return lif_config(tau=2.0, v_threshold=1.0, v_reset=None, decay_input=True, detach_reset=False,
                      surrogate="atan", grad=grad)


def _channels_last_steps(T, B, C, H, W, gen):
    """[T, B, C, H, W] whose every step is channels_last: a channels_last [T*B, C, H, W] (a
    time-folded conv's output) unflattened, as FoldTime hands it on."""
    flat = torch.randn(T * B, C, H, W, generator=gen).contiguous(memory_format=CL)
    return flat.unflatten(0, (T, B))


# ---------------------------------------------------------------------------------------------
# storage_order


def test_storage_order_of_the_layouts_a_network_hands_on():
    gen = torch.Generator().manual_seed(0)
    assert storage_order(torch.randn(2, 3, 5, 7)) == (0, 1, 2, 3)
    assert storage_order(torch.randn(2, 3, 5, 7).contiguous(memory_format=CL)) == (0, 2, 3, 1)
    x = _channels_last_steps(3, 2, 5, 4, 3, gen)
    assert storage_order(x, keep_first=True) == (0, 1, 3, 4, 2)
    assert storage_order(torch.randn(7, 5).t()) == (1, 0)
    for t in (torch.randn(3, 5, 4, 6).contiguous(memory_format=CL), x, torch.randn(5, 3).t()):
        assert t.permute(storage_order(t)).is_contiguous()


def test_storage_order_is_none_for_gaps_overlaps_and_time_not_first():
    assert storage_order(torch.randn(4, 10)[:, ::2]) is None  # gaps
    assert storage_order(torch.randn(1, 5).expand(3, 5)) is None  # overlapping elements
    # time outermost in memory is what the multi-step ops need: a [T, B] stored B-major has no such order
    x = torch.randn(5, 3).t()
    assert storage_order(x) == (1, 0) and storage_order(x, keep_first=True) is None


def test_storage_order_of_size_one_dims_and_empty_and_zero_dim():
    # a size-1 dimension may carry any stride; it must not break the order (T = 1, B = 1)
    x = torch.randn(1, 1, 3, 4, 5).contiguous(memory_format=torch.channels_last_3d)
    order = storage_order(x, keep_first=True)
    assert order is not None and order[0] == 0 and x.permute(order).is_contiguous()
    assert storage_order(torch.randn(0, 3, 2, 2).contiguous(memory_format=CL)) is not None
    assert storage_order(torch.tensor(1.5)) == ()


def test_storage_order_refuses_a_non_tensor_by_name():
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        storage_order([1.0, 2.0])


def test_in_storage_order_leaves_contiguous_and_gappy_input_alone():
    x, v = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    xs, vs, restore = in_storage_order(x, v, multistep=False)
    assert xs is x and vs is v and restore(x, v) == (x, v)
    gappy = torch.randn(3, 8)[:, ::2]
    xs, vs, _ = in_storage_order(gappy, None, multistep=False)
    assert xs is gappy and vs is None


# ---------------------------------------------------------------------------------------------
# with the ops: same numbers, x's layout, no copy


def _copies_in_our_ops(fn):
    """aten copies (copy_, clone, contiguous) made inside sltt_kernels ops while fn() runs."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    n = 0
    for e in prof.events():
        if e.name not in ("aten::copy_", "aten::clone"):
            continue
        parent = e.cpu_parent
        while parent is not None and "sltt_kernels" not in parent.name:
            parent = parent.cpu_parent
        n += parent is not None
    return n


def _same_layout(a, b):
    """Same strides where they mean something (a dimension of size 1 may have any)."""
    return a.shape == b.shape and all(sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()) if n > 1)


def _run(cfg, x, v, multistep, in_order):
    if not in_order:
        return run_neuron(cfg, x, v, multistep=multistep, backend="cpu")
    xs, vs, restore = in_storage_order(x, v, multistep)
    return restore(*run_neuron(cfg, xs, vs, multistep=multistep, backend="cpu"))


CASES = [  # (multistep, grad, shape): odd sizes, T = 1, B = 1
    (False, "sltt", (3, 5, 7, 9)),
    (False, "bptt", (1, 3, 2, 5)),
    (True, "bptt", (4, 3, 5, 7, 3)),
    (True, "sltt", (1, 2, 3, 3, 5)),
    (True, "bptt", (3, 1, 4, 1, 6)),
]


@needs_ops
@pytest.mark.parametrize("multistep,grad,shape", CASES, ids=[f"{'m' if m else 's'}-{g}-{s}" for m, g, s in CASES])
def test_channels_last_through_the_ops_is_equal_in_its_layout_and_copies_nothing(multistep, grad, shape):
    gen = torch.Generator().manual_seed(sum(shape))
    x = (_channels_last_steps(*shape, gen) if multistep else
         torch.randn(*shape, generator=gen).contiguous(memory_format=CL)) * 1.5 + 0.5
    state_shape = shape[1:] if multistep else shape
    # the state in x's layout, as the step before left it (restore's output)
    v = torch.rand(*state_shape, generator=gen).contiguous(memory_format=CL)
    g_spikes = torch.randn(x.shape, generator=gen).contiguous(memory_format=CL) if not multistep else \
        _channels_last_steps(*shape, gen)
    g_v = torch.randn(state_shape, generator=gen).contiguous(memory_format=CL)
    cfg = _cfg(grad)
    results = {}
    for in_order in (False, True):
        xr = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        vr = v.detach().clone(memory_format=torch.preserve_format).requires_grad_(grad == "bptt")
        out = {}

        def forward():
            out["spikes"], out["v"] = _run(cfg, xr, vr, multistep, in_order)

        def backward():
            torch.autograd.backward((out["spikes"], out["v"]) if grad == "bptt" else (out["spikes"],),
                                    (g_spikes, g_v) if grad == "bptt" else (g_spikes,))

        copies = _copies_in_our_ops(forward) + _copies_in_our_ops(backward)
        results[in_order] = (out["spikes"], out["v"], xr.grad, vr.grad, copies)
    (s0, v0, gx0, gv0, copies_plain), (s1, v1, gx1, gv1, copies_in_order) = results[False], results[True]
    assert torch.equal(s1, s0) and torch.equal(v1, v0) and torch.equal(gx1, gx0)
    if grad == "bptt":
        assert torch.equal(gv1, gv0)
    # the outputs keep x's layout, so the next channels_last layer takes them as they are
    assert _same_layout(s1, x) and _same_layout(v1, v) and _same_layout(gx1, x)
    # run_neuron runs the op in x's own order itself (ops.py): no copy either way (the raw ops
    # copy a channels_last x and its gradient; a run_neuron that stopped viewing x so fails here)
    assert copies_plain == 0 and copies_in_order == 0


@needs_ops
def test_a_state_in_another_layout_still_gives_the_same_numbers():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 5, generator=gen).contiguous(memory_format=CL)
    v = torch.rand(2, 3, 4, 5, generator=gen)  # contiguous: the first step's state, made for NCHW
    cfg = _cfg("sltt")
    want = run_neuron(cfg, x, v, multistep=False, backend="cpu")
    got = _run(cfg, x, v, False, True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_per_neuron_params_follow_a_channels_last_input(backend):
    """A per-neuron threshold and beta of a channels_last step are viewed in the order the state
    is: the results and their gradients equal the default-layout call's."""
    if backend != "reference" and sltt_kernels.available_backends()[backend] is not None:
        pytest.skip(f"{backend} unavailable")
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(3, 2, 4, 3, 5, generator=g, dtype=torch.float64) * 2)
    beta0 = torch.rand(4, 3, 5, generator=g, dtype=torch.float64) * 0.5 + 0.4
    thr0 = torch.rand(2, 4, 3, 5, generator=g, dtype=torch.float64) + 0.5
    outs = []
    for layout in ("default", "channels_last"):
        xl = x.clone()
        if layout == "channels_last":  # each step [B, C, H, W] channels_last, time first
            xl = torch.stack([s.contiguous(memory_format=torch.channels_last) for s in x]).requires_grad_(True)
            xl = xl.detach().requires_grad_(True)
            assert not xl.is_contiguous()
        else:
            xl.requires_grad_(True)
        beta, thr = beta0.clone().requires_grad_(True), thr0.clone().requires_grad_(True)
        s, v = sltt_kernels.leaky_multistep(xl, beta=beta, threshold=thr, backend=backend)
        (s * torch.arange(s.numel(), dtype=s.dtype).reshape(s.shape).sin()).sum().backward()
        outs.append((s, v, xl.grad, beta.grad, thr.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
