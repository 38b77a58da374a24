"""The registries are complete: every registered neuron model and surrogate has each of its pieces
(docs/design.md, section 6, the checklist): a name the native ops and the Triton kernels know, the
reference's equations, the counters' counts, a module, a replace_neurons mapping from its peer, and
a row in the tests' tables. A model or a surrogate added without one of them fails here."""

from __future__ import annotations

import inspect

import pytest
import torch

import sltt_kernels
from sltt_kernels import _config, counters, reference
from sltt_kernels import nn as snn
from sltt_kernels import surrogate as sg

from helpers import DEVICE_OF, KERNEL_BACKENDS, MODEL_CASES, SURROGATES, backend_op, make_x

MODELS = list(_config.MODELS)
KINDS = list(sg.SURROGATES)


def _case_args(model: str, surrogate: str = "rect") -> _config.NeuronArgs:
    cfg = MODEL_CASES[model][0]
    kind, alpha = _config.surrogate_of(surrogate)
    return cfg._replace(surrogate=kind, surrogate_alpha=alpha)


def test_codes_are_list_positions():
    assert [m.code for m in _config.MODELS.values()] == list(range(len(MODELS)))
    assert [c.code for c in sg.SURROGATES.values()] == list(range(len(KINDS)))
    assert _config.SURROGATE_KINDS == tuple(KINDS)


@pytest.mark.parametrize("model", MODELS)
def test_model_has_every_python_piece(model):
    m = _config.MODELS[model]
    assert set(m.resets) <= set(_config.RESETS) and m.resets
    assert callable(m.charge) and callable(m.reset) and callable(m.check_values)
    assert m.configs and all(callable(c) for c in m.configs)
    # counters: a count for every reset it has
    assert set(m.counts) == set(m.resets), f"counts of {model!r} must cover its resets {m.resets}"
    # public functions: a multi-step and a one-step one, exported by the package and the reference
    names = [fn.__name__ for fn in m.functions]
    assert any(n.endswith("_multistep") for n in names) and any(n.endswith("_step") for n in names)
    for name in names:
        assert getattr(sltt_kernels, name) is getattr(sltt_kernels.ops, name)
        assert callable(getattr(reference, name))
        assert "x: [" in inspect.getdoc(getattr(sltt_kernels, name)) or name.endswith("_step")


@pytest.mark.parametrize("model", MODELS)
def test_model_has_a_test_row_and_a_module(model):
    assert model in MODEL_CASES, f"tests/helpers.py MODEL_CASES has no row for {model!r}"
    covered = set()
    for name in snn.__all__:
        cls = getattr(snn, name)
        if isinstance(cls, type) and issubclass(cls, snn.BaseNode) and cls is not snn.BaseNode:
            covered.add(cls.neuron_model)
    assert model in covered, f"no module of sltt_kernels.nn runs neuron {model!r} (its `neuron_model`)"


# A peer's module for each model: replace_neurons must map it to ours.
def _peer(model: str):
    if model in ("lif", "if"):
        neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
        return neuron.LIFNode() if model == "lif" else neuron.IFNode()
    if model == "leaky":
        snntorch = pytest.importorskip("snntorch")
        return snntorch.Leaky(beta=0.9)
    raise AssertionError(f"no peer module listed for {model!r}: add one here (replace_neurons maps it)")


@pytest.mark.parametrize("model", MODELS)
def test_model_has_a_replace_mapping(model):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), _peer(model))
    report = sltt_kernels.replace_neurons(net)
    assert len(report.replaced) == 1, str(report)
    assert net[1]._config_now().neuron == model


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("model", MODELS)
def test_model_runs_on_every_kernel(backend, model):
    """The native ops and the Triton kernels know the model by its name, for each of its resets."""
    dev = DEVICE_OF[backend]
    fwd = backend_op(backend, "neuron_multistep_fwd")
    for reset in _config.MODELS[model].resets:
        args = _case_args(model)._replace(reset=reset, v_reset=0.0)
        x = make_x((3, 37), torch.float64, dev)
        s, v, _ = fwd(x, None, None, *args)
        want_s, _, want_v = reference.multistep_states(args, x.cpu())
        assert torch.equal(s.cpu(), want_s.to(s.dtype)), f"{model} {reset}"
        torch.testing.assert_close(v.cpu(), want_v[-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_surrogate_has_every_python_piece(kind):
    cls = sg.SURROGATES[kind]
    obj = cls()
    assert sg.resolve(kind) == obj and obj.kind == kind and cls.param_name
    d = torch.linspace(-2, 2, 41, dtype=torch.float64)
    g = sg.surrogate_grad(d, kind, obj.param)
    assert g.dtype == d.dtype and g.shape == d.shape and bool((g >= 0).all()) and bool((g > 0).any())
    assert any(s.kind == kind for s in SURROGATES.values()), f"tests/helpers.py SURROGATES has no {kind!r} row"


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_surrogate_runs_on_every_kernel(backend, kind):
    """The native ops and the Triton kernels know the surrogate: its gradient from a saved h (BPTT
    and SLTT) equals the reference's formula."""
    dev = DEVICE_OF[backend]
    args = _case_args("lif", kind)
    fwd, bwd = backend_op(backend, "neuron_multistep_fwd"), backend_op(backend, "neuron_multistep_bwd")
    x = make_x((3, 37), torch.float64, dev)
    gs = make_x((3, 37), torch.float64, dev, seed=7)
    for grad in _config.GRAD_MODES:
        a = args._replace(grad=grad, save="h")
        _, _, saved = fwd(x, None, None, *a)
        gx = bwd(gs, None, saved, None, *a)[0]
        xr = x.cpu().requires_grad_(True)
        s, _ = reference.run(a, xr)
        (want,) = torch.autograd.grad((s * gs.cpu()).sum(), xr)
        torch.testing.assert_close(gx.cpu(), want, rtol=1e-11, atol=1e-12)


def test_counters_use_the_registry():
    for model in _config.MODELS.values():
        for reset, (flops, acs) in model.counts.items():
            args = _case_args(model.name)._replace(reset=reset)
            assert counters.neuron_flops(args, 10) == 10 * flops
            assert counters.neuron_acs(args, 10) == 10 * acs
