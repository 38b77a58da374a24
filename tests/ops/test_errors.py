"""Bad input gets a clear error naming the argument; nothing is silently wrong."""

import pytest
import torch

import sltt_kernels
from sltt_kernels import reference

from helpers import HAVE_EXT, make_x

API_BACKENDS = ["reference", pytest.param("cpu", marks=pytest.mark.skipif(not HAVE_EXT, reason="no extension"))]


@pytest.mark.parametrize("backend", API_BACKENDS)
@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda b: sltt_kernels.lif_multistep(torch.tensor(1.0), backend=b), ValueError, ["x", "[T, ...]"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4, dtype=torch.int64), backend=b), TypeError, ["x", "int64"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(0, 4), backend=b), ValueError, ["x", "T >= 1"]),
        (lambda b: sltt_kernels.lif_multistep([1.0, 2.0], backend=b), TypeError, ["x", "Tensor"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), torch.zeros(5), backend=b), ValueError, ["v0", "(4,)"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), torch.zeros(4, device="meta"), backend=b), ValueError, ["v0", "meta"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), torch.zeros(4, dtype=torch.int32), backend=b), TypeError, ["v0"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), tau=0.5, backend=b), ValueError, ["tau", ">= 1"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), tau=float("nan"), backend=b), ValueError, ["tau"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), v_threshold=float("inf"), backend=b), ValueError, ["v_threshold"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), v_reset="0", backend=b), TypeError, ["v_reset"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), surrogate="gauss", backend=b), ValueError, ["surrogate", "gauss"]),
        (lambda b: sltt_kernels.lif_multistep(torch.ones(3, 4), grad="tbptt", backend=b), ValueError, ["grad", "tbptt"]),
        (lambda b: sltt_kernels.lif_step(torch.ones(3, 4), torch.zeros(3), backend=b), ValueError, ["v", "(3, 4)"]),
        (lambda b: sltt_kernels.lif_step(torch.ones(3, dtype=torch.bool), backend=b), TypeError, ["x"]),
    ],
    ids=["rank0", "int-dtype", "T0", "not-tensor", "v0-shape", "v0-device", "v0-dtype", "tau<1", "tau-nan",
         "threshold-inf", "v_reset-type", "surrogate", "grad", "step-v-shape", "step-bool"],
)
def test_bad_input_names_the_argument(backend, call, exc, words):
    with pytest.raises(exc) as info:
        call(backend)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_bad_surrogate_parameters():
    with pytest.raises(ValueError, match="width"):
        sltt_kernels.surrogate.Rect(0.0)
    with pytest.raises(ValueError, match="alpha"):
        sltt_kernels.surrogate.Sigmoid(-1.0)


def test_bad_backend_names():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="backend"):
        sltt_kernels.lif_multistep(x, backend="tpu")
    with pytest.raises(ValueError, match="cuda"):
        sltt_kernels.lif_multistep(x, backend="cuda")


def test_backend_env_override(monkeypatch):
    x = make_x((3, 5))
    monkeypatch.setenv("SLTT_KERNELS_BACKEND", "reference")
    assert sltt_kernels.select_backend(x) == "reference"
    monkeypatch.setenv("SLTT_KERNELS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="SLTT_KERNELS_BACKEND"):
        sltt_kernels.lif_multistep(x)


def test_reference_checks_too():
    with pytest.raises(ValueError, match="tau"):
        reference.lif_multistep(torch.ones(2, 2), tau=0.9)


@pytest.mark.parametrize("backend", API_BACKENDS)
@pytest.mark.parametrize("kw, words", [
    (dict(surrogate=5), ["surrogate", "int"]),
    (dict(grad=3), ["grad", "int"]),
    (dict(backend_=5), ["backend", "int"]),
    (dict(surrogate=[1.0]), ["surrogate", "list"]),
], ids=["surrogate-int", "grad-int", "backend-int", "surrogate-list"])
def test_wrong_types_are_type_errors(backend, kw, words):
    """One exception policy: a value of the wrong type is a TypeError, on every backend."""
    kw = dict(kw)
    b = kw.pop("backend_", backend)
    with pytest.raises(TypeError) as info:
        sltt_kernels.lif_multistep(torch.ones(3, 4), backend=b, **kw)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=pytest.mark.skipif(not HAVE_EXT, reason="no extension")),
                                     "triton", "fake"])
@pytest.mark.parametrize("field, value", [("neuron", "LIF"), ("reset", "Soft"), ("surrogate", "Rect"), ("save", "SG"),
                                          ("grad", "BPTT")])
def test_raw_op_strings_are_spelled_as_the_native_ops_spell_them(backend, field, value):
    """A raw op call gets one answer whichever implementation runs: the native ops refuse 'LIF',
    and so do the Triton kernels and the fake kernels (which once lower-cased it)."""
    from helpers import backend_op, config_of, neuron_kwargs

    args = config_of(neuron_kwargs("soft", surrogate="rect", grad="bptt")).args("sg")._replace(**{field: value})
    if backend == "triton" and sltt_kernels.available_backends()["triton"] is not None:
        pytest.skip(f"Triton unavailable: {sltt_kernels.available_backends()['triton']}")
    op = backend_op("cpu" if backend == "fake" else backend, "neuron_multistep_fwd")
    x = torch.ones(2, 3, device="meta" if backend == "fake" else "cpu")
    with pytest.raises(ValueError, match=field):
        op(x, None, None, *args)
