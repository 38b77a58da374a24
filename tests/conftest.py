"""Shared fixtures (the helpers the tests import are in helpers.py)."""

from __future__ import annotations

import random
import zlib

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


@pytest.fixture
def seed(request) -> int:
    """A seed of this test's own, the same on every run: the CRC-32 of its module and name (its
    parameters included), so each case draws its own inputs and a failure reproduces alone.
    torch's and random's global generators are seeded with it too (restored afterwards)."""
    value = zlib.crc32(f"{request.node.module.__name__}::{request.node.name}".encode())
    torch_state, random_state = torch.random.get_rng_state(), random.getstate()
    torch.manual_seed(value)
    random.seed(value)
    yield value
    torch.random.set_rng_state(torch_state)
    random.setstate(random_state)


@pytest.fixture
def snntorch_spikes_keep_dtype(monkeypatch):
    """snnTorch's surrogates return float32 spikes whatever the input dtype (so a float64 network
    of its neurons computes its gradients through float32 spikes); here its atan and fast sigmoid
    keep the input's dtype. The values (0 and 1) and the backward are snnTorch's own."""
    snn_surrogate = pytest.importorskip("snntorch.surrogate", reason="snnTorch not installed")
    for cls in (snn_surrogate.ATan, snn_surrogate.FastSigmoid):
        original = cls.forward

        def forward(ctx, input_, param, _original=original):
            return _original(ctx, input_, param).to(input_.dtype)

        monkeypatch.setattr(cls, "forward", staticmethod(forward))
