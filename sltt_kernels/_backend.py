"""Which backend runs a call: the one small function that every backend extends."""

from __future__ import annotations

import os
import warnings

import torch

from . import _ext

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")
# SpikingJelly's backend names (code written for it passes them): the nearest of ours.
ALIASES = {"torch": "auto", "cupy": "auto"}
ENV_VAR = "SLTT_KERNELS_BACKEND"
_warned_aliases: set = set()


def check_backend_name(backend) -> str:
    """The backend name, checked; SpikingJelly's 'torch' and 'cupy' become 'auto' (said once)."""
    if isinstance(backend, str) and backend in ALIASES:
        if backend not in _warned_aliases:
            _warned_aliases.add(backend)
            warnings.warn(f"sltt_kernels: backend={backend!r} is SpikingJelly's name; using {ALIASES[backend]!r} "
                          "(the fused kernels for the tensors' device)", UserWarning, stacklevel=3)
        return ALIASES[backend]
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, one of {BACKENDS} (or SpikingJelly's 'torch', 'cupy'); got "
                        f"{type(backend).__name__} {backend!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (or SpikingJelly's 'torch', 'cupy'), got {backend!r}")
    return backend


def available_backends() -> dict:
    """{backend: None if usable, else the reason it is not}."""
    ext_reason = _ext.unavailable_reason()
    cuda_reason = _ext.cuda_unavailable_reason()  # the reason recorded when the extension was built
    if cuda_reason is None and not torch.cuda.is_available():
        cuda_reason = "the CUDA ops are built, but torch sees no CUDA GPU"
    return {"reference": None, "cpu": ext_reason, "cuda": cuda_reason, "triton": _triton_reason()}


def _triton_reason():
    from . import triton as _triton

    reason = _triton.unavailable_reason()
    if reason is None and not torch.cuda.is_available() and not _triton.interpreting():
        reason = "Triton needs a CUDA GPU (or TRITON_INTERPRET=1 to run on CPU tensors, slowly)"
    return reason


def select_backend(x: torch.Tensor, backend: str = "auto") -> str:
    """The backend for input x: 'reference', 'cpu', 'cuda' or 'triton'.

    auto: a CUDA tensor goes to the CUDA extension, else Triton, else the reference; a CPU
    tensor to the C++ CPU kernel, else the reference. SLTT_KERNELS_BACKEND overrides 'auto'.
    """
    backend = check_backend_name(backend)
    if backend == "auto":
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"{ENV_VAR} must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return backend
    if backend == "auto":
        # the common cases first, without building the whole availability table (per-call cost)
        if x.device.type == "cpu":
            return "cpu" if _ext.available() else "reference"
        if x.device.type == "cuda":
            if _ext.has_cuda_ops():
                return "cuda"
            return "triton" if _triton_reason() is None else "reference"
        return "reference"
    reasons = available_backends()
    if backend in ("cpu", "cuda") and x.device.type != backend:
        raise ValueError(f"backend={backend!r} needs {backend} tensors, but x is on {x.device}")
    if backend == "triton" and x.device.type == "cpu":
        from . import triton as _triton

        if not _triton.interpreting():
            raise ValueError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (set before import); "
                             "use backend='cpu' for the fast CPU kernel")
    if reasons[backend] is not None:
        raise RuntimeError(f"sltt_kernels: backend {backend!r} is not available: {reasons[backend]}")
    return backend
