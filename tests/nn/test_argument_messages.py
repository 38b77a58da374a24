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
