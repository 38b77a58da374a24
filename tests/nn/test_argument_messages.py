"""Issue 23, item 13: arguments of the modules and helpers that named the wrong thing in their
error or took any value. Each test failed on the code before its fix (wrong name in the message,
the wrong exception type, or no error at all)."""

import fractions

import numpy as np
import pytest
import torch

from sltt_kernels import _config

from helpers import make_x  # noqa: F401  (also switches the Triton interpreter on without a GPU)


# number(): NumPy scalars and 0-d real numbers are numbers; bool and complex are not ------------


@pytest.mark.parametrize("value", [np.float32(2.5), np.float16(2.5), np.float64(2.5), np.array(2.5, dtype=np.float32),
                                   fractions.Fraction(5, 2), torch.tensor(2.5, dtype=torch.float32)],
                         ids=["np.float32", "np.float16", "np.float64", "0-d ndarray", "Fraction", "0-d tensor"])
def test_number_takes_real_scalars_of_any_kind(value):
    got = _config.number("tau", value, low=1.0)
    assert type(got) is float and got == 2.5


def test_number_takes_numpy_integers():
    assert _config.number("tau", np.int64(3)) == 3.0


@pytest.mark.parametrize("value", [True, np.True_, np.array(False), 1j, np.complex64(2.0), torch.tensor(2 + 0j), "2",
                                   None],
                         ids=["bool", "np.bool_", "0-d bool ndarray", "complex", "np.complex64", "complex tensor",
                              "str", "None"])
def test_number_refuses_bool_complex_and_non_numbers_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^tau must be a real number"):
        _config.number("tau", value)


def test_number_refuses_a_numpy_array_of_several_elements_by_shape():
    with pytest.raises(ValueError, match=r"tau must be a number, got a ndarray of shape \(2,\)"):
        _config.number("tau", np.array([2.0, 3.0]))


def test_number_keeps_its_range_and_finiteness_checks_for_numpy_values():
    with pytest.raises(ValueError, match="tau must be >= 1.0"):
        _config.number("tau", np.float32(0.5), low=1.0)
    with pytest.raises(ValueError, match="tau must be finite"):
        _config.number("tau", np.float32("nan"))


# The neuron modules: grad_mode, store_v_seq, backend, surrogate_function, step_mode, x --------

from sltt_kernels.nn import IFNode, LIFNode, ParametricLIFNode, PaperLIFNode, SLTTLIFNode  # noqa: E402

_MODULES = [LIFNode, IFNode, ParametricLIFNode, SLTTLIFNode, PaperLIFNode]


@pytest.mark.parametrize("cls", _MODULES, ids=lambda c: c.__name__)
def test_a_wrong_grad_mode_is_named_grad_mode_in_the_constructor_and_when_set(cls):
    with pytest.raises(ValueError, match=r"^grad_mode must be one of 'bptt', 'sltt', got 'online'"):
        cls(grad_mode="online")
    n = cls()
    with pytest.raises(ValueError, match=r"^grad_mode must be one of"):
        n.grad_mode = "online"  # refused when set, not at the next step under the kernels' name 'grad'
    with pytest.raises(TypeError, match=r"^grad_mode must be a string"):
        n.grad_mode = None
    n.grad_mode = "SLTT"  # the public keywords take any case
    assert n.grad_mode == "sltt"


def test_the_public_functions_keyword_is_still_named_grad():
    import sltt_kernels

    with pytest.raises(ValueError, match=r"^grad must be one of"):
        sltt_kernels.lif_multistep(make_x((2, 3)), grad="online")


@pytest.mark.parametrize("cls", _MODULES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("value", ["yes", None, 2, 0.5], ids=repr)
def test_store_v_seq_must_be_a_bool(cls, value):
    with pytest.raises(TypeError, match=r"^store_v_seq must be True or False"):
        cls(store_v_seq=value)
    n = cls()
    with pytest.raises(TypeError, match=r"^store_v_seq must be True or False"):
        n.store_v_seq = value
    assert n.store_v_seq is False and "v_seq" not in dict(n.named_memories())


def test_store_v_seq_still_takes_bools():
    n = LIFNode(store_v_seq=True, step_mode="m")
    n(make_x((3, 2, 4)))
    assert n.store_v_seq is True and n.v_seq.shape == (3, 2, 4)


@pytest.mark.parametrize("arg", ["tau", "v_threshold", "v_reset"])
def test_a_numpy_float32_module_argument_is_a_number(arg):
    x = make_x((3, 2, 5), torch.float64)
    value = {"tau": 3.0, "v_threshold": 0.75, "v_reset": -0.25}[arg]
    got = LIFNode(step_mode="m", **{arg: np.float32(value)})(x)
    want = LIFNode(step_mode="m", **{arg: value})(x)
    assert torch.equal(got, want)
    assert torch.equal(ParametricLIFNode(init_tau=np.float32(3.0), step_mode="m")(x),
                       ParametricLIFNode(init_tau=3.0, step_mode="m")(x))


@pytest.mark.parametrize("arg", ["tau", "v_threshold"])
@pytest.mark.parametrize("value", [True, 2 + 0j], ids=["bool", "complex"])
def test_a_bool_or_complex_module_argument_is_refused_by_name(arg, value):
    with pytest.raises(TypeError, match=rf"^{arg} must be a real number"):
        LIFNode(**{arg: value})


@pytest.mark.parametrize("cls", _MODULES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_forward_of_a_list_is_a_type_error_saying_a_tensor_is_expected(cls, step_mode):
    n = cls(step_mode=step_mode)
    x = make_x((3, 2, 4) if step_mode == "m" else (2, 4))
    with pytest.raises(TypeError, match=rf"^{cls.__name__}: x must be a torch.Tensor .*got list"):
        n(x.tolist())
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor .*got ndarray"):
        n(x.numpy())
    assert n(x).shape == x.shape  # the module still works after the refusal


def test_the_functional_forward_refuses_a_list_as_forward_does():
    n = LIFNode()
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor"):
        n.single_step_functional_forward(([0.5, 1.5],), (0.0,))


@pytest.mark.parametrize("value,error", [("gpu", ValueError), (3, TypeError)], ids=["gpu", "int"])
def test_a_wrong_backend_is_refused_when_set(value, error):
    with pytest.raises(error, match=r"^backend must be"):
        LIFNode(backend=value)
    n = LIFNode()
    with pytest.raises(error, match=r"^backend must be"):
        n.backend = value  # was accepted, and failed at the next step
    assert n.backend == "auto"
    n.backend = "reference"
    assert n(make_x((2, 3))).shape == (2, 3)


@pytest.mark.parametrize("value,error", [("bogus", ValueError), (3, TypeError)], ids=["unknown name", "int"])
def test_a_wrong_surrogate_function_is_named_surrogate_function(value, error):
    with pytest.raises(error, match=r"^surrogate_function must be one of"):
        LIFNode(surrogate_function=value)
    n = LIFNode()
    with pytest.raises(error, match=r"^surrogate_function must be one of"):
        n.surrogate_function = value
    n.surrogate_function = "atan"  # a name is a surrogate
    x = make_x((2, 3), requires_grad=True)
    n(x).sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("value", [1, None, ("m",)], ids=repr)
def test_a_step_mode_that_is_not_a_string_is_a_type_error(value):
    with pytest.raises(TypeError, match=r"step_mode must be a string"):
        LIFNode(step_mode=value)
    with pytest.raises(ValueError, match=r"step_mode must be one of"):
        LIFNode(step_mode="x")


# pack_spike_inputs: the backend is checked at the call -------------------------------------------


@pytest.mark.parametrize("value,error", [("gpu", ValueError), (None, TypeError)], ids=["gpu", "None"])
def test_pack_spike_inputs_checks_backend_at_the_call(value, error):
    from torch import nn

    from sltt_kernels.nn import pack_spike_inputs

    net = nn.Sequential(nn.Linear(4, 5), LIFNode(), nn.Linear(5, 3))
    with pytest.raises(error, match=r"^backend must be.*'auto', 'reference', 'cpu', 'cuda', 'triton'"):
        pack_spike_inputs(net, backend=value)
    assert type(net[2]) is nn.Linear  # nothing was changed


def test_snntorch_leaky_forward_of_a_list_is_a_type_error():
    from sltt_kernels.nn import Leaky

    with pytest.raises(TypeError, match=r"^Leaky: x must be a torch.Tensor .*got list"):
        Leaky(beta=0.5)([0.25, 1.5])


def test_snntorch_leaky_grad_mode_and_backend_are_named_as_such():
    from sltt_kernels.nn import Leaky

    with pytest.raises(ValueError, match=r"^grad_mode must be one of"):
        Leaky(beta=0.5, grad_mode="online")
    n = Leaky(beta=0.5)
    with pytest.raises(ValueError, match=r"^backend must be one of"):
        n.backend = "gpu"


# replace_neurons ---------------------------------------------------------------------------------


def test_replace_neurons_refuses_a_model_that_is_not_a_module_and_a_verbose_that_is_not_a_bool():
    from torch import nn

    from sltt_kernels.nn import replace_neurons

    with pytest.raises(TypeError, match=r"^replace_neurons: model must be an nn.Module, got list"):
        replace_neurons([nn.Linear(2, 2)])
    with pytest.raises(TypeError, match=r"^verbose must be True or False, got 'yes'"):
        replace_neurons(nn.Sequential(nn.Linear(2, 2)), verbose="yes")
    with pytest.raises(ValueError, match=r"^backend must be one of"):
        replace_neurons(nn.Sequential(nn.Linear(2, 2)), backend="gpu")


def test_ottt_lif_node_step_mode_that_is_not_a_string_is_a_type_error():
    from sltt_kernels.nn import OTTTLIFNode

    with pytest.raises(TypeError, match=r"^OTTTLIFNode: step_mode must be a string"):
        OTTTLIFNode(step_mode=None)
    with pytest.raises(ValueError, match=r"single-step only"):
        OTTTLIFNode(step_mode="m")


def test_counter_rules_of_a_counter_kind_that_is_not_a_string_is_a_type_error():
    from sltt_kernels import counters

    with pytest.raises(TypeError, match=r"^spikingjelly_rules: counter_kind must be a string"):
        counters.spikingjelly_rules(None)
    with pytest.raises(ValueError, match=r"counter_kind must be one of"):
        counters.spikingjelly_rules("Nope")
