"""snnTorch drop-in (issue 22, items 8-13 and 15): our Leaky and SnnTorchLeaky against snnTorch's own
Leaky, through snnTorch's utilities (utils.reset, backprop, _final_layer_check, NIR export), its
state_dict, its surrogates and a user's usual training loop."""

import copy
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import sltt_kernels
from sltt_kernels.nn import Leaky
from sltt_kernels.nn.leaky import SnnTorchLeaky
from helpers import TwoLeakyLayers

snn = pytest.importorskip("snntorch", reason="snnTorch not installed")
from snntorch import surrogate as snn_surrogate  # noqa: E402
from snntorch import utils as snn_utils  # noqa: E402

HAS_FAST_SIGMOID = hasattr(sltt_kernels.surrogate, "FastSigmoid")
needs_fast_sigmoid = pytest.mark.skipif(not HAS_FAST_SIGMOID,
                                        reason="sltt_kernels.surrogate.FastSigmoid is not in this checkout yet")


def _tutorial_net(cls, spike_grad_factory, seed=0, **kw):
    """snnTorch's tutorial network: Linear -> Leaky -> Linear -> Leaky, init_hidden=True, the last
    one with output=True (returns spk, mem)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, 20),
        cls(beta=0.85, spike_grad=spike_grad_factory(), init_hidden=True, **kw),
        nn.Linear(20, 5),
        cls(beta=0.7, threshold=0.8, spike_grad=spike_grad_factory(), init_hidden=True, output=True, **kw),
    )


def _batches(n, T=9, B=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(T, B, 12, generator=g) * 1.5, torch.randint(0, 5, (B,), generator=g)) for _ in range(n)]


def _train_users_loop(net, batches, lr=0.3):
    """The loop of snnTorch's tutorials: utils.reset per batch, one step at a time, a loss on the
    output membrane, SGD. Returns the spikes fired (so a test can check the neurons did fire)."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    fired = 0
    for x, y in batches:
        snn_utils.reset(net)
        mems = []
        for t in range(x.shape[0]):
            spk, mem = net(x[t])
            mems.append(mem)
            fired += int(spk.sum())
        loss = nn.functional.cross_entropy(torch.stack(mems).sum(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return fired


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def _close_lists(a, b, tol):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        torch.testing.assert_close(q, p, rtol=tol, atol=tol)


def _distance(a, b):
    return max(float((p.double() - q.double()).abs().max()) for p, q in zip(a, b))


SURROGATES = [pytest.param(lambda: snn_surrogate.atan(), id="atan"),
              pytest.param(lambda: snn_surrogate.fast_sigmoid(slope=25), id="fast_sigmoid", marks=needs_fast_sigmoid)]


# -- done when: a user's loop trains to snnTorch's weights ---------------------------------------

@pytest.mark.parametrize("spike_grad", SURROGATES)
def test_users_loop_trains_to_snntorchs_weights(spike_grad, snntorch_spikes_keep_dtype):
    batches = _batches(4)
    trained = {}
    for dtype in (torch.float32, torch.float64):
        theirs = _tutorial_net(snn.Leaky, spike_grad).to(dtype)
        ours = _tutorial_net(Leaky, spike_grad).to(dtype)
        replaced = copy.deepcopy(theirs)
        report = sltt_kernels.replace_neurons(replaced)
        assert [type(m) for _, _, m in report.replaced] == [Leaky, Leaky] and not report.skipped
        start = _params(theirs)
        _close_lists(start, _params(ours), 0.0)
        data = [(x.to(dtype), y) for x, y in batches]
        fired = [_train_users_loop(net, data) for net in (theirs, ours, replaced)]
        assert fired[0] > 50 and fired[1] == fired[0] and fired[2] == fired[0]
        assert _distance(start, _params(theirs)) > 1e-2  # it did learn
        trained[dtype] = [_params(net) for net in (theirs, ours, replaced)]
    # the same computation: float64 weights equal to rounding
    theirs64, ours64, replaced64 = trained[torch.float64]
    assert _distance(theirs64, ours64) < 1e-10 and _distance(theirs64, replaced64) < 1e-10
    # the user's float32 loop: two float32 runs, each about `floor` (snnTorch's own distance from
    # its float64 run) away from the exact weights, differ by about twice that at most (measured:
    # on CPU: 1.7 x floor with atan, whose floor is 1.4e-5; 0.44 x with fast_sigmoid, floor 1.9e-3)
    theirs32, ours32, replaced32 = trained[torch.float32]
    floor = _distance(theirs32, theirs64)
    assert 0 < floor < 1e-2
    assert _distance(theirs32, ours32) <= 3 * floor and _distance(theirs32, replaced32) <= 3 * floor


def test_utils_reset_zeroes_and_detaches_our_membrane():
    net = _tutorial_net(Leaky, snn_surrogate.atan)
    x = torch.randn(6, 12) * 2
    for _ in range(3):
        net(x)
    mem = net[1].mem
    assert mem.shape == (6, 20) and mem.abs().sum() > 0 and mem.requires_grad
    snn_utils.reset(net)
    for lif in (net[1], net[3]):
        assert torch.equal(lif.mem, torch.zeros_like(lif.mem)) and not lif.mem.requires_grad
    # after the reset the next batch starts from rest: the same as a fresh network
    fresh = _tutorial_net(Leaky, snn_surrogate.atan)
    torch.testing.assert_close(net(x)[1], fresh(x)[1], rtol=0, atol=0)


def test_isinstance_and_final_layer_check():
    for lif in (Leaky(0.5), SnnTorchLeaky(0.5, reset_delay=False)):
        assert isinstance(lif, snn.Leaky) and isinstance(lif, snn.SpikingNeuron)
        assert lif in snn.SpikingNeuron.instances  # what utils.reset walks
    net = _tutorial_net(Leaky, snn_surrogate.atan)
    assert snn_utils._final_layer_check(net) == 2  # (spk, mem), as snnTorch's own


@pytest.mark.parametrize("K", [3, 9])
def test_snntorch_backprop_tbptt_and_bptt(K):
    """snnTorch's backprop module: TBPTT detaches `mem` in place every K steps (detach_hidden)."""
    pytest.importorskip("snntorch.backprop")
    import warnings

    from snntorch import backprop
    from snntorch import functional as SF

    g = torch.Generator().manual_seed(2)
    data = [(torch.randn(6, 12, generator=g) * 2, torch.randint(0, 5, (6,), generator=g)) for _ in range(3)]
    finals = []
    for cls in (snn.Leaky, Leaky):
        net = _tutorial_net(cls, snn_surrogate.atan)
        opt = torch.optim.SGD(net.parameters(), lr=0.3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            backprop.TBPTT(net, data, opt, SF.mse_membrane_loss(), num_steps=9, time_var=False, K=K)
            backprop.BPTT(net, data, opt, SF.ce_rate_loss(), num_steps=9, time_var=False)
        finals.append(_params(net))
    _close_lists(finals[0], finals[1], 2e-5)


def test_detach_hidden_cuts_the_graph_of_our_membrane():
    lif = Leaky(0.9, init_hidden=True)
    x = torch.randn(4, 7, requires_grad=True)
    lif(x)
    snn.Leaky.detach_hidden()  # in place on mem, as snnTorch's truncated BPTT does
    assert not lif.mem.requires_grad
    y = torch.randn(4, 7, requires_grad=True)
    lif(y)
    lif.mem.sum().backward()
    assert y.grad is not None and x.grad is None  # the graph before the detach is gone


def test_nir_export_sees_our_leaky(capsys):
    pytest.importorskip("nir", reason="nir not installed")
    nirtorch = pytest.importorskip("nirtorch", reason="nirtorch not installed")
    from snntorch.export_nir import _extract_snntorch_module

    theirs = _extract_snntorch_module(snn.Leaky(beta=0.8, threshold=0.7))
    ours = _extract_snntorch_module(Leaky(beta=0.8, threshold=0.7))
    assert type(ours) is type(theirs) and type(ours).__name__ == "LIF"
    for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        assert (getattr(ours, field) == getattr(theirs, field)).all(), field
    graphs = []
    for cls in (snn.Leaky, Leaky):
        net = _tutorial_net(cls, snn_surrogate.atan)
        g = nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.randn(1, 12),
                                       ignore_submodules_of=[snn.RLeaky, snn.RSynaptic])
        graphs.append(({k: type(v).__name__ for k, v in g.nodes.items()}, sorted(g.edges)))
    assert graphs[1] == graphs[0] and list(graphs[1][0].values()).count("LIF") == 2
    assert "not implemented" not in capsys.readouterr().out


# -- item 9: state_dict ---------------------------------------------------------------------------

CONFIGS = [dict(beta=0.8), dict(beta=0.6, threshold=0.5, reset_mechanism="zero"),
           dict(beta=torch.tensor(0.3, dtype=torch.float64), threshold=2, reset_mechanism="none",
                graded_spikes_factor=torch.tensor([1.5]))]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_state_dict_is_snntorchs(cfg):
    theirs, ours = snn.Leaky(**cfg).state_dict(), Leaky(**cfg).state_dict()
    assert list(ours) == list(theirs) == ["threshold", "graded_spikes_factor", "reset_mechanism_val", "beta"]
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    if cfg.get("reset_mechanism", "subtract") != "none":
        delayed = SnnTorchLeaky(**cfg, reset_delay=False).state_dict()
        theirs = snn.Leaky(**cfg, reset_delay=False).state_dict()
        assert list(delayed) == list(theirs) and all(torch.equal(delayed[k], theirs[k]) for k in theirs)


def _two_layer(cls, **kw):
    torch.manual_seed(3)
    return TwoLeakyLayers(lambda: cls(beta=0.9, **kw), lambda: cls(beta=0.9, **kw))


def test_snntorch_checkpoint_loads_strictly_both_ways():
    # a checkpoint whose neurons differ from the models it is loaded into
    source = _two_layer(snn.Leaky, threshold=0.6, reset_mechanism="zero")
    with torch.no_grad():
        source.fc1.weight.mul_(1.7)
    checkpoint = source.state_dict()
    x = torch.randn(7, 5, 8)
    ours = _two_layer(Leaky)
    ours.load_state_dict(checkpoint, strict=True)
    replaced = _two_layer(snn.Leaky)
    sltt_kernels.replace_neurons(replaced)
    replaced.load_state_dict(checkpoint, strict=True)
    assert ours.lif1.reset_mechanism == "zero" and float(ours.lif2.threshold) == pytest.approx(0.6)
    expected = source(x)
    assert expected.abs().sum() > 0
    for model in (ours, replaced):
        torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-6)
    back = _two_layer(snn.Leaky, threshold=0.6, reset_mechanism="zero")  # snnTorch keeps its init-time mechanism
    back.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(back(x), expected, rtol=0, atol=0)


def test_numbers_follow_the_buffers():
    lif = Leaky(0.9)
    x = torch.randn(3, 4) + 0.5
    first = lif(x, torch.zeros(3, 4))[1]
    with torch.no_grad():
        lif.beta.fill_(0.5)  # in place: seen at the next step
    torch.testing.assert_close(lif(x, first)[1], 0.5 * first + x - (first > 1.0).float(), rtol=1e-6, atol=1e-6)
    lif.threshold = torch.tensor(0.25)  # a new buffer tensor
    assert lif(x, torch.zeros(3, 4))[0].sum() == (x > 0.25).sum()
    lif.double()
    assert lif.beta.dtype == torch.float64 and lif(x.double())[1].dtype == torch.float64
    lif.beta = torch.tensor([0.5, 0.6, 0.7, 0.8], dtype=torch.float64)  # per neuron: read as a tensor
    mem = torch.rand(3, 4, dtype=torch.float64)
    torch.testing.assert_close(lif(x.double(), mem)[1], lif.beta * mem + x.double() - 0.25 * (mem > 0.25).double())
    lif.beta = torch.rand(5)
    with pytest.raises(ValueError, match="beta must have one element or a shape that broadcasts"):
        lif(x)


# -- item 10: reset_mechanism ---------------------------------------------------------------------

def test_reset_mechanism_val_and_setter():
    for code, mech in enumerate(("subtract", "zero", "none")):
        lif = Leaky(0.5, reset_mechanism=mech)
        assert int(lif.reset_mechanism_val) == int(snn.Leaky(0.5, reset_mechanism=mech).reset_mechanism_val) == code
        assert lif.reset_mechanism == mech
    lif = Leaky(0.8, threshold=0.5)
    lif.reset_mechanism = "zero"
    assert int(lif.reset_mechanism_val) == 1 and lif.reset_mechanism_val.dtype == torch.int64
    x = torch.rand(3, 6, 4) + 0.3
    zero = snn.Leaky(0.8, threshold=0.5, reset_mechanism="zero")
    for t in range(3):  # the new mechanism runs from the next step
        torch.testing.assert_close(lif(x[t])[1], zero(x[t])[1], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="reset_mechanism"):
        lif.reset_mechanism = "hard"
    assert lif.reset_mechanism == "zero"
    with pytest.raises(ValueError, match="reset_mechanism"):
        Leaky(0.5, reset_mechanism="soft")
    with pytest.raises(TypeError, match="reset_mechanism"):
        Leaky(0.5, reset_mechanism=1)
    with pytest.raises(ValueError, match="reset_mechanism='none'"):
        SnnTorchLeaky(0.5, reset_mechanism="none")


# -- item 11: snnTorch's surrogates ---------------------------------------------------------------

def _spikes_and_grads(lif, x):
    x = x.clone().requires_grad_(True)
    mem, out = None, []
    for t in range(x.shape[0]):
        spk, mem = lif(x[t], mem)
        out.append(spk * (t + 1) + mem)
    torch.stack(out).square().sum().backward()
    return torch.stack(out).detach(), x.grad


@pytest.mark.parametrize("make", [pytest.param(lambda: snn_surrogate.atan(alpha=3.0), id="atan3"),
                                  pytest.param(lambda: snn_surrogate.fast_sigmoid(slope=25), id="fast_sigmoid",
                                               marks=needs_fast_sigmoid),
                                  pytest.param(lambda: snn_surrogate.fast_sigmoid(slope=7.5), id="fast_sigmoid7.5",
                                               marks=needs_fast_sigmoid)])
def test_snntorch_surrogates_are_fused(make, snntorch_spikes_keep_dtype):
    x = torch.randn(6, 5, 9, dtype=torch.float64) * 1.2 + 0.3
    theirs = _spikes_and_grads(snn.Leaky(0.8, spike_grad=make()), x)
    ours = _spikes_and_grads(Leaky(0.8, spike_grad=make()), x)
    assert theirs[0].abs().sum() > 0 and theirs[1].abs().sum() > 0
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-10, atol=1e-10)


def test_snntorch_surrogate_objects_map_to_ours():
    assert Leaky(0.5, spike_grad=snn_surrogate.atan(alpha=3.0)).spike_grad == sltt_kernels.surrogate.ATan(3.0)
    assert Leaky(0.5).spike_grad == sltt_kernels.surrogate.ATan(2.0)  # snnTorch's default
    lif = Leaky(0.5)
    lif.spike_grad = snn_surrogate.atan(alpha=1.5)  # converted when set, too
    assert lif.spike_grad == sltt_kernels.surrogate.ATan(1.5)
    if HAS_FAST_SIGMOID:
        assert (Leaky(0.5, spike_grad=snn_surrogate.fast_sigmoid(slope=10)).spike_grad
                == sltt_kernels.surrogate.FastSigmoid(slope=10.0))


@pytest.mark.parametrize("make", [snn_surrogate.sigmoid, snn_surrogate.straight_through_estimator,
                                  snn_surrogate.triangular, lambda: (lambda u: (u > 0).float())])
def test_other_surrogates_are_refused_and_kept_by_replace(make):
    with pytest.raises(ValueError, match="spike_grad"):
        Leaky(0.5, spike_grad=make())
    net = nn.Sequential(nn.Linear(3, 3), snn.Leaky(0.5, spike_grad=make()))
    report = sltt_kernels.replace_neurons(net)
    assert not report.replaced and "surrogate" in report.skipped[0][2]
    assert isinstance(net[1], snn.Leaky) and type(net[1]).__module__.startswith("snntorch")


# -- item 12: graded spikes -----------------------------------------------------------------------

def test_replace_keeps_learnable_graded_spikes_and_its_parameter():
    net = nn.Sequential(nn.Linear(4, 4), snn.Leaky(0.5, learn_graded_spikes_factor=True), snn.Leaky(0.5),
                        snn.Leaky(0.5, graded_spikes_factor=2.0))
    factor = net[1].graded_spikes_factor
    assert isinstance(factor, nn.Parameter) and float(factor.detach()) == 1.0
    report = sltt_kernels.replace_neurons(net)
    kept = {path: why for path, _, why in report.skipped}
    assert [p for p, _, _ in report.replaced] == ["2"]
    assert "learnable graded_spikes_factor" in kept["1"] and "graded spikes" in kept["3"]
    assert any(p is factor for p in net.parameters())


def test_graded_spikes_factor_scales_spikes_and_their_gradient():
    x = torch.randn(5, 4, 6) * 1.5
    theirs = _spikes_and_grads(snn.Leaky(0.7, graded_spikes_factor=2.5), x)
    ours = _spikes_and_grads(Leaky(0.7, graded_spikes_factor=2.5), x)
    assert (theirs[0] - ours[0]).abs().max() < 1e-5 and ours[0].abs().sum() > 0
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(learn_graded_spikes_factor=True, graded_spikes_factor=1.5),
                                dict(surrogate_disable=True), dict(surrogate_disable=True, learn_graded_spikes_factor=True)])
def test_learnable_spike_factor_and_surrogate_disable(kw):
    x = torch.randn(5, 4, 6) * 1.5
    ours, theirs = Leaky(0.7, **kw), snn.Leaky(0.7, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    got, want = _spikes_and_grads(ours, x), _spikes_and_grads(theirs, x)
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
    assert got[0].abs().sum() > 0 and got[1].abs().sum() > 0
    if kw.get("learn_graded_spikes_factor"):
        assert ours.graded_spikes_factor.grad.abs() > 0
        torch.testing.assert_close(ours.graded_spikes_factor.grad, theirs.graded_spikes_factor.grad, rtol=1e-5,
                                   atol=1e-5)


# -- item 13: reset_mem and the argument order ----------------------------------------------------

def test_reset_mem_returns_zeros_of_the_last_membrane():
    for cls, kw in ((Leaky, {}), (SnnTorchLeaky, {"reset_delay": False})):
        ours, theirs = cls(0.6, **kw), snn.Leaky(0.6, **kw)
        assert torch.equal(ours.reset_mem(), theirs.reset_mem()) and ours.reset_mem().shape == (0,)
        x = torch.rand(3, 2, 5) + 0.5
        ours(x[0])
        theirs(x[0])
        for mem in (ours.reset_mem(), ours.init_leaky()):
            assert mem.shape == theirs.reset_mem().shape == (2, 5) and torch.equal(mem, torch.zeros(2, 5))
        assert torch.equal(ours.mem, torch.zeros(2, 5))
        torch.testing.assert_close(ours(x[1])[1], theirs(x[1])[1])  # and the next step starts from zeros
        # a batch of another size starts from zeros, as snnTorch's
        torch.testing.assert_close(ours(x[2, :1])[1], theirs(x[2, :1])[1])


def test_constructor_takes_snntorchs_positional_order():
    snn_params = list(inspect.signature(snn.Leaky).parameters.values())
    for cls in (Leaky, SnnTorchLeaky):
        ours = list(inspect.signature(cls).parameters.values())[:len(snn_params)]
        assert [p.name for p in ours] == [p.name for p in snn_params]
        defaults = {p.name: p.default for p in snn_params}
        defaults["reset_delay"] = cls.reset_delay
        assert {p.name: p.default for p in ours} == defaults
    args = (0.5, 0.7, snn_surrogate.atan(), False, False, False, False, False, "zero", False, True, 1.0, False)
    ours, theirs = Leaky(*args), snn.Leaky(*args)
    assert ours.output and ours.reset_mechanism == "zero" and float(ours.threshold) == pytest.approx(0.7)
    x = torch.rand(4, 3, 2) + 0.4
    for t in range(4):
        torch.testing.assert_close(ours(x[t]), theirs(x[t]))


def test_what_is_not_fused_is_refused_with_the_argument_named():
    for kw, match in [(dict(inhibition=True), "inhibition"), (dict(reset_delay=False), "SnnTorchLeaky"),
                      (dict(beta=torch.empty(0)), "beta must hold at least one number"),
                      (dict(graded_spikes_factor=torch.ones(2)), "graded_spikes_factor must hold one number"),
                      (dict(beta=float("nan")), "beta must be finite"),
                      (dict(threshold=torch.tensor([1.0, float("inf")])), "threshold must be finite")]:
        kw = {"beta": 0.5, **kw}
        with pytest.raises(ValueError, match=match):
            Leaky(**kw)
    with pytest.raises(TypeError, match="beta"):
        Leaky("0.5")
    with pytest.raises(TypeError, match="threshold"):
        Leaky(0.5, threshold=True)
    for name in ("init_hidden", "output", "surrogate_disable"):
        with pytest.raises(TypeError, match=f"{name} must be True or False"):
            Leaky(0.5, **{name: "yes"})
    with pytest.raises(TypeError, match="init_hidden=True"):
        Leaky(0.5, init_hidden=True)(torch.rand(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reset_delay=True"):
        SnnTorchLeaky(0.5, reset_delay=True)
    with pytest.raises(ValueError, match="beta must be < 1"):
        SnnTorchLeaky(1.0)


# -- item 15: SnnTorchLeaky (reset_delay=False) --------------------------------------------------

def test_snntorch_leaky_reset_delay_false_has_snntorchs_state_and_calls():
    lif = SnnTorchLeaky(0.75, threshold=0.9, reset_mechanism="zero")
    for name in ("init_leaky", "reset_mem", "mem", "beta", "threshold", "reset_mechanism"):
        assert hasattr(lif, name), name
    assert lif.mem.shape == (0,) and lif.reset_mechanism == "zero" and float(lif.beta) == pytest.approx(0.75)
    theirs = snn.Leaky(0.75, threshold=0.9, reset_mechanism="zero", reset_delay=False)
    x = torch.randn(6, 4, 5) * 0.6
    mem_ours, mem_theirs = lif.init_leaky(), theirs.init_leaky()  # snnTorch's empty starting membrane
    for t in range(6):
        spk_o, mem_ours = lif(x[t], mem_ours)
        spk_t, mem_theirs = theirs(x[t], mem_theirs)
        assert not (mem_theirs >= 0.9).any()  # the condition under which the two are one neuron
        torch.testing.assert_close(spk_o, spk_t)
        torch.testing.assert_close(mem_ours, mem_theirs, rtol=1e-6, atol=1e-6)
    assert lif.tau == pytest.approx(4.0) and lif.v_reset == 0.0 and lif.v_threshold == pytest.approx(0.9)
    hidden = SnnTorchLeaky(0.75, init_hidden=True)
    assert isinstance(hidden(x[0]), torch.Tensor) and hidden.mem.shape == (4, 5)


def test_step_mode_m_runs_the_sequence_in_one_call():
    x = torch.randn(7, 3, 4) * 1.3
    seq = Leaky(0.8, step_mode="m")
    spikes, mem = seq(x)
    theirs = snn.Leaky(0.8)
    out = [theirs(x[t]) for t in range(7)]
    torch.testing.assert_close(spikes, torch.stack([s for s, _ in out]))
    torch.testing.assert_close(mem, out[-1][1], rtol=1e-6, atol=1e-6)


def test_same_behaviour_without_snntorch(tmp_path):
    """snnTorch optional: with it blocked, our Leaky is a plain module with the same numbers."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["snntorch"] = None  # as if not installed
        import torch
        from sltt_kernels.nn import Leaky
        from sltt_kernels.nn.leaky import SnnTorchLeaky
        torch.manual_seed(0)
        x = torch.randn(4, 3, 5) * 1.5
        lif = Leaky(0.7, threshold=0.8, reset_mechanism="zero", graded_spikes_factor=1.5)
        out = [lif(x[t]) for t in range(4)]
        other = SnnTorchLeaky(0.6)
        torch.save(dict(bases=[c.__name__ for c in type(lif).__mro__], sd=lif.state_dict(),
                        other_sd=other.state_dict(), out=out, reset=lif.reset_mem()), r"{tmp_path / 'out.pt'}")
    """)
    # the subprocess imports the sltt_kernels this process imported (in CI the installed one, with its
    # compiled ops; the checkout beside the tests has none, and the reference rounds differently)
    package_parent = str(Path(sltt_kernels.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path), env=env)
    got = torch.load(tmp_path / "out.pt")
    assert "Leaky" in got["bases"] and not any(b in got["bases"] for b in ("SpikingNeuron", "LIF"))
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5) * 1.5
    lif = Leaky(0.7, threshold=0.8, reset_mechanism="zero", graded_spikes_factor=1.5)
    out = [lif(x[t]) for t in range(4)]
    for key, value in lif.state_dict().items():
        assert torch.equal(got["sd"][key], value)
    assert list(got["other_sd"]) == list(SnnTorchLeaky(0.6).state_dict())
    for (s1, m1), (s2, m2) in zip(got["out"], out):
        assert torch.equal(s1, s2) and torch.equal(m1, m2)
    assert torch.equal(got["reset"], lif.reset_mem())


def test_snntorchs_instance_list_resets_copies_and_forgets_dead_networks():
    import gc
    import weakref

    net = nn.Sequential(nn.Linear(3, 4), Leaky(0.5, init_hidden=True))
    twin = copy.deepcopy(net)  # snnTorch's own copies are not listed; ours are
    twin(torch.rand(2, 3) + 2.0)
    snn_utils.reset(twin)
    assert torch.equal(twin[1].mem, torch.zeros(2, 4))
    gone = weakref.ref(twin[1])
    gc.collect()  # earlier tests' dead neurons leave the list now, not during the count below
    count = len(snn.SpikingNeuron.instances)
    del twin
    gc.collect()
    assert gone() is None and len(snn.SpikingNeuron.instances) == count - 1  # no membrane or graph kept
    snn_utils.reset(net)  # and the list still works
