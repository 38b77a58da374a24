"""Shared fixtures (the helpers the tests import are in helpers.py)."""

from __future__ import annotations

import pytest
import torch

from helpers import HAVE_EXT  # noqa: F401  (also switches the Triton interpreter on without a GPU)


@pytest.fixture(params=["avx2", "generic"])
def cpu_isa(request):
    """Runs a test once per CPU instruction-set path of the C++ kernels."""
    if not HAVE_EXT:
        pytest.skip("compiled extension unavailable")
    try:
        before = torch.ops.sltt_kernels._cpu_isa(request.param)
    except RuntimeError as e:
        pytest.skip(str(e))
    yield request.param
    torch.ops.sltt_kernels._cpu_isa("auto" if before == "auto" else before)
